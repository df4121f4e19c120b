"""Read a session's turns a page at a time, newest last: what a screen shows of a long session.

`turns_before(store, session_id, n)` gives the last `n` turns (or the `n` before a turn
position) as light `TurnLine`s, and `count_before` how many turns lie further back, so a
session of any size opens in the time it takes to read one page. Both use the
`(session_id, idx)` index and read only the columns a transcript shows, through the
store's `db.read` (a failure is one `StoreError` line). Stdlib only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

_END = 2**63 - 1  # past every turn position: "the newest turns"


class TurnLine(NamedTuple):
    """One turn as a transcript shows it (no tokens, chunks or stats)."""

    id: int
    index: int
    role: str
    text: str
    status: str


def turns_before(store: Any, session_id: str, n: int, before: int | None = None) -> list[TurnLine]:
    """The last `n` turns of a session whose position is below `before` (None: all), oldest first."""
    rows = store.db.read(
        "SELECT id, idx, role, text, status FROM turns WHERE session_id = ? AND idx < ?"
        " ORDER BY idx DESC LIMIT ?", (session_id, _END if before is None else before, max(0, n)))
    # A cell that is not text (a damaged or hand-edited file) shows as empty, as in context_text.
    return [TurnLine(r["id"], r["idx"], r["role"], r["text"] if isinstance(r["text"], str) else "",
                     r["status"]) for r in reversed(rows)]


def count_before(store: Any, session_id: str, before: int | None = None) -> int:
    """How many turns of a session lie below position `before` (None: all of them)."""
    rows = store.db.read("SELECT count(*) AS n FROM turns WHERE session_id = ? AND idx < ?",
                         (session_id, _END if before is None else before))
    return rows[0]["n"]
