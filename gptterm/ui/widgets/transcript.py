"""The transcript: one block per turn, the user's words set apart from the model's.

Text is shown as plain `Content` (never parsed as markup), so brackets and wide
CJK characters render as typed. The scroll view is anchored to the bottom while
text streams in, and lets go when the user scrolls up.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

_STATUS_MARK = {"cancelled": "⏹ cancelled", "failed": "✗ failed", "partial": "… interrupted"}


class TurnView(Static):
    """One turn of a session: role "user" or "model"."""

    def __init__(self, role: str, text: str = "", status: str = "complete",
                 note: str = "") -> None:
        super().__init__(classes=f"turn {role}")
        self.role = role
        self.text = text
        self.status = status
        self.note = note
        self.update(self._content())

    def _content(self) -> Content:
        body = Content(self.text) if self.text else Content("…" if self.role == "model" else "")
        mark = self.note or _STATUS_MARK.get(self.status, "")
        if mark:
            body = Content.assemble(body, ("  " + mark, "dim italic"))
        return body

    def set_text(self, text: str, status: str | None = None, note: str | None = None) -> None:
        """Show new text (the whole turn so far) and optionally a status mark."""
        self.text = text
        if status is not None:
            self.status = status
        if note is not None:
            self.note = note
        self.update(self._content())


class Transcript(VerticalScroll):
    """The turns of the open session, newest at the bottom."""

    can_focus = True

    def on_mount(self) -> None:
        self.anchor()

    def show(self, turns: list[tuple[str, str, str]]) -> None:
        """Replace everything with `turns` of (role, text, status)."""
        self.remove_children()
        if turns:
            self.mount_all([TurnView(role, text, status) for role, text, status in turns])
        self.anchor()

    def add_turn(self, role: str, text: str = "", status: str = "complete") -> TurnView:
        view = TurnView(role, text, status)
        self.mount(view)
        return view

    @property
    def views(self) -> list[TurnView]:
        return list(self.query(TurnView))
