"""Per-session prefix KV caches under one memory budget, least recently used evicted first.

A `CacheEntry` holds the token ids a session's cache has seen and the runner's cache
for them (`runner.py`: keys, values and the last-layer hidden state of each token, which
contrastive search compares candidates against). `offset` is how many tokens of the session's
full context were dropped from the front to fit the model's window: the next turn keeps
the same window start, so its prefix is still cached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class CacheEntry:
    ids: list[int] = field(default_factory=list)
    past: Any = None  # the runner's cache (runner.py), batch 1; None when empty
    offset: int = 0
    # With a pinned memory: where the text after it starts in the session's ids (the
    # window holds the memory, then the session from here; see engine/window.py).
    rest_start: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def hidden(self) -> Any:
        """torch tensor [len(ids), d]: the last-layer hidden state of each cached token."""
        return None if self.past is None or not self.ids else self.past.hidden()

    def crop(self, n: int) -> None:
        """Keep only the first `n` cached tokens."""
        if n <= 0 or self.past is None:
            self.ids, self.past = [], None
            return
        if len(self.ids) > n:
            self.past.crop(n)
            self.ids = self.ids[:n]

    def nbytes(self) -> int:
        return 0 if self.past is None else self.past.nbytes()


class SessionCaches:
    """Caches by session id, evicting the least recently used past `budget_bytes`."""

    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

    def get(self, session_id: str) -> CacheEntry:
        entry = self._entries.pop(session_id, None) or CacheEntry()
        entry.last_used = time.monotonic()
        self._entries[session_id] = entry  # most recent last
        return entry

    def drop(self, session_id: str) -> None:
        self._entries.pop(session_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._entries

    def total_bytes(self) -> int:
        return sum(e.nbytes() for e in self._entries.values())

    def enforce_budget(self, keep: str | None = None) -> list[str]:
        """Evict least recently used sessions (never `keep`) until under budget."""
        evicted = []
        for sid in list(self._entries):
            if self.total_bytes() <= self.budget_bytes:
                break
            if sid != keep:
                del self._entries[sid]
                evicted.append(sid)
        return evicted
