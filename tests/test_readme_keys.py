"""The README's key table and palette list say what the app does (ui/keymap.KEY_ACTIONS)."""

from __future__ import annotations

import re
from pathlib import Path

from gptterm.ui.keymap import KEY_ACTIONS

README = Path(__file__).resolve().parent.parent / "README.md"
NAMES = {"escape": "Esc", "pageup": "PageUp", "pagedown": "PageDown"}


def readme_key(key: str) -> str:
    """"ctrl+n" -> "Ctrl+N", "alt+up" -> "Alt+Up", "f5" -> "F5", as the README writes keys."""
    *mods, base = key.split("+")
    base = NAMES.get(base, base.upper() if len(base) == 1 or re.fullmatch(r"f\d+", base)
                     else base.capitalize())
    return "+".join([m.capitalize() for m in mods] + [base])


def key_table() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("| Key | Does |")
    return text[start:text.index("\n\n", start)]


def test_every_key_action_is_in_the_readme_table():
    table = key_table()
    missing = [f"{a.id} ({readme_key(a.keys.split(',')[0])})" for a in KEY_ACTIONS
               if readme_key(a.keys.split(",")[0]) not in table]
    assert not missing, f"README key table lacks: {', '.join(missing)}"


def test_every_key_in_the_readme_table_is_bound():
    bound = {readme_key(k) for a in KEY_ACTIONS for k in a.keys.split(",")}
    bound |= {"Ctrl+P", "Ctrl+Q"}  # Textual's palette and quit
    rows = key_table().splitlines()[2:]  # after the header and its rule
    key_cells = [c.strip() for row in rows for c in row.strip("|").split("|")][0::2]
    keys = {k.strip() for cell in key_cells for k in cell.split(" / ") if k.strip()}
    assert len(keys) > 20 and keys <= bound, f"README lists unbound keys: {sorted(keys - bound)}"


def test_the_readme_names_the_palette_rows():
    text = README.read_text(encoding="utf-8")
    for row in ("Preset: NAME", "Model: NAME", "Session: TITLE", "Theme: NAME"):
        assert f"`{row}`" in text
