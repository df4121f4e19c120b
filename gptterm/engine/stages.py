"""Every stage of the sampling chain for one token: what the model said, what each active
step of the preset made of it, and what was drawn from.

`capture` runs the chain step by step (instead of `sampling.apply_chain`) and keeps the
top K of each stage's distribution; its last scores are what the picker draws from, so
the chain runs once either way. A stage's probabilities are the softmax of its scores;
a token a step removed (-inf) has probability 0 and is left out of its top. Only called
when a Generate asks for inspection: the plain decode loop never comes here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gptterm.protocol import StageTop, TokenInspect

Top = tuple[tuple[int, float], ...]  # (token id, probability), most probable first
Stages = list[tuple[str, Top]]  # (stage name, its top), "model" first, "final" last

MODEL, FINAL = "model", "final"


def top_of(scores: torch.Tensor, k: int) -> Top:
    """The `k` most probable tokens of softmax(`scores`) ([V] or [1, V]), removed ones
    (score -inf) left out; ties go to the lower id, as argmax picks them."""
    row = scores.reshape(-1).float()
    probs = torch.softmax(row, dim=-1)
    # topk breaks ties at its cut arbitrarily: take every token tied with the k-th, then
    # a stable sort of those (in id order) by score.
    kth = torch.topk(row, min(k, row.shape[-1])).values[-1]
    ids = torch.nonzero(row >= kth if kth > float("-inf") else row > kth).flatten()
    order = torch.sort(row[ids], descending=True, stable=True).indices[:k]
    ids = ids[order]
    return tuple(zip(ids.tolist(), probs[ids].tolist()))


def capture(named: Sequence[tuple[str, Callable]], history: torch.Tensor,
            logits: torch.Tensor, k: int) -> tuple[torch.Tensor, Stages]:
    """(the final scores [1, V], the stages) for next-token `logits` ([1, V]) after
    `history` ([1, T]): "model", then each step of `named` in order, then "final"."""
    stages: Stages = [(MODEL, top_of(logits, k))]
    scores = logits
    for name, step in named:
        scores = step(history, scores)
        stages.append((name, top_of(scores, k)))
    stages.append((FINAL, stages[-1][1] if named else stages[0][1]))
    return scores, stages


def among(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> Top:
    """The top of `scores` kept to `candidates` (ids; every other token removed): the
    final stage of a search that chooses among a few candidates (contrastive search)."""
    row = scores.reshape(-1)
    kept = torch.full_like(row, float("-inf"))
    kept[candidates] = row[candidates]
    return top_of(kept, k)


def inspected(chosen: int, stages: Stages, text_of: Callable[[int], str]) -> TokenInspect:
    """The protocol record of one token's stages, each id with its text."""
    return TokenInspect(chosen, tuple(StageTop(name, tuple((i, text_of(i), p) for i, p in top))
                                      for name, top in stages), text_of(chosen))
