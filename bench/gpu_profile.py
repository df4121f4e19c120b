"""Where a GPU decode step and a first token spend their time: the diagnostic behind the
GPU figures of issue 13 (`bash bench/gpu_check.sh profile` runs it on a lent GPU).

1. One-row (decode) fp32 matmuls of the 124M shape, each way torch can spell them:
   `addmm(b, x, W[in, out])` (transformers' Conv1D, the fp32 runner's), `F.linear(x,
   W[out, in], b)`, and fp16 `F.linear` for scale: microseconds and GB/s read.
2. The decode step of the 124M shape, one token with its sync as the engine does it: the
   CUDA graph at fp32 (Conv1D layout and [out, in] layout) and at fp16, and the plain
   eager step; then a torch.profiler table of the eager fp32 step's kernels.
3. A first token after 20 and after 900 tokens of cached history: the runner's prefill
   alone, and the engine's whole TTFT with the history sent as the app sends it (stored
   token ids) and as plain text (tokenized again).

    python bench/gpu_profile.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
import torch.nn.functional as F

DEV = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run of the script
SHAPES = {"qkv": (768, 2304), "proj": (768, 768), "fc": (768, 3072), "out": (3072, 768),
          "head": (768, 50257)}


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def cuda_us(fn, reps: int = 200) -> float:
    """Median microseconds of `fn` on the GPU (CUDA events, after a warm-up)."""
    for _ in range(10):
        fn()
    if DEV == "cpu":
        start = time.perf_counter()
        for _ in range(reps // 10):
            fn()
        return (time.perf_counter() - start) * 1e7 / reps
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        sync()
        times.append(start.elapsed_time(end) * 1000 / reps)
    return statistics.median(times)


def matmuls() -> None:
    print("\n1. one-row matmuls, fp32 unless said (us, GB/s of weights read)")
    for name, (k, n) in SHAPES.items():
        w_kn = torch.randn(k, n, device=DEV)
        w_nk = w_kn.t().contiguous()
        b = torch.randn(n, device=DEV)
        x = torch.randn(1, k, device=DEV)
        half_w, half_x, half_b = w_nk.half(), x.half(), b.half()
        half_kn = w_kn.half()
        ways = {"addmm W[in,out]": (torch.addmm, b, x, w_kn),
                "linear W[out,in]": (F.linear, x, w_nk, b),
                "fp16 addmm": (torch.addmm, half_b, half_x, half_kn),
                "fp16 linear": (F.linear, half_x, half_w, half_b)}
        cells = []
        for way, (op, *operands) in ways.items():
            us = cuda_us(lambda op=op, operands=operands: op(*operands))
            size = k * n * (2 if way.startswith("fp16") else 4)
            cells.append(f"{way} {us:7.1f} us {size / us / 1e3:6.0f} GB/s")
        print(f"  {name:5s} {k}x{n}: " + " | ".join(cells))


@torch.inference_mode()
def steps(model) -> None:
    from gptterm.engine import precision
    from gptterm.engine.runner import GPT2Runner

    print("\n2. decode step of the 124M shape (ms/token, argmax synced each step)")
    from gptterm.engine.runner import sdpa_attention

    runners = {
        "fp32 graph": GPT2Runner(model),
        "fp32 graph, SDPA attention": GPT2Runner(model),
        "fp32 graph, [out,in] layout": GPT2Runner(model, precision._float_linear(torch.float32)),
        "fp16 graph": precision.build(model, "fp16"),
        "bf16 graph": precision.build(model, "bf16"),
        "fp32 eager": GPT2Runner(model),
    }
    runners["fp32 graph, SDPA attention"].attend = sdpa_attention
    runners["fp32 eager"].graphs = False
    for name, runner in runners.items():
        print(f"  {name:30s} {precision.decode_ms(runner, steps=64):6.3f} ms"
              + (f"  (graph failed: {runner.graph_error})" if runner.graph_error else ""))
    from torch.profiler import ProfilerActivity, profile

    static = GPT2Runner(model)
    cache = static.new_cache(capacity=static.n_ctx)
    ids = torch.zeros((1, 1), dtype=torch.long, device=DEV)
    pos = torch.full((1,), 20, dtype=torch.long, device=DEV)
    for _ in range(3):
        static._static_step(ids, pos, cache)
    sync()
    kind = ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU
    with profile(activities=[kind]) as prof:
        for _ in range(10):
            static._static_step(ids, pos, cache)
        sync()
    print("  kernels of 10 eager fp32 fixed-shape steps (the graph's content):")
    print(prof.key_averages().table(sort_by=("cuda_time_total" if DEV == "cuda" else "cpu_time_total"), row_limit=14))


@torch.inference_mode()
def prefill_ms(runner, history: int, new: int = 3, reps: int = 20) -> float:
    cache = runner.new_cache()
    runner.forward(torch.zeros((1, history), dtype=torch.long, device=DEV), cache)
    x = torch.ones((1, new), dtype=torch.long, device=DEV)
    times = []
    for _ in range(reps):
        cache.crop(history)
        sync()
        start = time.perf_counter()
        int(runner.forward(x, cache).argmax())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def first_tokens(model, model_dir: Path) -> None:
    from decode import first_token_ms
    from transformers import AutoTokenizer

    from gptterm.engine.client import EngineClient
    from gptterm.engine.runner import GPT2Runner

    print("\n3. first token after cached history (fp32, medians)")
    runner = GPT2Runner(model)
    for history in (20, 900):
        print(f"  runner prefill of 3 tokens after {history:3d} cached: "
              f"{prefill_ms(runner, history):6.2f} ms")
    tok = AutoTokenizer.from_pretrained(model_dir)
    with EngineClient(device=DEV, precision="fp32") as client:
        client.load(str(model_dir), DEV)
        first_token_ms(client, tok, 20)
        for stored in (True, False):
            t20 = statistics.median(first_token_ms(client, tok, 20, stored) for _ in range(7))
            t900 = statistics.median(first_token_ms(client, tok, 900, stored) for _ in range(7))
            how = "stored ids" if stored else "plain text"
            print(f"  engine TTFT, history as {how}: 20 -> {t20:6.2f} ms, 900 -> {t900:6.2f} ms"
                  f" ({t900 / t20:.2f}x)")


def main() -> None:
    from gpt2_shape import gpt2_124m_dir
    from transformers import AutoModelForCausalLM

    from gptterm.engine.loading import quiet_transformers

    quiet_transformers()
    print("torch", torch.__version__, torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu")
    matmuls()
    model_dir = gpt2_124m_dir()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(DEV).eval()
    steps(model)
    first_tokens(model, model_dir)


if __name__ == "__main__":
    main()
