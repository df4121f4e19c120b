"""Decode speed: the gptterm engine at each precision against transformers `generate`,
and llama.cpp's llama-server on the same weights, side by side in one run.

1. GPT-2 124M shape, random weights (no download of weights), greedy, `--tokens` tokens
   after a 20-token prompt, best of `--repeats`, `--threads` threads (default 2): ms/token
   of HF `generate` fp32 (on cuda also fp16), of the engine at fp32, bf16, fp16 and int8
   (a precision the machine cannot run says so), and of llama-server at f32 and f16 on a
   GGUF that `gptterm export-gguf` writes, when a binary is there (GPTTERM_LLAMA_SERVER, or
   the one scripts/llama-server.sh caches); each as a speed ratio to HF fp32, with the
   precision's perplexity on the model's own text against fp32's. On a CPU also the
   memory floor: the fp32 bytes a step reads over this machine's streaming bandwidth.
   Targets: fp32 >= 1.5x, a reduced precision >= 2.2x within 2% perplexity (CPU);
   >= 3x single-stream on a GPU.
2. The shipped shakespeare-mini (where per-token overhead dominated): tok/s of HF
   `generate` fp32 and of the engine at each precision (the engine used to run at
   0.94-1.07x HF). Target: >= 3x.
3. Time to first token with 20 and with 900 tokens of cached history (plus 900
   recomputed). Target: TTFT(900, reused) <= 1.3 x TTFT(20, reused).
4. `--busy`: a busy neighbour: tok/s of shakespeare-mini through EngineClient, idle and
   beside one CPU-bound process, with the picked thread count and with one per core, plus
   how late a 10 ms timer on another thread (the UI's place) wakes while the engine
   decodes. Target: loaded >= 0.5 x idle with the picked count.

Every timed decoder runs in a process of its own (as llama-server does), interleaved with
the others so all see the same load; several sections run one after the other, each in a
fresh process (see `Contender` for why).

    python bench/decode.py [--tokens 64] [--repeats 3] [--threads 2] [--device cpu|cuda]
                           [--only 124m,tiny,ttft] [--busy] [--busy-model NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

HOG_SECONDS = 600  # the busy process ends by itself even if this bench is killed
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REPO = Path(__file__).resolve().parent.parent
LINE = "the quick brown fox jumps over the lazy dog and keeps on running into the hills"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", default="124m,tiny,ttft",
                        help="comma-separated sections: 124m, tiny, ttft, busy")
    parser.add_argument("--busy", action="store_true", help="also the busy-neighbour section")
    parser.add_argument("--busy-model", default="shakespeare-mini")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a contender's own process
    args = parser.parse_args()
    if args.serve:
        return serve(json.loads(args.serve))
    sections = [name for name in args.only.split(",") if name] + (["busy"] if args.busy else [])
    if len(sections) > 1:
        # Each section in a fresh process: torch's thread teams left by one section would
        # slow the next one's decoders (see Contender).
        for name in sections:
            subprocess.run([sys.executable, __file__, "--only", name, "--tokens",
                            str(args.tokens), "--repeats", str(args.repeats), "--threads",
                            str(args.threads), "--device", args.device, "--busy-model",
                            args.busy_model], check=False)
        return None
    import torch

    from gptterm.engine.loading import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    print(f"device={args.device} threads={args.threads} tokens={args.tokens} best of "
          f"{args.repeats}; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    section = {"124m": gpt2_124m, "tiny": tiny, "ttft": ttft,
               "busy": lambda a: busy_neighbour(a.busy_model)}.get(sections[0] if sections
                                                                   else "")
    if section is None:
        raise SystemExit(f"--only: expected 124m, tiny, ttft or busy, got {args.only!r}")
    section(args)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return None


# --- timing ---------------------------------------------------------------------------


def hf_ms(hf, ids, n: int, device: str) -> float:
    """ms/token of HF greedy `generate`, `n` tokens, prefill included."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    if device == "cuda":
        torch.cuda.synchronize()
    assert out.shape[1] - ids.shape[1] == n
    return (time.perf_counter() - start) * 1000 / n


