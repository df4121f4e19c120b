"""Two tiny models for `gptterm diff` tests: a random GPT-2 and a copy finetuned a few
steps on one text, so B really gains on it; and a model with another tokenizer."""

from __future__ import annotations

from pathlib import Path

from tiny import TEXT, build_model, build_tokenizer

# The text B is finetuned on, with a line break and an escape sequence (shown inert).
FINETUNE_TEXT = TEXT + "\nThe sea\x1b]0;title\x07 and the sky.\n"


def build_pair(root: Path) -> tuple[Path, Path, Path]:
    """(model A, model B finetuned from A on the text, the text file)."""
    from gptterm.training.run import Settings, run

    a = build_model(root / "base")
    text = root / "text.txt"
    text.write_text(FINETUNE_TEXT, encoding="utf-8")
    run(Settings(mode="finetune", base=str(a), corpus=[str(text)], out=str(root / "tuned"),
                 n_ctx=1_000_000, max_steps=8, batch_size=4, lr=0.01, val=[str(text)],
                 sample_tokens=4, device="cpu"), echo=lambda *args: None)
    return a, root / "tuned", text


def build_other_tokenizer(root: Path) -> Path:
    """A model whose tokenizer has a smaller vocabulary than the pair's."""
    from transformers import AutoTokenizer

    out = root / "other"
    out.mkdir(parents=True)
    build_tokenizer(out, vocab_size=300)
    return build_model(out, with_tokenizer=False, vocab_size=len(AutoTokenizer.from_pretrained(out)))
