"""`gptterm perplexity MODEL FILE`: load a model offline and score a text file."""

from __future__ import annotations

from pathlib import Path

from gptterm.training import TrainingError, corpus


def file_perplexity(model_name: str, path: str, *, context: int | None = None,
                    max_tokens: int = 0, device: str = "auto",
                    threads: int | None = None) -> dict:
    """{'perplexity', 'loss', 'tokens', 'model', 'file'} of `model_name` on the file;
    `threads` as in engine/threads.py (None: picked for the model)."""
    text = "\n".join(d.text for d in corpus.read_corpus([path], "text"))
    from gptterm.engine.threads import use_threads
    from gptterm.training import data, evaluate
    from gptterm.training.run import load_base
    from gptterm.training.trainer import pick_device

    model, tokenizer, _ = load_base(model_name)
    dev = pick_device(device)
    model.to(dev)
    block = min(context or model.config.n_positions, model.config.n_positions)
    if block < 1:
        raise TrainingError(f"--context: expected a positive number, got {context}")
    use_threads(sum(p.numel() for p in model.parameters()), threads, tokens=block)
    ids = data.encode_documents(tokenizer, [text])[:-1]  # no trailing eos
    rows = data.eval_blocks(ids, block, max_tokens)
    if not rows:
        raise TrainingError(f"{path}: too short to score (fewer than 2 tokens)")
    loss, count = evaluate.mean_loss(model, rows, dev)
    return {"perplexity": round(evaluate.perplexity(loss), 4), "loss": round(loss, 6),
            "tokens": count, "model": model_name, "file": str(Path(path))}