_COUNTER = iter(range(10**9))


def engine_ms(client, prompt: str, n: int) -> float:
    """ms/token of one greedy reply through the engine on a fresh session."""
    from gptterm.presets import Preset
    from gptterm.protocol import Generate

    rid = f"b{next(_COUNTER)}"
    start = time.perf_counter()
    done = client.generate(Generate(rid, rid, prompt, Preset(name="greedy", method="greedy"),
                                    n))
    wall = time.perf_counter() - start
    assert done.n_tokens == n, done
    return wall * 1000 / n


class Contender:
    """One timed decoder in a process of its own, as llama-server is.

    In one process, the OpenMP thread teams of two decoders throttle each other: each
    thread that runs a parallel torch op gets its own team, and once a process holds more
    OpenMP threads than there are cores, libgomp's workers stop spinning and sleep after
    every kernel. Measured here: the engine's 124M fp32 step went from 23 to 31 ms after
    the main thread had run one parallel matmul, and HF `generate` ran at 42 ms instead
    of 30 beside the engine's worker thread.
    """

    def __init__(self, spec: dict):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        self.error = None if first == "ready" else (first.removeprefix("error").strip()
                                                    or "the contender process exited")

    def ms(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(spec: dict) -> None:
    """The contender side (`--serve SPEC`): load, say "ready", then time one run per
    "run" line read, printing its ms/token."""
    import torch

    from gptterm.engine.loading import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(spec["threads"])
    dev, n = spec["device"], spec["tokens"]
    try:
        if spec["kind"] == "hf":
            from transformers import AutoModelForCausalLM

            dtype = torch.float16 if spec["precision"] == "fp16" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=dtype
                                                         ).to(dev).eval()
            ids = torch.tensor([spec["prompt_ids"]], device=dev)

            def run() -> float:
                return hf_ms(model, ids, n, dev)
        else:
            from gptterm.engine.client import EngineClient

            client = EngineClient(device=dev, threads=spec["threads"],
                                  precision=spec["precision"])
            client.load(spec["model"], dev)

            def run() -> float:
                return engine_ms(client, spec["prompt"], n)
    except Exception as exc:  # noqa: BLE001 - the bench goes on without this row
        print("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
              flush=True)
        return
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        print(f"{run():.6f}", flush=True)


def contenders(model: str, device: str, threads: int, prompt_ids: list[int], prompt: str,
               tokens: int, hf: tuple[str, ...] = ("fp32",), hf_model: str | None = None
               ) -> dict:
    """{name: Contender that loaded, or the one-line reason it cannot run}: HF `generate`
    at each of `hf` (on the folder `hf_model`, default `model`), the engine at each
    precision (on `model`, a folder or a catalog name)."""
    common = {"model": model, "device": device, "threads": threads, "tokens": tokens,
              "prompt_ids": prompt_ids, "prompt": prompt}
    specs = {f"HF generate {p}": {"kind": "hf", "precision": p, "model": hf_model or model}
             for p in hf}
    specs.update({f"gptterm engine {p}": {"kind": "engine", "precision": p}
                  for p in PRECISIONS})
    out: dict = {}
    for name, spec in specs.items():
        contender = Contender({**common, **spec})
        if contender.error:
            contender.stop()
        out[name] = contender.error or contender
    return out


def race(runs: dict, repeats: int) -> dict:
    """{name: best ms} of every callable in `runs`, interleaved so all see the same load."""
    for run in runs.values():
        run()  # warm-up
    times: dict = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: min(values) for name, values in times.items()}


