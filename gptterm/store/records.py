"""The store's records: `Session` and `Turn`, their rules, and how rows become records.

Everything here is plain data and pure functions (no database handle), so
exporting, search and the UI share one definition of a valid session:

- ids are gptterm's own (`new_id`: 8 lowercase hex digits); `looks_like_id` is the
  test that keeps names from shadowing ids;
- `check_*` validate values from outside (an import file) with ranges, raising one
  `StoreError` line that names the field and what was allowed;
- `session_from_row` / `turn_from_row` never fail on what is already stored: a
  damaged value becomes a placeholder (empty list, empty dict, time 0), so listing,
  showing, exporting and replaying a bad row still work.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gptterm.presets import SESSION_KEYS, Preset, PresetError, from_mapping
from gptterm.tomlfiles import show_value

ROLES = ("user", "model")
# "interrupted": the turn was still streaming when its writer process died.
STATUSES = ("complete", "partial", "cancelled", "failed", "interrupted")
FINAL_STATUSES = ("complete", "cancelled", "failed")
TITLE_CHARS = 60

# Sane ranges for values read from outside.
TIME_MIN = 946684800.0  # 2000-01-01 UTC
TIME_MAX = 4102444800.0  # 2100-01-01 UTC
SEED_MAX = 2**63  # exclusive: SQLite INTEGER is signed 64-bit
TOKEN_ID_MAX = 2**31  # exclusive
MAX_CHUNK_GAP_S = 60.0  # a longer pause between two streamed chunks is not a recording
MAX_NESTING = 2  # preset values may be lists of scalars, nothing deeper
_ID = re.compile(r"[0-9a-f]{8}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class StoreError(Exception):
    """A session store problem, as one line for the user."""


@dataclass
class Session:
    id: str
    title: str
    name: str | None
    created: float
    updated: float
    # What the session was last run with, so it reopens as it was left (None: not yet).
    model: str | None = None
    preset: str | None = None  # a preset name
    sampling: dict = field(default_factory=dict)  # overrides of SESSION_KEYS fields
    memory: str = ""  # pinned text that always opens the model's context ("" when none)
    branched_from: str | None = None  # the session this one was branched from
    branched_at: int | None = None  # ... after its turn at this position

    @property
    def label(self) -> str:
        """What to show for this session: its title, else its name, else its id."""
        return self.title or self.name or self.id


@dataclass
class Turn:
    id: int
    session_id: str
    index: int
    role: str
    text: str
    model: str | None = None
    preset: dict | None = None
    seed: int | None = None
    token_ids: list[int] = field(default_factory=list)
    chunks: list[list] = field(default_factory=list)
    status: str = "complete"
    stats: dict = field(default_factory=dict)
    created: float = 0.0
    parent_id: int | None = None  # the turn this one follows (None: the first)
    # Among the turns that follow the same parent in the same role (regenerated replies,
    # edited versions): how many there are, and this one's place (1-based, oldest first).
    alternatives: int = 1
    alternative: int = 1
    # A reply's chain stages as {"top_k", "tokens"} (store.inspection); only exports and
    # imports carry it (Store.turn_inspect reads it).
    inspect: dict | None = None


def title_from(text: str) -> str:
    """A session title from a prompt: its first non-empty line, shortened."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
    return ""


def new_id() -> str:
    """A fresh session id: 8 random lowercase hex digits."""
    return secrets.token_hex(4)


def looks_like_id(text: str) -> bool:
    """Whether `text` has the form of a gptterm session id (so it may not be a name)."""
    return bool(_ID.fullmatch(text))


def when(seconds: float) -> str:
    """A stored time for people ("2024-05-01 12:30"), or "?" when it is out of range."""
    if not is_time(seconds):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


# ------------------------------------------------------------------ value rules


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_time(v: Any) -> bool:
    return is_number(v) and TIME_MIN <= v < TIME_MAX


def is_text(v: Any) -> bool:
    """A string SQLite and a terminal can both carry (no lone surrogates)."""
    return isinstance(v, str) and not _SURROGATE.search(v)


def is_scalar(v: Any) -> bool:
    """A JSON scalar: null, bool, finite number or text."""
    return v is None or isinstance(v, bool) or is_number(v) or is_text(v)


def is_seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < SEED_MAX


def is_token_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < TOKEN_ID_MAX


def is_flat_object(v: Any, *, lists: bool, objects: bool = False) -> bool:
    """An object with text keys and scalar values; with `lists`, a value may also be a list
    of scalars; with `objects`, an object of text keys to scalars or infinities (a preset's
    logit_bias, where -inf bans a token)."""
    if not isinstance(v, dict):
        return False
    for key, value in v.items():
        if not is_text(key):
            return False
        if lists and isinstance(value, list):
            if not all(is_scalar(x) for x in value):
                return False
        elif objects and isinstance(value, dict):
            if not all(is_text(k) and (is_scalar(x) or x in (math.inf, -math.inf))
                       for k, x in value.items()):
                return False
        elif not is_scalar(value):
            return False
    return True


