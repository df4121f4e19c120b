"""The context window rule: what part of a session's tokens the model sees.

GPT-2 has learned absolute positions, so a cached prefix is reusable only while the
window keeps its start. The rule therefore moves the start as rarely as it can:
- `cap_max_new`: a reply may use at most half the window, so at least half stays
  for the context (asking for more is capped, and the caller says so once).
- `place`: keep the current start while the context and the room still needed fit;
  when they do not, move the start so that only the newest `keep` tokens stay
  (half the window), which leaves room for the turns that follow.
Greedy and sampled replies need room for one token at the start and slide the window
when it fills while they write (`Decoder.advance`), so a turn that follows a reply
almost always finds its prefix cached. Beam and contrastive search work on forks of
the cache and cannot slide: they need room for the whole reply up front.
Pure functions, no torch.
"""

from __future__ import annotations

SLIDING_METHODS = ("greedy", "sample")


def cap_max_new(requested: int, n_ctx: int) -> int:
    """The effective max_new_tokens: at most half the window, at least 1."""
    return max(1, min(requested, n_ctx // 2))


def keep_after_move(n_ctx: int, need: int) -> int:
    """How many of the newest tokens stay when the window moves."""
    return max(1, min(n_ctx // 2, n_ctx - need))


def room_needed(method: str, max_new: int) -> int:
    """Positions that must be free when a request starts."""
    return 1 if method in SLIDING_METHODS else max_new


def place(total: int, start: int, n_ctx: int, need: int) -> int:
    """The window start for a context of `total` tokens.

    Args:
        total: tokens in the whole context.
        start: the current window start (the cache was built from there).
        n_ctx: the model's window.
        need: positions that must stay free after the context.
    """
    if not 0 <= start < total:
        start = 0
    if total - start + need <= n_ctx:
        return start
    return max(0, total - keep_after_move(n_ctx, need))
