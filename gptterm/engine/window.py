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
A session's pinned memory (its first tokens, `Generate.pinned_segments`) never leaves
the window: `place_pinned` places the rest of the context in the room the memory leaves,
by the same rule, and the window is the memory followed by the context from its start.
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


def room_needed(method: str, max_new: int, pinned: int = 0) -> int:
    """Positions that must be free when a request starts. A reply after `pinned` tokens
    (a memory) gets room for its whole length, since a slide would push the memory out."""
    return 1 if method in SLIDING_METHODS and not pinned else max_new


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


def pinned_kept(pinned: int, n_ctx: int, need: int) -> int:
    """How many of the context's first `pinned` tokens stay at the window's start: at most
    half the window, and always leaving room for `need` and one token of the rest (the
    rest of a longer memory is ordinary context, which the window may drop)."""
    return max(0, min(pinned, n_ctx // 2, n_ctx - need - 1))


def place_pinned(total: int, pinned: int, start: int, n_ctx: int, need: int) -> int:
    """Where the rest of the context starts when its first tokens are pinned.

    The window is the first `pinned_kept(pinned, n_ctx, need)` tokens, then the context
    from the returned start; that rest is placed by `place` in the room the pinned tokens
    leave. With nothing pinned this is `place`.

    Args:
        total: tokens in the whole context (the pinned ones included).
        pinned: the pinned tokens at the context's start.
        start: the current start of the rest (the cache was built from there).
        n_ctx: the model's window.
        need: positions that must stay free after the context.
    """
    kept = pinned_kept(pinned, n_ctx, need)
    if kept == 0:
        return place(total, start, n_ctx, need)
    rest = place(total - kept, start - kept, n_ctx - kept, need)
    return kept + rest if rest else 0  # 0: the whole context fits, nothing left out


def left_out(start: int, pinned: int, n_ctx: int, need: int) -> int:
    """How many tokens a window starting its rest at `start` leaves out (the pinned ones
    stay; 0 when the whole context fits)."""
    kept = pinned_kept(pinned, n_ctx, need)
    return start - kept if start > kept else 0


def window_ids(ids: list[int], pinned: int, start: int, n_ctx: int, need: int) -> list[int]:
    """The ids the model sees: the kept pinned tokens, then the context from `start`."""
    kept = pinned_kept(pinned, n_ctx, need)
    return ids[:kept] + ids[max(start, kept):]
