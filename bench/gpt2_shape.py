"""A GPT-2 124M-shaped model with random weights and the real GPT-2 tokenizer, for benches.

The tokenizer is rebuilt from the BPE ranks that PyPI's `openai-whisper==20250625` (MIT)
ships as `whisper/assets/gpt2.tiktoken`, fetched with `pip download` (no model hub).
Everything is cached under ~/.cache/gptterm-bench.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path.home() / ".cache" / "gptterm-bench"


def _bytes_to_unicode() -> dict[int, str]:
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


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
    b2u = _bytes_to_unicode()

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
