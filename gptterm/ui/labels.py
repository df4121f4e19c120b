"""How the UI names things in little space."""

from __future__ import annotations

from pathlib import Path

from gptterm.textsafe import inert


def short_model(model: str | None) -> str:
    """A model's name for the status bar and sidebar: a folder's own name, not its path."""
    if not model:
        return ""
    name = Path(model).name if ("/" in model and Path(model).is_absolute()) else model
    return inert(name, single_line=True)
