"""Reading the user-editable TOML files (presets, themes, config) as data that fails politely.

A bad file becomes one error line naming the file; it never stops the others loading.
`show_value` prints a user's value in such a line without ever raising.
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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {one_line(exc)}") from None
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer too long to convert
        raise error(f"{path}: not valid TOML: {one_line(exc)}") from None


def one_line(exc: Exception) -> str:
    """An exception's message on one line (parser messages can span several)."""
    return " ".join(str(exc).split())


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


def show_value(value: Any) -> str:
    """A short one-line repr of a user's value for an error line (never raises)."""
    from gptterm.textsafe import inert

    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print
        text = f"<{type(value).__name__} too large to print>"
    text = inert(text, single_line=True)
    return text if len(text) <= 60 else text[:57] + "..."
