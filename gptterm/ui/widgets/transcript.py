"""The transcript: one block per turn, the user's words set apart from the model's.

Text is shown as plain `Content` (never parsed as markup), so brackets and wide
CJK characters render as typed. The scroll view is anchored to the bottom while
text streams in, and lets go when the user scrolls up.
"""

from __future__ import annotations

import time

from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

_STATUS_MARK = {"cancelled": "⏹ cancelled", "failed": "✗ failed", "partial": "… interrupted"}


# A streaming reply is shown as frozen blocks plus one short live segment, so each
# frame re-wraps only the live tail (re-wrapping a whole long reply 30 times a
# second is what gets slow), and the screen holds few widgets to lay out.
SEGMENT_CHARS = 800  # past this, freeze the live segment up to its last newline
HARD_SEGMENT_CHARS = 3000  # no newline for this long: freeze up to the last space
LAYOUT_S = 0.1  # while streaming, new lines appear at most this late
# Streamed text reaches the screen at most 20 times a second: fewer frames leave more
# room for keypresses (bench/ui_latency.py: p95 about 50 ms at 1000 tok/s vs 60-98 at 30).
FRAME_S = 1 / 20
BLOCK_CHARS = 12000  # a frozen block grows to about this before a new one starts


def _cut(tail: str) -> int:
    """Where to freeze the live text `tail` (0: not yet)."""
    if len(tail) < SEGMENT_CHARS:
        return 0
    cut = tail.rfind("\n") + 1
    if cut == 0 and len(tail) >= HARD_SEGMENT_CHARS:
        cut = tail.rfind(" ") + 1
    return cut


class TurnView(Vertical):
    """One turn of a session: role "user" or "model", in frozen blocks and a live segment."""

    DEFAULT_CSS = """
    TurnView { height: auto; }
    TurnView > .segment { width: 1fr; height: auto; }
    """

    def __init__(self, role: str, text: str = "", status: str = "complete",
                 note: str = "") -> None:
        self.role = role
        self.text = ""
        self.status = status
        self.note = note
        self._frozen = ""  # text shown in the frozen blocks
        self._block_text = ""  # text of the last frozen block
        self._block: Static | None = None
        self._live = Static(classes="segment")
        self._live_lines = 0  # wrapped height of the live segment, to skip needless layouts
        self._laid_out = 0.0  # when the screen was last laid out for this turn
        self._catch_up_pending = False
        super().__init__(self._live, classes=f"turn {role}")
        self.set_text(text)

    def _content(self, text: str) -> Content:
        if not text and not self._frozen:
            text = "…" if self.role == "model" else ""
        body = Content(text)
        mark = self.note or _STATUS_MARK.get(self.status, "")
        if mark:
            body = Content.assemble(body, ("  " + mark, "dim italic"))
        return body

    def _freeze(self, text: str) -> None:
        """Move `text` from the live segment into the last frozen block."""
        if self._block is None or len(self._block_text) + len(text) > BLOCK_CHARS:
            self._block, self._block_text = Static(classes="segment"), ""
            self.mount(self._block, before=self._live)
        self._block_text += text
        self._block.update(Content(self._block_text))
        self._frozen += text

    def set_text(self, text: str, status: str | None = None, note: str | None = None) -> None:
        """Show new text (the whole turn so far) and optionally a status mark."""
        if status is not None:
            self.status = status
        if note is not None:
            self.note = note
        if not text.startswith(self._frozen):
            # Replaced from the start (beam search): back to one live segment.
            for block in list(self.query(".segment"))[:-1]:
                block.remove()
            self._frozen, self._block, self._block_text = "", None, ""
        self.text = text
        tail = text[len(self._frozen):]
        if self.is_attached and (cut := _cut(tail)):
            self._freeze(tail[:cut])
            tail = tail[cut:]
        content = self._content(tail)
        width = self._live.content_region.width or self.content_region.width
        lines = len(content.wrap(width)) if width > 0 else -1
        # Repaint only, unless the live segment changed height: then lay the screen out
        # again, at most LAYOUT_S apart while streaming (a layout is the costly part).
        now = time.monotonic()
        relayout = lines != self._live_lines or lines < 0
        if relayout and status is None and now - self._laid_out < LAYOUT_S:
            relayout = False
            if not self._catch_up_pending and self.is_attached:
                self._catch_up_pending = True  # grow it soon, even if no more text comes
                self.set_timer(LAYOUT_S, self._catch_up)
        self._live.update(content, layout=relayout)
        if relayout:
            self._live_lines, self._laid_out = lines, now

    def _catch_up(self) -> None:
        self._catch_up_pending = False
        self.set_text(self.text, status=self.status)


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
