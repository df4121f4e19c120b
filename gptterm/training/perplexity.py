"""`gptterm perplexity MODEL FILE`: load a model offline and score a text file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptterm.training import TrainingError, corpus


@dataclass(frozen=True)
class Scored:
    """A model's score of a file: the result `gptterm perplexity` prints, and per token."""

    result: dict  # {'perplexity', 'loss', 'tokens', 'model', 'file'[, 'precision']}
    ids: list[int]  # the file's tokens as scored; ids[0] is context only
    losses: list[float]  # losses[i] = -log p(ids[i + 1] | its window), in nats
    tokenizer: Any


def file_perplexity(model_name: str, path: str, *, context: int | None = None,
                    max_tokens: int = 0, device: str = "auto",
                    threads: int | None = None, precision: str | None = None) -> dict:
    """{'perplexity', 'loss', 'tokens', 'model', 'file'} of `model_name` on the file;
    `threads` as in engine/threads.py (None: picked for the model). With `precision`
    (engine/precision.py) the engine's runner scores it at that precision, and the
    result names it ('precision')."""
    return score_file(model_name, path, context=context, max_tokens=max_tokens,
                      device=device, threads=threads, precision=precision).result


def score_file(model_name: str, path: str, *, context: int | None = None,
               max_tokens: int = 0, device: str = "auto", threads: int | None = None,
               precision: str | None = None,
               check: Callable[[Any, list[int]], None] | None = None) -> Scored:
    """`file_perplexity` with each token's loss kept; `check(tokenizer, ids)` runs before
    the scoring and may refuse (raise), e.g. when a second model's tokens differ."""
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
    n_threads = use_threads(sum(p.numel() for p in model.parameters()), threads, tokens=block)
    ids = data.encode_documents(tokenizer, [text])[:-1]  # no trailing eos
    rows = data.eval_blocks(ids, block, max_tokens)
    if not rows:
        raise TrainingError(f"{path}: too short to score (fewer than 2 tokens)")
    scored_ids = ids[:sum(len(r[1]) for r in rows) + 1].tolist()
    if check is not None:
        check(tokenizer, scored_ids)
    extra = {}
    if precision is None:
        losses = evaluate.token_losses(model, rows, dev)
    else:
        from gptterm.engine.precision import token_losses

        runner = _runner(model, model_name, precision, dev, n_threads, tokenizer)
        losses = token_losses(runner, rows)
        extra = {"precision": runner.precision}
    loss, count = evaluate.mean_of(losses)
    result = {"perplexity": round(evaluate.perplexity(loss), 4), "loss": round(loss, 6),
              "tokens": count, "model": model_name, "file": str(Path(path)), **extra}
    return Scored(result, scored_ids, [x for row in losses for x in row.tolist()], tokenizer)


def _runner(model, model_name: str, precision: str, device: str, threads: int, tokenizer):
    """The engine's runner of `model` at `precision` (auto: as the engine picks it)."""
    from gptterm import catalog
    from gptterm.engine import precision as prec
    from gptterm.engine.loading import weights_dir

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
        else tokenizer.eos_token_id
    try:
        return prec.resolve(model.eval(), precision,
                            model_dir=weights_dir(catalog.resolve(model_name)),
                            device=device, threads=threads, start_token=start or 0,
                            n_ctx=model.config.n_positions)
    except prec.PrecisionError as exc:
        raise TrainingError(str(exc)) from None
