"""Search helpers: FTS5 query building, a substring fallback, and snippets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gptterm.store.core import Store


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


def like_hits(store: Store, words: Sequence[str], limit: int) -> list:
    """Turns whose text contains every word as a substring (case-insensitive for ASCII)."""
    words = [w.rstrip("*") or w for w in words]
    where = " AND ".join("instr(lower(t.text), lower(?)) > 0" for _ in words)
    return store._read(
        "SELECT t.*, s.title AS s_title, s.name AS s_name, s.created AS s_created,"
        " s.updated AS s_updated FROM turns AS t JOIN sessions AS s ON s.id = t.session_id"
        f" WHERE {where} ORDER BY s.updated DESC, t.idx LIMIT ?",
        (*words, limit),
    )


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