def chunks_problem(chunks: Any, *, timing: bool = True) -> str:
    """Why `chunks` is not a valid recording ('' when it is).

    A recording is a list of [seconds, text] or [seconds, text, "replace"] with finite
    seconds; with `timing` (files from outside) the seconds also start at >= 0, never
    decrease and leave no gap over MAX_CHUNK_GAP_S.
    """
    if not isinstance(chunks, list):
        return "a list"
    last = 0.0
    for c in chunks:
        if not (isinstance(c, list) and len(c) in (2, 3) and is_number(c[0]) and is_text(c[1])
                and (len(c) == 2 or c[2] == "replace")):
            return 'a list of [seconds, text] or [seconds, text, "replace"], seconds finite'
        if not timing:
            continue
        if c[0] < last:
            return "chunk times >= 0 that never decrease"
        if c[0] - last > MAX_CHUNK_GAP_S:
            return f"chunk times >= 0 with gaps of at most {MAX_CHUNK_GAP_S:g} s"
        last = c[0]
    return ""


def check_sampling(sampling: Any, where: str = "session sampling") -> dict:
    """A session's sampling overrides, checked by the preset rules; returns them as the
    preset stores them (ints for float fields become floats).

    Only SESSION_KEYS may be set; a value out of its preset range is one StoreError
    line naming the key and what was expected.
    """
    if not isinstance(sampling, dict):
        raise StoreError(f"{where}: expected an object of {', '.join(SESSION_KEYS)}")
    for key in sampling:
        if key not in SESSION_KEYS:
            raise StoreError(f"{where}: unknown key {show_value(key)}: "
                             f"expected one of {', '.join(SESSION_KEYS)}")
    try:
        preset = from_mapping({**Preset().values(), **sampling}, where=where)
    except PresetError as exc:
        raise StoreError(str(exc)) from None
    return {key: getattr(preset, key) for key in sampling}


# ------------------------------------------------------------------ rows -> records


def session_from_row(row: sqlite3.Row | Mapping[str, Any]) -> Session:
    """A session from its row; bad stored values become placeholders.

    model, preset, sampling, memory and where it branched from may be absent from `row`
    (a search hit carries only what it shows): they are then None, None, {}, "", None.
    """
    keys = row.keys()
    model, preset, sampling, memory, from_, at = (
        row[k] if k in keys else None
        for k in ("model", "preset", "sampling", "memory", "branched_from", "branched_at"))
    sampling = _json(sampling, {})
    return Session(_str(row["id"]), _str(row["title"]),
                   row["name"] if isinstance(row["name"], str) else None,
                   _float(row["created"]), _float(row["updated"]),
                   model=model if is_text(model) else None,
                   preset=preset if is_text(preset) else None,
                   sampling=sampling if is_flat_object(sampling, lists=False) else {},
                   memory=memory if is_text(memory) else "",
                   branched_from=from_ if is_text(from_) else None,
                   branched_at=at if _is_count(at) else None)


def turn_from_row(row: sqlite3.Row | Mapping[str, Any]) -> Turn:
    """A turn from its row; bad stored values become placeholders, never an exception.

    parent_id and the alternatives figures (`n_alt`, `alt_pos`, see Store.turns) may be
    absent from `row`: they are then None, 1 and 1.
    """
    keys = row.keys()
    parent, n_alt, alt_pos = (row[k] if k in keys else None
                              for k in ("parent_id", "n_alt", "alt_pos"))
    preset = _json(row["preset"], None)
    chunks = _json(row["chunks"], [])
    token_ids = _json(row["token_ids"], [])
    stats = _json(row["stats"], {})
    return Turn(
        id=row["id"], session_id=_str(row["session_id"]),
        index=row["idx"] if isinstance(row["idx"], int) else 0,
        role=row["role"] if row["role"] in ROLES else "model",
        text=_str(row["text"]),
        model=row["model"] if isinstance(row["model"], str) else None,
        preset=preset if is_flat_object(preset, lists=True, objects=True) else None,
        seed=row["seed"] if is_seed(row["seed"]) else None,
        token_ids=token_ids if isinstance(token_ids, list) and all(
            is_token_id(t) for t in token_ids) else [],
        chunks=[] if chunks_problem(chunks, timing=False) else chunks,
        status=row["status"] if row["status"] in STATUSES else "failed",
        stats=stats if is_flat_object(stats, lists=True) else {},  # lists: "picked"
        created=_float(row["created"]),
        parent_id=parent if isinstance(parent, int) else None,
        alternatives=n_alt if _is_count(n_alt) and n_alt >= 1 else 1,
        alternative=alt_pos if _is_count(alt_pos) and alt_pos >= 1 else 1,
    )


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _str(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)


def _float(v: Any) -> float:
    return float(v) if is_number(v) else 0.0


def _json(raw: Any, default: Any) -> Any:
    if raw is None or not isinstance(raw, (str, bytes)):
        return default
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return default
