"""Read a session's turns a page at a time, newest last: what a screen shows of a long session.

`turns_before(store, session_id, n)` gives the last `n` turns (or the `n` before a turn
position) as light `TurnLine`s, and `count_before` how many turns lie further back, so a
session of any size opens in the time it takes to read one page. Both use the
`(session_id, idx)` index and read only the columns a transcript shows, through the
store's `db.read` (a failure is one `StoreError` line). `last_reply` reads the end of a
session only: the trailing model turns (a reply and its continuations) and the newest
model turn with its stats. All three read the session's chosen path (`on_path`, see
store.core), through the index of its positions. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from gptterm.store.core import ALT_FIGURES  # the one "2/3" query
from gptterm.store.records import Turn, turn_from_row

_END = 2**63 - 1  # past every turn position: "the newest turns"


class TurnLine(NamedTuple):
    """One turn as a transcript shows it (no tokens, chunks or stats)."""

    id: int
    index: int
    role: str
    text: str
    status: str
    seed: int | None = None
    alternatives: int = 1  # this turn and its alternatives (a reply written again: 3)
    alternative: int = 1  # which of them this is, from 1


def turns_before(store: Any, session_id: str, n: int, before: int | None = None) -> list[TurnLine]:
    """The last `n` turns of a session whose position is below `before` (None: all), oldest first."""
    rows = store.db.read(
        f"SELECT t.id, t.idx, t.role, t.text, t.status, t.seed{ALT_FIGURES} FROM turns t"
        " WHERE t.session_id = ? AND t.on_path = 1 AND t.idx < ? ORDER BY t.idx DESC LIMIT ?",
        (session_id, _END if before is None else before, max(0, n)))
    # A cell that is not text (a damaged or hand-edited file) shows as empty, as in context_text.
    return [TurnLine(r["id"], r["idx"], r["role"], r["text"] if isinstance(r["text"], str) else "",
                     r["status"], r["seed"] if isinstance(r["seed"], int) else None,
                     r["n_alt"], r["alt_pos"])
            for r in reversed(rows)]


def count_before(store: Any, session_id: str, before: int | None = None) -> int:
    """How many turns of a session lie below position `before` (None: all of them)."""
    rows = store.db.read("SELECT count(*) AS n FROM turns WHERE session_id = ? AND on_path = 1"
                         " AND idx < ?",
                         (session_id, _END if before is None else before))
    return rows[0]["n"]


REPLY_TAIL = 200  # turns read from the end to find the last reply and its continuations


@dataclass
class LastReply:
    """The end of a session: its newest model turn and the reply it belongs to."""

    turn: Turn | None  # the newest model turn (with stats and seed), None when there is none
    text: str  # the trailing model turns joined: a reply with its Ctrl+G continuations


def last_reply(store: Any, session_id: str, skip_id: int | None = None) -> LastReply:
    """The newest model turn and the reply text after the last user turn (leaving out
    turn `skip_id`: a reply still streaming, which the caller holds)."""
    rows = store.db.read("SELECT * FROM turns WHERE session_id = ? AND on_path = 1"
                         " ORDER BY idx DESC LIMIT ?",
                         (session_id, REPLY_TAIL))
    turns = [t for t in map(turn_from_row, rows) if t.id != skip_id]
    newest = next((t for t in turns if t.role == "model"), None)
    trailing = []
    for t in turns:
        if t.role != "model":
            break
        trailing.append(t.text)
    return LastReply(newest, "".join(reversed(trailing)))
