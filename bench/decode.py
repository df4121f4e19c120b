"""Decode speed: the gptterm engine against transformers `generate`, side by side.

On a GPT-2 124M-shaped model with random weights (no download of weights), prints
ms/token for both and their ratio, and time to first token with 20 and with 900 tokens
of cached history (plus 900 recomputed, for scale). Targets: ratio >= 1.0 and
TTFT(900, reused) <= 1.5 x TTFT(20, reused).

    python bench/decode.py [--tokens 64] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from gpt2_shape import setup

    bench = setup(__doc__, default_tokens=64)
    args, tok, hf, client = bench.args, bench.tok, bench.hf, bench.client

    import torch

    from gptterm.presets import Preset
    from gptterm.protocol import Generate

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


if __name__ == "__main__":
    main()
