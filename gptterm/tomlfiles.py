"""Reading the user-editable TOML files (presets, themes) as data that fails politely.

A bad file becomes one error line naming the file; it never stops the others loading.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_toml(path: Path, error: type[Exception]) -> dict[str, Any]:
    """Parse `path`; raise `error` with one line naming the file when it cannot."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def load_dirs(dirs: Iterable[Path], load: Callable[[Path], T],
              error: type[Exception]) -> tuple[dict[str, T], list[str]]:
    """Load every `*.toml` in `dirs` with `load`; later dirs win by file name.

    Returns:
        (loaded objects by file stem, one line per file that raised `error`).
    """
    loaded: dict[str, T] = {}
    failed: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                loaded[path.stem] = load(path)
            except error as exc:
                failed.append(str(exc))
    return loaded, failed
