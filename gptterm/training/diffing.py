"""`gptterm diff A B FILE`: where model B gains and loses log-probability over model A.

Both models score the file exactly as `gptterm perplexity` does (`perplexity.score_file`,
the same windows), so each token's loss lines up between them: every token after the
first is scored once, whatever the window. `rank` is the pure part: two per-token
log-prob arrays in, the positions of the largest gains and losses out.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gptterm.training import TrainingError

CONTEXT_TOKENS = 12  # tokens of text before a token shown as its context
CONTEXT_CHARS = 48  # ... cut to at most this many characters (the end kept)


class TokenizerMismatch(TrainingError):
    """The two models do not encode the file to the same tokens: nothing lines up."""


@dataclass(frozen=True)
class Change:
    """B's log-prob minus A's (nats) at scored token `position` (ids[position + 1])."""

    position: int
    delta: float


def rank(logp_a: Sequence[float], logp_b: Sequence[float],
         top: int) -> tuple[list[Change], list[Change]]:
    """(gains, losses): the `top` positions where B's log-prob is above A's by most
    (delta > 0, largest first) and below it by most (delta < 0, most negative first).
    Ties go to the earlier position; a token either model cannot score (a non-finite
    log-prob) is left out, as is one where they agree exactly."""
    if len(logp_a) != len(logp_b):
        raise ValueError(f"log-prob arrays differ in length: {len(logp_a)} vs {len(logp_b)}")
    deltas = [(i, b - a) for i, (a, b) in enumerate(zip(logp_a, logp_b))
              if math.isfinite(a) and math.isfinite(b)]
    gains = heapq.nsmallest(top, (d for d in deltas if d[1] > 0), key=lambda d: (-d[1], d[0]))
    losses = heapq.nsmallest(top, (d for d in deltas if d[1] < 0), key=lambda d: (d[1], d[0]))
    return [Change(*d) for d in gains], [Change(*d) for d in losses]


def tokenizer_problem(tokenizer_a: Any, ids_a: list[int], tokenizer_b: Any,
                      ids_b: list[int]) -> str | None:
    """Why B's tokens cannot be compared with A's (None: same vocabulary, same ids)."""
    vocab_a, vocab_b = tokenizer_a.get_vocab(), tokenizer_b.get_vocab()
    if vocab_a != vocab_b:
        return f"their vocabularies differ ({len(vocab_a):,} vs {len(vocab_b):,} tokens)"
    if ids_a != ids_b:
        at = next((i for i, (a, b) in enumerate(zip(ids_a, ids_b)) if a != b),
                  min(len(ids_a), len(ids_b)))
        return f"they encode the file differently (from token {at})"
    return None


def context_of(tokenizer: Any, ids: list[int], position: int) -> tuple[str, str]:
    """(the text just before scored token `position`, the token's text), both raw.

    A byte-level token may hold part of a character, which alone decodes to U+FFFD: the
    token's text is what it adds to the decoded context, so a character it completes
    shows whole (with the bytes before it), and the context ends before that character."""
    target = position + 1
    start = max(0, target - CONTEXT_TOKENS)
    before = tokenizer.decode(ids[start:target])
    with_token = tokenizer.decode(ids[start:target + 1])
    # An incomplete character decodes to U+FFFD in both: it belongs to the token.
    common = len(os.path.commonprefix([before, with_token]).rstrip("\ufffd"))
    context = with_token[:common]
    if start > 0:  # the window may begin inside a character
        context = context.lstrip("\ufffd")
    return context[-CONTEXT_CHARS:], with_token[common:]


def diff_files(model_a: str, model_b: str, path: str, *, top: int = 10,
               context: int | None = None, max_tokens: int = 0, device: str = "auto",
               threads: int | None = None, precision: str | None = None) -> dict:
    """{'perplexity_a', 'perplexity_b', 'gains', 'losses', ...}: both models' perplexity
    on the file (as `gptterm perplexity` gives it) and the `top` tokens where B gains
    and loses most over A, each {'context', 'token', 'delta', 'position', 'token_id'}; texts raw.
    TokenizerMismatch when B's tokens are not A's."""
    from gptterm.training.perplexity import score_file

    options = {"context": context, "max_tokens": max_tokens, "device": device,
               "threads": threads, "precision": precision}
    a = score_file(model_a, path, **options)

    def same_tokens(tokenizer_b: Any, ids_b: list[int]) -> None:
        why = tokenizer_problem(a.tokenizer, a.ids, tokenizer_b, ids_b)
        if why:
            raise TokenizerMismatch(f"{model_a} and {model_b} do not share a tokenizer: {why}; "
                                    "a diff needs the same tokens")

    b = score_file(model_b, path, check=same_tokens, **options)
    gains, losses = rank([-x for x in a.losses], [-x for x in b.losses], top)

    def rows(changes: list[Change]) -> list[dict]:
        out = []
        for change in changes:
            before, token = context_of(a.tokenizer, a.ids, change.position)
            out.append({"context": before, "token": token, "delta": round(change.delta, 6),
                        "position": change.position, "token_id": a.ids[change.position + 1]})
        return out

    return {"perplexity_a": a.result["perplexity"], "perplexity_b": b.result["perplexity"],
            "gains": rows(gains), "losses": rows(losses), "model_a": model_a,
            "model_b": model_b, "file": a.result["file"], "tokens": a.result["tokens"],
            **({"precision_a": a.result["precision"], "precision_b": b.result["precision"]}
               if precision else {})}
