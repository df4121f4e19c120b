"""Decode speed: the gptterm engine against transformers `generate`, side by side.

On a GPT-2 124M-shaped model with random weights (no download of weights), prints
ms/token for both and their ratio, and time to first token with 20 and with 900 tokens
of cached history (plus 900 recomputed, for scale). Targets: ratio >= 1.0 and
TTFT(900, reused) <= 1.5 x TTFT(20, reused).

Then a busy neighbour: tok/s of the shipped default model (shakespeare-mini) through
EngineClient, idle and beside one CPU-bound process (`python -c "while True: pass"`),
with the picked thread count and with torch's old default (one per core), plus how late
a 10 ms timer on another thread (the UI's place) wakes while the engine decodes.
Target: loaded >= 0.5 x idle with the picked count.

    python bench/decode.py [--tokens 64] [--repeats 3] [--device cpu|cuda]
                           [--busy-only] [--busy-model NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

HOG_SECONDS = 600  # the busy process ends by itself even if this bench is killed


def main() -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--busy-only", action="store_true")
    own.add_argument("--busy-model", default="shakespeare-mini")
    flags, sys.argv[1:] = own.parse_known_args()
    if not flags.busy_only:
        gpt2_124m()
    busy_neighbour(flags.busy_model)


def gpt2_124m() -> None:
    from gpt2_shape import setup

    bench = setup(__doc__, default_tokens=64)
    args, tok, hf, client = bench.args, bench.tok, bench.hf, bench.client

    import torch

    from gptterm.presets import Preset
    from gptterm.protocol import Generate

    # HF runs on this thread: give it the engine's count (it is per thread) for a fair race.
    torch.set_num_threads(client.engine.threads_in_use)
    line = "the quick brown fox jumps over the lazy dog and keeps on running into the hills"
    text = " ".join([line] * 200)

    def prompt_of(n: int) -> str:
        return tok.decode(tok(text).input_ids[:n])

    greedy = Preset(name="greedy", method="greedy")
    n = args.tokens
    short = prompt_of(20)
    ids = tok(short, return_tensors="pt").input_ids.to(args.device)

    def hf_ms_per_token() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = hf.generate(ids, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                              pad_token_id=tok.eos_token_id)
        if args.device == "cuda":
            torch.cuda.synchronize()
        assert out.shape[1] - ids.shape[1] == n
        return (time.perf_counter() - start) * 1000 / n

    counter = iter(range(10**6))

    def engine_run(session: str, prompt: str, max_new: int):
        rid = f"r{next(counter)}"
        start = time.perf_counter()
        done = client.generate(Generate(rid, session, prompt, greedy, max_new))
        return done, time.perf_counter() - start

    def engine_ms_per_token() -> float:
        done, wall = engine_run(f"fresh{next(counter)}", short, n)
        assert done.n_tokens == n, done
        return wall * 1000 / n

    def ttft_ms(history: int, reuse: bool) -> float:
        session = f"h{next(counter)}"
        base = prompt_of(history)
        if reuse:
            engine_run(session, base, 1)  # the first turn fills the cache
        done, _ = engine_run(session, base + " and then", 1)
        return done.ttft * 1000

    hf_ms_per_token(), engine_ms_per_token()  # warm-up
    hf_ms, eng_ms, t20, t900, t900r = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved so both see the same machine load
        hf_ms.append(hf_ms_per_token())
        eng_ms.append(engine_ms_per_token())
        t20.append(ttft_ms(20, True))
        t900.append(ttft_ms(900, True))
        t900r.append(ttft_ms(900, False))
    client.close()

    med = statistics.median
    ratio = med(hf_ms) / med(eng_ms)
    print(f"device={args.device} threads={torch.get_num_threads()} tokens={n} "
          f"repeats={args.repeats} (medians)")
    print(f"HF generate      {med(hf_ms):7.1f} ms/token")
    print(f"gptterm engine   {med(eng_ms):7.1f} ms/token")
    print(f"speed ratio (HF ms / engine ms) = {ratio:.2f}   target >= 1.0")
    print(f"TTFT  20 tokens of history, cache reused:  {med(t20):7.1f} ms")
    print(f"TTFT 900 tokens of history, cache reused:  {med(t900):7.1f} ms "
          f"({med(t900) / med(t20):.2f}x TTFT@20, target <= 1.5x)")
    print(f"TTFT 900 tokens of history, recomputed:    {med(t900r):7.1f} ms "
          f"({med(t900r) / med(t900):.1f}x the reused one)")


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
