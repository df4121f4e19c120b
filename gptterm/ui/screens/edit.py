"""Edit a text in a dialog: a turn's text, or a session's pinned memory."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea

from gptterm.ui.screens.dialogs import after_typing


class EditTextScreen(ModalScreen[str | None]):
    """A multi-line editor: Ctrl+S keeps the text (returns it), Esc drops the change (None)."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Keep", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, text: str, hint: str = "") -> None:
        super().__init__(classes="dialog edit")
        self.title_text = title
        self.text = text
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content.styled(self.title_text, "bold"), classes="question")
            yield TextArea(self.text, soft_wrap=True, show_line_numbers=False, id="text")
            hint = f"{self.hint} · " if self.hint else ""
            yield Label(Content.styled(f"{hint}Ctrl+S keeps · Esc cancels", "dim"))

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def action_save(self) -> None:
        after_typing(self, lambda: self.dismiss(self.query_one(TextArea).text))

    def action_cancel(self) -> None:
        self.dismiss(None)
