"""Full-text search over turns: plain functions over a `Database`, returning records.

`search` asks the FTS5 index first (whole words, `word*` for a prefix) and adds
substring matches when that finds nothing or the query is not ASCII (scripts written
without spaces, words with particles attached). At most `SQL_WORDS` distinct words go
into SQL (SQLite limits expression depth); further words are checked on the hits in
Python, as case-insensitive substrings. A damaged FTS index is checked and rebuilt
in place (it is derived from the turns table) and the search runs again.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gptterm.store.opening import describe
from gptterm.store.records import (
    Session,
    StoreError,
    Turn,
    is_text,
    session_from_row,
    turn_from_row,
)

if TYPE_CHECKING:
    from gptterm.store.opening import Database

SQL_WORDS = 32

_SELECT = ("SELECT t.*, s.id AS s_id, s.title AS s_title, s.name AS s_name,"
           " s.created AS s_created, s.updated AS s_updated")


def search(db: Database, query: str, limit: int = 50) -> list[tuple[Session, Turn, str]]:
    """Turns whose text holds every word of `query`, newest session first."""
    if not is_text(query):
        raise StoreError("search: expected words in valid Unicode")
    words = distinct_words(query)
    if not words:
        return []
    in_sql = sorted(words, key=len, reverse=True)[:SQL_WORDS]  # the longest pick the fewest
    rest = [w for w in words if w not in in_sql]
    rows = _fts_rows(db, in_sql, limit)
    if len(rows) < limit and (not rows or not query.isascii()):
        seen = {r["id"] for r in rows}
        rows += [r for r in like_hits(db, in_sql, limit) if r["id"] not in seen]
    out = []
    for r in rows:
        turn = turn_from_row(r)
        if rest and not _has_all(turn.text, rest):
            continue
        session = session_from_row({"id": r["s_id"], "title": r["s_title"], "name": r["s_name"],
                                    "created": r["s_created"], "updated": r["s_updated"]})
        snip = r["snip"] if "snip" in r.keys() else snippet(turn.text, words)  # noqa: SIM118
        out.append((session, turn, " ".join(str(snip).split())))
    return out[:limit]


def distinct_words(query: str) -> list[str]:
    """The query's words, each once (case-insensitively), in order."""
    seen: set[str] = set()
    out = []
    for w in query.split():
        if w.casefold() not in seen:
            seen.add(w.casefold())
            out.append(w)
    return out


def fts_query(words: Sequence[str]) -> str:
    """An FTS5 MATCH expression requiring every word (quoted, so `-` or `:` are plain text).

    A trailing `*` on a word keeps its prefix meaning.
    """
    parts = []
    for word in words:
        prefix = word.endswith("*") and len(word) > 1
        core = word[:-1] if prefix else word
        parts.append('"' + core.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " AND ".join(parts)


def _fts_rows(db: Database, words: Sequence[str], limit: int) -> list[sqlite3.Row]:
    sql = (f"{_SELECT}, snippet(turns_fts, 0, '[', ']', '…', 12) AS snip"
           " FROM turns_fts JOIN turns AS t ON t.id = turns_fts.rowid"
           " JOIN sessions AS s ON s.id = t.session_id"
           " WHERE turns_fts MATCH ? ORDER BY s.updated DESC, t.idx LIMIT ?")
    params = (fts_query(words), limit)
    try:
        return db.query(sql, params)
    except sqlite3.Error as exc:
        if not rebuild_if_damaged(db):
            raise StoreError(describe(db.path, "search", exc)) from None
    return db.read(sql, params)


def rebuild_if_damaged(db: Database) -> bool:
    """Check the FTS index; rebuild it from the turns when the check fails.

    Returns whether it was rebuilt (False: the index is fine, the error lies elsewhere).
    """
    try:
        db.query("INSERT INTO turns_fts(turns_fts) VALUES ('integrity-check')")
        return False
    except sqlite3.Error:
        pass
    with db.write() as conn:
        conn.execute("INSERT INTO turns_fts(turns_fts) VALUES ('rebuild')")
    return True


def like_hits(db: Database, words: Sequence[str], limit: int) -> list[sqlite3.Row]:
    """Turns whose text contains every word as a substring (case-insensitive for ASCII)."""
    words = [w.rstrip("*") or w for w in words]
    where = " AND ".join("instr(lower(t.text), lower(?)) > 0" for _ in words)
    return db.read(
        f"{_SELECT} FROM turns AS t JOIN sessions AS s ON s.id = t.session_id"
        f" WHERE {where} ORDER BY s.updated DESC, t.idx LIMIT ?",
        (*words, limit),
    )


def _has_all(text: str, words: Sequence[str]) -> bool:
    lowered = text.casefold()
    return all((w.rstrip("*") or w).casefold() in lowered for w in words)


def snippet(text: str, words: Sequence[str], width: int = 80) -> str:
    """About `width` characters of `text` around the first word found, words in [brackets]."""
    lowered = text.lower()
    positions = [lowered.find(w.lower()) for w in words if lowered.find(w.lower()) >= 0]
    start = max(0, min(positions) - width // 3) if positions else 0
    piece = text[start:start + width]
    pattern = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True) if w)
    if pattern:
        piece = re.sub(pattern, lambda m: f"[{m.group(0)}]", piece, flags=re.IGNORECASE)
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")
