"""Model folders the user trained, finetuned or loaded, remembered so the model lists
offer them again (`catalog.remembered_models`).

Stdlib only. The list is gptterm's own file, `paths.data_dir() / "models.json"`:
`{"version": 1, "models": [{"path": "/abs/folder", "how": "trained", "when": 1714550000.0},
...]}`, newest first, one entry per folder (its resolved path), at most MAX_REMEMBERED.

Reading never fails: a damaged file reads as an empty list (bad entries are skipped)
with one problem line (`load`), and is left as it is until the next `remember` writes
a new list. Two processes remembering at the same moment may lose one entry (the last
write wins); nothing else is at stake.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptterm import paths
from gptterm.safefile import replace_file
from gptterm.textsafe import inert

FILE_NAME = "models.json"
VERSION = 1
HOWS = ("trained", "finetuned", "loaded")
MAX_REMEMBERED = 50
MAX_FILE_BYTES = 1_000_000  # 50 entries take a few kB; more is not a file we wrote
_WHEN_MAX = 4102444800.0  # 2100-01-01 UTC


class LocalModelsError(Exception):
    """The list of remembered models could not be written; the message is one line."""


@dataclass(frozen=True)
class Remembered:
    path: str  # absolute
    how: str  # one of HOWS
    when: float  # seconds since 1970


def models_file() -> Path:
    return paths.data_dir() / FILE_NAME


def load(file: Path | None = None) -> tuple[list[Remembered], str]:
    """The remembered folders, newest first, and one problem line ('' when the file is
    sound or missing; it names the file: show it through `textsafe.inert`). Never raises."""
    try:
        file = models_file() if file is None else file
        with open(file, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return [], ""
    except OSError as exc:
        return [], f"{exc.filename or file}: cannot read: {exc.strerror or exc}"
    if len(raw) > MAX_FILE_BYTES:
        return [], f"{file}: over {MAX_FILE_BYTES:,} bytes: ignored"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return [], f"{file}: not valid JSON: ignored (the next model remembered replaces it)"
    if not (isinstance(data, dict) and data.get("version") == VERSION
            and isinstance(data.get("models"), list)):
        return [], (f'{file}: expected {{"version": {VERSION}, "models": [...]}}: ignored '
                    "(the next model remembered replaces it)")
    entries = [e for e in map(_entry, data["models"]) if e is not None]
    skipped = len(data["models"]) - len(entries)
    problem = (f"{file}: {skipped} entries skipped (expected an absolute path, how: "
               f"{' | '.join(HOWS)}, and a time)") if skipped else ""
    return _unique(entries)[:MAX_REMEMBERED], problem


def remembered() -> list[Remembered]:
    """The remembered folders, newest first (a damaged file: none; see `load`)."""
    return load()[0]


def remember(path: str | Path, *, how: str) -> None:
    """Put the folder `path` first in the list, as `how` ("trained", "finetuned",
    "loaded"), now.

    A folder that is already there moves to the front; one only loaded again keeps
    how it was made ("trained" says more than "loaded"). Raises LocalModelsError when
    the file cannot be written.
    """
    if how not in HOWS:
        raise ValueError(f"how {how!r}: expected one of {', '.join(HOWS)}")
    folder = str(Path(path).expanduser().resolve())
    try:
        file = models_file()
    except OSError as exc:
        raise LocalModelsError(f"{exc.filename or 'data folder'}: cannot create the data "
                               f"folder: {exc.strerror or exc}") from None
    entries, _ = load(file)
    before = next((e for e in entries if e.path == folder), None)
    if how == "loaded" and before is not None:
        how = before.how
    entries = _unique([Remembered(folder, how, time.time()), *entries])[:MAX_REMEMBERED]
    text = json.dumps({"version": VERSION, "models": [e.__dict__ for e in entries]},
                      indent=1) + "\n"  # ASCII: a folder name that is not UTF-8 round-trips
    try:
        replace_file(file, text)
    except OSError as exc:
        raise LocalModelsError(f"{file}: cannot save the remembered models: "
                               f"{exc.strerror or exc}") from None


def remember_or_say(path: str | Path, *, how: str) -> None:
    """`remember`, for a command that succeeded anyway: a failure is a note on stderr."""
    try:
        remember(path, how=how)
    except LocalModelsError as exc:
        print(f"gptterm: note: {inert(str(exc), single_line=True)}", file=sys.stderr)


def _entry(item: Any) -> Remembered | None:
    """One entry from the file, or None when it is not one we would have written."""
    if not isinstance(item, dict):
        return None
    path, how, when = item.get("path"), item.get("how"), item.get("when")
    if not (isinstance(path, str) and _usable_path(path) and how in HOWS
            and isinstance(when, (int, float)) and not isinstance(when, bool)
            and math.isfinite(when) and 0 <= when < _WHEN_MAX):
        return None
    return Remembered(path, how, float(when))


def _usable_path(path: str) -> bool:
    """An absolute path the OS can take (no NUL, no lone surrogates from the JSON)."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return False
    return "\0" not in path and os.path.isabs(path)


def _unique(entries: list[Remembered]) -> list[Remembered]:
    """The first entry for each path (the list is newest first)."""
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.path not in seen:
            seen.add(e.path)
            out.append(e)
    return out
