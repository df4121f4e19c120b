"""Builds a tiny GPT-2 and byte-level BPE tokenizer in a second, for tests and benches."""

from __future__ import annotations

import json
from pathlib import Path

TEXT = (
    "To be, or not to be, that is the question. The quick brown fox jumps over the lazy dog. "
    "Once upon a time there was a little model that wrote poems about the sea and the sky. "
    "안녕하세요. 오늘은 날씨가 좋습니다. 한국어 문장을 생성합니다. "
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。 "
) * 4


def build_tokenizer(out: Path, vocab_size: int = 400) -> None:
    """Train a byte-level BPE on TEXT and save it so AutoTokenizer loads it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.save_pretrained(out)
    # transformers 5 writes "TokenizersBackend", which 4.x cannot load.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "GPT2TokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))


def build_model(out: Path, *, n_layer: int = 2, n_embd: int = 32, n_head: int = 2,
                n_positions: int = 128, vocab_size: int | None = None, seed: int = 0,
                with_tokenizer: bool = True) -> Path:
    """A random-weight GPT-2 (and tokenizer) saved in `out`; returns `out`."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out.mkdir(parents=True, exist_ok=True)
    if with_tokenizer:
        build_tokenizer(out)
        vocab_size = len(AutoTokenizer.from_pretrained(out))
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size or 50257, n_positions=n_positions, n_embd=n_embd,
        n_layer=n_layer, n_head=n_head, bos_token_id=0, eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


def sharpened_copy(model_dir: Path, out: Path, seed: int) -> Path:
    """A copy of the tiny model with larger random weights (seeded): peaked, varied
    predictions (the default init is nearly uniform and repeats one token, which proves
    little)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(model_dir, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.4)
    model.save_pretrained(out)
    return out
