"""Pick one turn of a session (to copy it): a `PickerScreen` of "role · first line (N chars)"."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import OptionList

from gptterm.textsafe import inert
from gptterm.ui.screens.dialogs import PickerScreen

LINE_CHARS = 50


def turn_label(role: str, text: str) -> tuple[str, str]:
    """(label, description) for a turn: its role and first non-blank line, and its length."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = inert(line, single_line=True)
    if len(line) > LINE_CHARS:
        line = line[:LINE_CHARS - 1] + "…"
    return f"{inert(role, single_line=True)} · {line or '(empty)'}", f"({len(text)} chars)"


class TurnPickerScreen(PickerScreen):
    """Rows of (turn id, role, text); Enter dismisses with the turn id (an int), Esc with None.

    The last turn is highlighted: the one most often wanted.
    """

    def __init__(self, turns: Sequence[tuple[int, str, str]], title: str) -> None:
        self.turn_ids = [turn_id for turn_id, _, _ in turns]
        items = [(str(turn_id), *turn_label(role, text)) for turn_id, role, text in turns]
        super().__init__(inert(title, single_line=True), items)

    # Textual runs each class's handler in turn (PickerScreen's after these): this one
    # adds to PickerScreen.on_mount, and the next one replaces its handler.
    def on_mount(self) -> None:
        if self.turn_ids:
            self.query_one(OptionList).highlighted = len(self.turn_ids) - 1

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        event.prevent_default()  # PickerScreen's handler would dismiss with the str id
        self.dismiss(self.turn_ids[event.option_index])
