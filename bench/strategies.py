"""Speed of each decoding method through the engine, against transformers where it has one.

On the GPT-2 124M-shaped model with random weights (see gpt2_shape.py), prints ms/token
for greedy, sampling (creative), contrastive (k=4) and beam search (5 beams) through the
gptterm engine, and `model.generate` for greedy and beam search, interleaved so both
see the same machine load.

    python bench/strategies.py [--tokens 48] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from gpt2_shape import setup

    bench = setup(__doc__, default_tokens=48)
    args, tok, hf, client = bench.args, bench.tok, bench.hf, bench.client

    import torch

    from gptterm import presets
    from gptterm.protocol import Generate

    prompt = "Once upon a time there was a little model that wrote poems about the sea"
    ids = tok(prompt, return_tensors="pt").input_ids.to(args.device)
    n = args.tokens
    loaded, _ = presets.load_presets()
    # Every method runs the full length: no end-of-text stop, so ms/token compare.
    methods = {name: loaded[name].replace(min_new_tokens=n)
               for name in ("greedy", "creative", "contrastive", "beam")}

    counter = iter(range(10**6))

    def engine_ms(name: str) -> float:
        rid = f"r{next(counter)}"
        start = time.perf_counter()
        done = client.generate(Generate(rid, rid, prompt, methods[name], n, seed=1))
        return (time.perf_counter() - start) * 1000 / max(done.n_tokens, 1)

    def hf_ms(num_beams: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              num_beams=num_beams, early_stopping=num_beams > 1,
                              max_new_tokens=n, min_new_tokens=n,
                              pad_token_id=tok.eos_token_id)
        return (time.perf_counter() - start) * 1000 / (out.shape[1] - ids.shape[1])

    runs: dict[str, list[float]] = {}
    for rep in range(args.repeats + 1):  # the first round warms up
        for name in methods:
            value = engine_ms(name)
            if rep:
                runs.setdefault(f"engine {name}", []).append(value)
        for beams in (1, 5):
            value = hf_ms(beams)
            if rep:
                runs.setdefault(f"HF generate num_beams={beams}", []).append(value)
    client.close()
    print(f"device={args.device} threads={torch.get_num_threads()} tokens={n} "
          f"repeats={args.repeats} (medians)")
    for label, values in runs.items():
        print(f"{label:28s} {statistics.median(values):7.1f} ms/token")


if __name__ == "__main__":
    main()