def own_text_ppl(model_dir: Path, device: str) -> dict:
    """{precision: perplexity on the model's own text} (the rule `auto` uses)."""
    import torch
    from transformers import AutoModelForCausalLM

    from gptterm.engine import precision

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    rows = precision.own_text(precision.build(model.eval(), "fp32"), 0,
                              model.config.n_positions, tokens=256)
    out = {}
    for name in PRECISIONS:
        try:
            out[name] = precision.perplexity(precision.build(model, name), rows)
        except precision.PrecisionError:
            pass
    return out


def dram_floor(model_dir: Path, args) -> tuple[float, float, float]:
    """(MB of fp32 weights a decode step reads, GB/s this machine streams from memory with
    `args.threads` threads (a sum over 1 GiB, larger than any cache share here, best of
    5), the ms a token that takes): no exact fp32 decoder can go faster."""
    import torch
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        # Every weight is read each step but the position table (one row of it); the
        # tied embedding is stored (and read, as the lm head) once.
        numel = sum(math.prod(f.get_slice(k).get_shape())
                    for k in f.keys() if not k.endswith("wpe.weight"))  # noqa: SIM118
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    big = torch.ones(2**28)  # 1 GiB of float32
    big.sum()
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        big.sum()
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(previous)
    del big
    mb, gb_s = numel * 4 / 1e6, 2**30 / best / 1e9
    return mb, gb_s, mb / gb_s


# --- 1. the 124M shape -------------------------------------------------------------------


def gpt2_124m(args) -> None:
    from gpt2_shape import gpt2_124m_dir
    from transformers import AutoTokenizer

    model_dir = gpt2_124m_dir()
    tok = AutoTokenizer.from_pretrained(model_dir)
    n, dev = args.tokens, args.device
    prompt_ids = tok(" ".join([LINE] * 3)).input_ids[:20]
    prompt = tok.decode(prompt_ids)
    floor = dram_floor(model_dir, args) if dev == "cpu" else None
    running = contenders(str(model_dir), dev, args.threads, prompt_ids, prompt, n,
                         hf=("fp32", "fp16") if dev == "cuda" else ("fp32",))
    servers = llama_servers(model_dir, args.threads) if dev == "cpu" else {}
    everything = {**running, **{f"llama-server {k}": s for k, s in servers.items()}}
    runs = {name: c.ms for name, c in running.items() if not isinstance(c, str)}
    runs.update({f"llama-server {k}": (lambda s=s: s.ms(prompt_ids, n))
                 for k, s in servers.items() if not isinstance(s, str)})
    try:
        best = race(runs, args.repeats)
    finally:
        for c in everything.values():
            if not isinstance(c, str):
                c.stop()
    ppl = own_text_ppl(model_dir, dev)
    base = best["HF generate fp32"]
    print(f"\nGPT-2 124M shape, random weights, greedy, {n} tokens after 20, best of "
          f"{args.repeats} (perplexity: 256 tokens of the model's own text)")
    print(f"{'':28s} {'ms/token':>9s} {'x HF fp32':>10s} {'perplexity':>11s}")
    for name, ms in best.items():
        prec = name.split()[-1]
        cost = (f"{ppl[prec]:.1f} ({ppl[prec] / ppl['fp32'] - 1:+.2%})"
                if name.startswith("gptterm") and prec in ppl else "")
        print(f"{name:28s} {ms:9.2f} {base / ms:9.2f}x {cost:>11s}")
    for name, why in everything.items():
        if isinstance(why, str):
            print(f"{name:28s} not run: {why}")
    print("targets: engine fp32 >= 1.5x; a reduced precision >= 2.2x within 2% perplexity"
          + ("; >= 3x on the GPU" if dev == "cuda" else ""))
    if floor is not None:
        mb, gb_s, ms = floor
        print(f"memory floor at fp32: {mb:.0f} MB of weights read a token / {gb_s:.1f} GB/s "
              f"(this machine's streaming read, {args.threads} threads) = {ms:.1f} ms a "
              f"token, so no exact fp32 decoder here beats this HF run by more than "
              f"{base / ms:.2f}x")


# --- llama.cpp --------------------------------------------------------------------------


