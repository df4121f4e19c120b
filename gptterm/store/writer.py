"""`TurnWriter`: one model turn recorded while it streams.

The writer keeps the turn in memory and writes it out through one path, `flush`,
at least every `flush_interval` seconds (a small timer thread covers pauses in the
stream), so a crash loses at most about that much text.

Errors: a write that fails while streaming (disk full, a lock held too long) is
remembered in `error` and retried at the next write; the stream itself goes on.
`flush` and `finish` raise it as one `StoreError` line. A turn whose process dies
before `finish` stays "partial" until the next `Store` open marks it "interrupted".
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gptterm.store.records import FINAL_STATUSES, StoreError, Turn, is_number

if TYPE_CHECKING:
    from gptterm.store.core import Store

# Who streams a turn: stored with it, so another process can tell whether it still runs.
WRITER_ID = f"{socket.gethostname()}:{os.getpid()}"
# A partial turn whose writer cannot be checked (another host, an older gptterm that
# did not record it) counts as abandoned once it began this long ago.
UNKNOWN_WRITER_STALE_S = 3600.0


def writer_gone(writer: str | None, created: float, now: float | None = None) -> bool:
    """Whether the process that streamed a "partial" turn can no longer finish it.

    The rule: a writer on this host is gone when its process id is no longer running
    (checked with signal 0; POSIX only). A reused process id can make a dead writer
    look alive; the turn then stays "partial" until a later open, never the reverse.
    Any other writer is gone when the turn began over UNKNOWN_WRITER_STALE_S ago.
    """
    host, _, pid = (writer or "").rpartition(":")
    if host == WRITER_ID.rpartition(":")[0] and pid.isdigit() and os.name == "posix":
        return not _running(int(pid))
    now = time.time() if now is None else now
    return not is_number(created) or created < now - UNKNOWN_WRITER_STALE_S


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


class TurnWriter:
    """One model turn being streamed: collects text and writes it out regularly."""

    def __init__(self, store: Store, turn: Turn):
        self.store = store
        self.turn = turn
        self.error: str | None = None  # the last failed write, as one line (None: saved)
        self._t0 = time.monotonic()
        self._last_flush = self._t0
        self._dirty = False
        self._lock = threading.Lock()  # guards the in-memory turn
        self._save_lock = threading.Lock()  # one flush at a time, so writes stay in order
        self._done = threading.Event()
        self._timer = threading.Thread(target=self._flush_loop, name=f"turn-{turn.id}-flush",
                                       daemon=True)
        self._timer.start()

    @property
    def turn_id(self) -> int:
        return self.turn.id

    @property
    def text(self) -> str:
        return self.turn.text

    def _at(self, at: float | None) -> float:
        return round(time.monotonic() - self._t0 if at is None else float(at), 4)

    def _check_open(self) -> None:
        if self._done.is_set():
            raise StoreError(f"turn {self.turn.id} is already finished")

    def append(self, text: str, token_ids: Sequence[int] = (), at: float | None = None) -> None:
        """Add streamed text; `at` is seconds since the turn began (default: now)."""
        self._check_open()
        with self._lock:
            self.turn.text += text
            self.turn.token_ids.extend(int(t) for t in token_ids)
            if text:
                self.turn.chunks.append([self._at(at), text])
            self._dirty = True
        self._flush_if_due()

    def replace_text(self, text: str, token_ids: Sequence[int], at: float | None = None) -> None:
        """Replace the whole reply (beam search's new best); chunk [t, text, "replace"]."""
        self._check_open()
        with self._lock:
            self.turn.text = text
            self.turn.token_ids = [int(t) for t in token_ids]
            self.turn.chunks.append([self._at(at), text, "replace"])
            self._dirty = True
        self._flush_if_due()

    def set_stats(self, **stats: Any) -> None:
        """Merge stats (prompt_tokens, reused_tokens, ...) known before the end."""
        with self._lock:
            self.turn.stats.update(stats)
            self._dirty = True

    def _flush_if_due(self) -> None:
        """Write if `flush_interval` has passed; a failure is kept in `error`, not raised."""
        if self._dirty and time.monotonic() - self._last_flush >= self.store.flush_interval:
            try:
                self.flush()
            except StoreError:
                pass  # recorded in self.error; the next write retries

    def flush(self) -> None:
        """Write the turn as it is now (the one write path); raises StoreError on failure."""
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                snapshot = Turn(**{**self.turn.__dict__, "token_ids": list(self.turn.token_ids),
                                   "chunks": list(self.turn.chunks),
                                   "stats": dict(self.turn.stats)})
                self._dirty = False
                self._last_flush = time.monotonic()
            try:
                self.store._save_turn(snapshot)
            except StoreError as exc:
                self._dirty = True  # keep it pending for the next try
                self.error = str(exc)
                raise
            self.error = None

    def _flush_loop(self) -> None:
        interval = self.store.flush_interval
        while not self._done.wait(interval / 5):  # worst case: interval + interval / 5
            self._flush_if_due()

    def finish(self, status: str, stats: dict | None = None) -> Turn:
        """End the turn: complete | cancelled | failed; writes it a last time.

        Raises StoreError (one line) when that write fails; the turn then stays
        "partial" on disk, and becomes "interrupted" once this process has exited.
        """
        if status not in FINAL_STATUSES:
            raise StoreError(f"turn status {status!r}: expected one of {', '.join(FINAL_STATUSES)}")
        self._done.set()
        self._timer.join()
        with self._lock:
            self.turn.status = status
            self.turn.stats.update(stats or {})
            self._dirty = True
        self.flush()
        return self.turn
