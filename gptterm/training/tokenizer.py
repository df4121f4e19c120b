"""Tokenizer training: byte-level BPE (`tokenizers`) or SentencePiece (`sentencepiece`).

Both end up as a `tokenizer.json` plus `tokenizer_config.json` that
`AutoTokenizer.from_pretrained(DIR)` loads in transformers 4.x and 5.x.

- bpe: GPT-2 style byte-level BPE, one special token `<|endoftext|>` (bos = eos = unk).
- sentencepiece: a unigram SentencePiece model trained by `sentencepiece`, converted to
  the same pieces and scores in `tokenizers` (KoGPT2 style: `▁` word pieces, byte
  fallback, specials `</s>` as bos/eos, `<unk>`, `<pad>`, `<mask>`, `<usr>`, `<sys>`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gptterm.errors import first_line
from gptterm.training import TrainingError

BPE_SPECIAL = "<|endoftext|>"
# KoGPT2's special tokens; "\n" gets its own piece so text keeps its lines.
SPM_SPECIALS = {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>",
                "mask_token": "<mask>"}
SPM_EXTRA_SPECIALS = ["<usr>", "<sys>"]
KINDS = ("bpe", "sentencepiece")


def train_tokenizer(kind: str, texts: list[str], vocab_size: int, out: Path):
    """Train a tokenizer on `texts`, save it into `out`, return the loaded HF tokenizer."""
    if kind == "bpe":
        fast = _train_bpe(texts, vocab_size)
        class_name = "GPT2TokenizerFast"
    elif kind == "sentencepiece":
        fast = _train_sentencepiece(texts, vocab_size)
        class_name = "PreTrainedTokenizerFast"
    else:
        raise TrainingError(f"--tokenizer: expected one of {', '.join(KINDS)}, got {kind!r}")
    save_tokenizer(fast, out, class_name)
    return load_tokenizer(out)


def save_tokenizer(tokenizer, out: Path, class_name: str | None = None) -> None:
    """save_pretrained, with a tokenizer_class that both transformers 4.x and 5.x load."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if class_name is None:
        # transformers 5 names fast tokenizers "GPT2Tokenizer" or "TokenizersBackend";
        # 4.x reads those as slow classes (or not at all), so name the fast class.
        class_name = type(tokenizer).__name__
        if class_name == "TokenizersBackend":
            class_name = "PreTrainedTokenizerFast"
        elif not class_name.endswith("Fast") and (out / "tokenizer.json").is_file():
            class_name += "Fast"
    cfg["tokenizer_class"] = class_name
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _train_bpe(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BPE_SPECIAL], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BPE_SPECIAL, eos_token=BPE_SPECIAL,
        unk_token=BPE_SPECIAL,
    )


def _spm_sentences(texts: Iterable[str]) -> Iterable[str]:
    # sentencepiece reads sentences; long lines are cut so none is dropped as too long.
    for text in texts:
        for line in text.split("\n"):
            line = line.strip()
            while line:
                yield line[:2000]
                line = line[2000:]


def _train_sentencepiece(texts: list[str], vocab_size: int):
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(list(_spm_sentences(texts))), model_prefix=prefix,
                model_type="unigram", vocab_size=vocab_size, hard_vocab_limit=False,
                character_coverage=0.9995, byte_fallback=True,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                add_dummy_prefix=True, split_digits=True,
                unk_id=0, bos_id=-1, eos_id=1, pad_id=2,
                unk_piece="<unk>", eos_piece="</s>", pad_piece="<pad>",
                user_defined_symbols=["<mask>", *SPM_EXTRA_SPECIALS, "\n"],
                minloglevel=2,
            )
        except RuntimeError as exc:
            reason = first_line(exc).split("] ")[-1]
            raise TrainingError(f"sentencepiece training failed: {reason}") from None
        proc = spm.SentencePieceProcessor(model_file=prefix + ".model")
        pieces = [(proc.id_to_piece(i), proc.get_score(i)) for i in range(proc.get_piece_size())]

    # The same pieces and scores as a `tokenizers` unigram model; spaces become "▁".
    tok = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ])
    from tokenizers import AddedToken

    tok.add_special_tokens(["<unk>", "</s>", "<pad>", "<mask>", *SPM_EXTRA_SPECIALS])
    tok.add_tokens([AddedToken("\n", normalized=False)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>",
        additional_special_tokens=SPM_EXTRA_SPECIALS, **{k: v for k, v in SPM_SPECIALS.items()
                                                        if k != "eos_token"},
    )
