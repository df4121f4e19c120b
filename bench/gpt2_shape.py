"""A GPT-2 124M-shaped model with random weights and the real GPT-2 tokenizer, for benches.

The tokenizer is rebuilt from the BPE ranks that PyPI's `openai-whisper==20250625` (MIT)
ships as `whisper/assets/gpt2.tiktoken`, fetched with `pip download` (no model hub).
Everything is cached under ~/.cache/gptterm-bench.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptterm.engine.detokenize import bytes_to_unicode

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CACHE = Path.home() / ".cache" / "gptterm-bench"


def _fetch_ranks() -> dict[bytes, int]:
    target = CACHE / "gpt2.tiktoken"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", ":all:", "-d", tmp, "openai-whisper==20250625"],
                           check=True)
            sdist = next(Path(tmp).glob("openai_whisper-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith("gpt2.tiktoken"))
                target.write_bytes(tar.extractfile(member).read())
    ranks = {}
    for line in target.read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build_tokenizer(out: Path) -> None:
    """vocab.json + merges.txt + tokenizer.json identical in effect to OpenAI's GPT-2."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ranks = _fetch_ranks()
    b2u = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(b2u[b] for b in token)

    def last_merge(token: bytes, rank: int) -> list[bytes]:
        # Replay BPE with lower-ranked merges only: what is left is the final pair.
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            pairs = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
            best, i = min(pairs)
            if best >= rank:
                break
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    vocab = {text(t): r for t, r in ranks.items()}
    vocab["<|endoftext|>"] = len(ranks)
    merges = [tuple(map(text, last_merge(t, r)))
              for t, r in sorted(ranks.items(), key=lambda kv: kv[1]) if len(t) > 1]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.save_pretrained(out)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "GPT2TokenizerFast"
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    assert tok("Hello world")["input_ids"] == [15496, 995]


@dataclass
class Bench:
    """What every decode bench needs: options, tokenizer, HF model and a loaded engine."""

    args: argparse.Namespace
    model_dir: Path
    tok: Any
    hf: Any  # transformers model on args.device
    client: Any  # gptterm EngineClient with the same model loaded


def setup(doc: str, default_tokens: int) -> Bench:
    """Parse `--tokens --repeats --device`, then load the model into HF and the engine."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--tokens", type=int, default=default_tokens)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gptterm.engine.client import EngineClient

    model_dir = gpt2_124m_dir()
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device).eval()
    client = EngineClient(device=args.device)
    client.load(str(model_dir), args.device)
    return Bench(args, model_dir, AutoTokenizer.from_pretrained(model_dir), hf, client)


def gpt2_124m_dir() -> Path:
    """Build (once) and return the model directory."""
    out = CACHE / "gpt2-124m-random"
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(out)
    return out