def llama_binary() -> Path | None:
    """GPTTERM_LLAMA_SERVER, else the build scripts/llama-server.sh caches, if present."""
    value = os.environ.get("GPTTERM_LLAMA_SERVER")
    if value:
        return Path(value) if os.access(value, os.X_OK) else None
    cache = Path(os.environ.get("GPTTERM_LLAMA_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptterm" / "llama-server")
    found = sorted(cache.glob("**/llama-server")) if cache.is_dir() else []
    return next((p for p in found if p.is_file() and os.access(p, os.X_OK)), None)


class LlamaServer:
    """llama-server on one GGUF, `threads` threads, one slot; greedy timings over HTTP."""

    def __init__(self, binary: Path, gguf: Path, threads: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = gguf.with_suffix(".log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port",
                 str(self.port), "-c", "1024", "-np", "1", "-t", str(threads), "--no-webui"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, ValueError):
                if self._get("/health").get("status") == "ok":
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama-server did not answer /health in 120 s")

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def ms(self, prompt_ids: list[int], n: int) -> float:
        """ms/token of `n` greedy tokens after `prompt_ids`, prefill included, no cache."""
        body = json.dumps({"prompt": prompt_ids, "n_predict": n, "temperature": 0,
                           "top_k": 1, "ignore_eos": True, "cache_prompt": False,
                           "samplers": ["top_k"]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/completion", body,
                                         {"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as r:
            out = json.loads(r.read())
        wall = time.perf_counter() - start
        assert out.get("tokens_predicted", n) == n, out
        return wall * 1000 / n

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def llama_servers(model_dir: Path, threads: int) -> dict:
    """{"f32"|"f16": LlamaServer or the reason it is not run}."""
    binary = llama_binary()
    if binary is None:
        why = ("no llama-server: set GPTTERM_LLAMA_SERVER or build one with "
               "scripts/llama-server.sh")
        return {"f32": why, "f16": why}
    try:
        from gptterm.gguf_export import write_gguf
    except ImportError as exc:
        return {"f32": f"no GGUF export: {exc}", "f16": f"no GGUF export: {exc}"}
    out = {}
    for dtype in ("f32", "f16"):
        gguf = model_dir / f"model-{dtype}.gguf"
        try:
            if not gguf.exists():
                write_gguf(model_dir, gguf, dtype)
            out[dtype] = LlamaServer(binary, gguf, threads)
        except Exception as exc:  # noqa: BLE001 - the bench goes on without this row
            out[dtype] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return out


# --- 2. the shipped tiny model -----------------------------------------------------------


def tiny(args, model: str = "shakespeare-mini") -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gptterm import catalog

    spec = catalog.resolve(model)
    dev, n = args.device, 128
    tok = AutoTokenizer.from_pretrained(spec.source)
    prompt = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
    prompt_ids = tok(prompt).input_ids
    # The engine's own pick for this model (1 thread on 2 cores); HF gets the same.
    from gptterm.engine.threads import pick_threads

    hf = AutoModelForCausalLM.from_pretrained(spec.source)
    threads = pick_threads(sum(p.numel() for p in hf.parameters()))
    del hf
    running = contenders(model, dev, threads, prompt_ids, prompt, n, hf_model=spec.source)
    try:
        best = race({name: c.ms for name, c in running.items() if not isinstance(c, str)},
                    max(args.repeats, 5))
    finally:
        for c in running.values():
            if not isinstance(c, str):
                c.stop()
    base = best["HF generate fp32"]
    ppl = own_text_ppl(Path(spec.source), dev)
    print(f"\n{model}, greedy, {n} tokens, {threads} thread(s) (the engine's pick), best of "
          f"{max(args.repeats, 5)} (perplexity: 256 tokens of the model's own text)")
    print(f"{'':28s} {'tok/s':>9s} {'x HF fp32':>10s} {'perplexity':>11s}")
    for name, ms in best.items():
        prec = name.split()[-1]
        cost = (f"{ppl[prec]:.1f} ({ppl[prec] / ppl['fp32'] - 1:+.2%})"
                if name.startswith("gptterm") and prec in ppl else "")
        print(f"{name:28s} {1000 / ms:9.0f} {base / ms:9.2f}x {cost:>11s}")
    print("target: >= 3x (the engine used to run at 0.94-1.07x HF generate)")


# --- 3. time to first token --------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def history_text(tok, tokens: int) -> str:
    """The first `tokens` tokens of a long made-up history, as text."""
    return tok.decode(tok(" ".join([LINE] * 200)).input_ids[:tokens])


def first_token_ms(client, tok, history: int, stored_ids: bool = True) -> float:
    """TTFT of a short next turn (" and then") after `history` tokens that a first turn
    put in the session's cache. `stored_ids`: the history goes back as the app and
    `generate --session` send it, each turn with its token ids; else as plain text,
    which the engine tokenizes again (about 1 ms for 900 tokens here)."""
    from gptterm.presets import Preset
    from gptterm.protocol import Generate, Segment, Started, TextDelta

    greedy = Preset(name="greedy", method="greedy")
    session = f"h{next(_COUNTER)}"
    base = history_text(tok, history)
    events: list = []
    client.generate(Generate(f"r{next(_COUNTER)}", session, base, greedy, 4), events.append)
    if stored_ids:
        made = next(e for e in events if isinstance(e, Started)).tokenized[0][1]
        deltas = [e for e in events if isinstance(e, TextDelta)]
        reply = Segment("".join(d.text for d in deltas),
                        tuple(i for d in deltas for i in d.token_ids))
        turn = Generate(f"r{next(_COUNTER)}", session, "", greedy, 1, context=(
            Segment(base, tuple(made)), reply, Segment(" and then")))
    else:
        turn = Generate(f"r{next(_COUNTER)}", session, base + " and then", greedy, 1)
    return client.generate(turn).ttft * 1000


def ttft(args) -> None:
    from gpt2_shape import gpt2_124m_dir
    from transformers import AutoTokenizer

    from gptterm.engine.client import EngineClient
    from gptterm.presets import Preset
    from gptterm.protocol import Generate

    model_dir = gpt2_124m_dir()
    tok = AutoTokenizer.from_pretrained(model_dir)
    with EngineClient(device=args.device, threads=args.threads, precision="fp32") as client:
        client.load(str(model_dir), args.device)
        first_token_ms(client, tok, 20)  # warm-up
        t20, t900, t20_text, t900_text, t900r = [], [], [], [], []
        for _ in range(max(args.repeats, 5)):
            t20.append(first_token_ms(client, tok, 20))
            t900.append(first_token_ms(client, tok, 900))
            t20_text.append(first_token_ms(client, tok, 20, stored_ids=False))
            t900_text.append(first_token_ms(client, tok, 900, stored_ids=False))
            # The same 900 tokens on a fresh session: nothing to reuse.
            text = history_text(tok, 900) + " and then"
            session = f"h{next(_COUNTER)}"
            t900r.append(client.generate(Generate(
                f"r{next(_COUNTER)}", session, text, Preset(name="greedy", method="greedy"),
                1)).ttft * 1000)
    med = statistics.median
    print(f"\ntime to first token, GPT-2 124M shape, fp32, {args.threads} threads, medians of "
          f"{len(t20)}; the history sent as the app sends it (each turn with its token ids)")
    print(f"TTFT  20 tokens of history, cache reused:  {med(t20):7.2f} ms")
    print(f"TTFT 900 tokens of history, cache reused:  {med(t900):7.2f} ms "
          f"({med(t900) / med(t20):.2f}x TTFT@20, target <= 1.3x)")
    print(f"  the history as plain text instead (tokenized again): {med(t20_text):.2f} / "
          f"{med(t900_text):.2f} ms ({med(t900_text) / med(t20_text):.2f}x)")
    print(f"TTFT 900 tokens of history, recomputed:    {med(t900r):7.2f} ms "
          f"({med(t900r) / med(t900):.1f}x the reused one)")


# --- 4. a busy neighbour -----------------------------------------------------------------


@contextlib.contextmanager
def cpu_hog():
    """One CPU-bound process for the duration of the block (bounded, always killed)."""
    code = f"import time\nend = time.monotonic() + {HOG_SECONDS}\nwhile time.monotonic() < end: pass"
    hog = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


class TimerLag:
    """A 10 ms timer on its own thread, as the UI's event loop would run; records lateness."""

    def __init__(self):
        self.lags: list[float] = []

    def _tick(self, stop: threading.Event) -> None:
        while not stop.is_set():
            due = time.perf_counter() + 0.010
            time.sleep(0.010)
            self.lags.append(max(0.0, time.perf_counter() - due))

    @contextlib.contextmanager
    def running(self):
        stop = threading.Event()
        thread = threading.Thread(target=self._tick, args=(stop,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def busy_neighbour(model: str, rounds: int = 5, tokens: int = 64) -> None:
    """tok/s idle vs beside a CPU-bound process, picked threads vs the old default.

    Idle and loaded replies alternate, so both see the same background load."""
    from gptterm.engine.client import EngineClient
    from gptterm.presets import Preset
    from gptterm.protocol import Generate, decode_rate

    greedy = Preset(name="greedy", method="greedy")
    prompt = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
    counter = iter(range(10**6))

    def tok_s(client, cpu_ms: list[float] | None = None) -> float:
        rid = f"b{next(counter)}"  # a fresh session each time: same work every round
        cpu = time.process_time()
        done = client.generate(Generate(rid, rid, prompt, greedy, tokens))
        if cpu_ms is not None:  # this process's CPU time: spinning threads show up here
            cpu_ms.append((time.process_time() - cpu) * 1000 / max(1, done.n_tokens))
        return decode_rate(done.n_tokens, done.ttft, done.seconds) or 0.0

    print(f"\nbusy neighbour: {model} on cpu, {os.cpu_count()} CPUs, greedy, "
          f"{tokens} tokens, median of {rounds} replies each, idle and loaded alternating")
    old_default = os.cpu_count() or 1
    for label, requested in (("picked", None), ("old default", old_default)):
        with EngineClient(device="cpu", threads=requested) as client:
            client.load(model)
            tok_s(client)  # warm-up
            idle_runs, loaded_runs, idle_lag, busy_lag = [], [], TimerLag(), TimerLag()
            idle_cpu, loaded_cpu = [], []
            for _ in range(rounds):
                with idle_lag.running():
                    idle_runs.append(tok_s(client, idle_cpu))
                with cpu_hog(), busy_lag.running():
                    loaded_runs.append(tok_s(client, loaded_cpu))
            idle, loaded = statistics.median(idle_runs), statistics.median(loaded_runs)
            n = client.engine.threads_in_use
        target = "   target >= 0.5" if requested is None else ""
        print(f"{label:12s} threads={n}  idle {idle:7.1f} tok/s   loaded {loaded:7.1f} tok/s"
              f"   loaded/idle = {loaded / idle:.2f}{target}")
        print(f"{'':12s} CPU time per token: idle {statistics.median(idle_cpu):.1f} ms, "
              f"loaded {statistics.median(loaded_cpu):.1f} ms")
        print(f"{'':12s} 10 ms timer on another thread, late by: idle p50 "
              f"{_ms(idle_lag.lags, 50)} max {_ms(idle_lag.lags, 100)}; loaded p50 "
              f"{_ms(busy_lag.lags, 50)} max {_ms(busy_lag.lags, 100)}")


def _ms(values: list[float], pct: int) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, len(ordered) * pct // 100)] * 1000:.1f} ms"


if __name__ == "__main__":
    main()
