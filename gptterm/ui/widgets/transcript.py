"""The transcript: one block per turn, the user's words set apart from the model's.

Text is shown as plain `Content` (never parsed as markup), so brackets and wide
CJK characters render as typed, and made inert (`gptterm.textsafe`): a saved turn or
a model's output that holds escape sequences shows them, and the terminal never
runs them. The scroll view is anchored to the bottom while text streams in, and
lets go when the user scrolls up.

A saved session opens on its last `PAGE_TURNS` turns, read through `TurnPages`
(a page of rows, never the whole session), with a line above them that reads the
page before when clicked or given Enter: a session of any length opens at once.
"""

from __future__ import annotations

import time
from typing import Any

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from gptterm.store import paging
from gptterm.textsafe import inert

_STATUS_MARK = {"cancelled": "⏹ cancelled", "failed": "✗ failed", "partial": "… interrupted",
                "interrupted": "… interrupted"}


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
                 note: str = "", *, turn_id: int | None = None, seed: int | None = None,
                 alternative: tuple[int, int] = (1, 1)) -> None:
        self.role = role
        self.turn_id = turn_id  # the stored turn (None: not stored yet, or a draft)
        self.seed = seed  # a reply's seed, shown so a good one can be reproduced
        self.alternative = alternative  # (which, of how many): a reply written again
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
        body = Content(inert(text))
        marks = [self.note or _STATUS_MARK.get(self.status, "")]
        if self.alternative[1] > 1:
            marks.append("{}/{}".format(*self.alternative))
        if self.seed is not None and self.role == "model":
            marks.append(f"seed {self.seed}")
        mark = " · ".join(m for m in marks if m)
        if mark:
            body = Content.assemble(body, ("  " + mark, "dim italic"))
        return body

    def _freeze(self, text: str) -> None:
        """Move `text` from the live segment into the last frozen block."""
        if self._block is None or len(self._block_text) + len(text) > BLOCK_CHARS:
            self._block, self._block_text = Static(classes="segment"), ""
            self.mount(self._block, before=self._live)
        self._block_text += text
        self._block.update(Content(inert(self._block_text)))
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
        # Frozen blocks are mounted before the live segment: only once it is in the DOM
        # (a reply can end before its view has mounted its children).
        if self._live.is_attached and (cut := _cut(tail)):
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


PAGE_TURNS = 50  # turns shown when a session opens, and read per "earlier turns" request
Row = paging.TurnLine  # one turn to show


def _view(row: paging.TurnLine) -> TurnView:
    return TurnView(row.role, row.text, row.status, turn_id=row.id, seed=row.seed,
                    alternative=(row.alternative, row.alternatives))


class TurnPages:
    """A saved session read a page at a time, from its newest turn back."""

    def __init__(self, store: Any, session_id: str, skip_id: int | None = None) -> None:
        self.store = store
        self.session_id = session_id
        self.skip_id = skip_id  # a turn shown elsewhere (the reply streaming into it)
        self.first: int | None = None  # position of the oldest turn read so far
        self.remaining = 0  # turns older than that, not read yet

    def earlier(self, n: int = PAGE_TURNS) -> list[Row]:
        """The `n` turns before those read so far (the newest first time), oldest first."""
        lines = paging.turns_before(self.store, self.session_id, n, self.first)
        if lines:
            self.first = lines[0].index
            self.remaining = paging.count_before(self.store, self.session_id, self.first)
        else:
            self.remaining = 0
        return [t for t in lines if t.id != self.skip_id]


class EarlierTurns(Static):
    """The line above the oldest turn shown: a click or Enter on it shows a page more."""

    can_focus = True
    BINDINGS = [Binding("enter,space", "load", "Earlier turns")]
    DEFAULT_CSS = """
    EarlierTurns { width: 1fr; height: 1; color: $text-muted; text-style: italic; }
    EarlierTurns:hover, EarlierTurns:focus { color: $text; background: $boost; }
    """

    class Pressed(Message):
        """Show the page of turns before the first one shown."""

    def set_count(self, remaining: int) -> None:
        self.update(Content(f"▲ {remaining:,} earlier turns · click or Enter to show "
                            f"{min(remaining, PAGE_TURNS)} more"))

    def on_click(self) -> None:
        self.action_load()

    def action_load(self) -> None:
        self.post_message(self.Pressed())


class Transcript(VerticalScroll):
    """The turns of the open session, newest at the bottom."""

    can_focus = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pages: TurnPages | None = None

    def on_mount(self) -> None:
        self.anchor()

    def show_session(self, store: Any, session_id: str | None, skip_id: int | None = None) -> None:
        """Show the last page of a saved session (None, or no store: an empty transcript).

        `skip_id` is a turn not to show (a reply streaming into the session, shown apart).
        """
        pages = (TurnPages(store, session_id, skip_id)
                 if store is not None and session_id is not None else None)
        self.remove_children()
        self.pages = pages
        rows = pages.earlier() if pages is not None else []
        widgets: list[Static | TurnView] = [EarlierTurns()] if pages and pages.remaining else []
        widgets += [_view(row) for row in rows]
        if widgets:
            self.mount_all(widgets)
        self._count_earlier()
        self.anchor()

    def _count_earlier(self) -> None:
        """Say how many turns are not shown yet; drop the line once all are."""
        for line in self.query(EarlierTurns):
            if self.pages is not None and self.pages.remaining:
                line.set_count(self.pages.remaining)
            else:
                line.remove()

    def on_earlier_turns_pressed(self, event: EarlierTurns.Pressed) -> None:
        event.stop()
        self.show_earlier()

    def show_earlier(self) -> None:
        """Show the page of turns before the oldest one shown, keeping that one in view."""
        if self.pages is None or not self.pages.remaining:
            return
        views = self.views
        new = [_view(row) for row in self.pages.earlier()]
        if new and views:
            self.mount_all(new, before=views[0])
        elif new:
            self.mount_all(new)
        self._count_earlier()
        if views:
            self.release_anchor()
            self.call_after_refresh(self.scroll_to_widget, views[0], top=True, animate=False)

    def add_turn(self, role: str, text: str = "", status: str = "complete", *,
                 seed: int | None = None) -> TurnView:
        view = TurnView(role, text, status, seed=seed)
        self.mount(view)
        return view

    def reveal(self, turn_id: int) -> bool:
        """Scroll to the stored turn `turn_id`, reading earlier pages until it is shown, and
        mark it; False when the session does not hold it."""
        while (view := self._view_of(turn_id)) is None:
            if self.pages is None or not self.pages.remaining:
                return False
            self.show_earlier()
        self.release_anchor()
        for other in self.query(".-found"):
            other.remove_class("-found")
        view.add_class("-found")
        self.call_after_refresh(self.scroll_to_widget, view, top=True, animate=False)
        return True

    def _view_of(self, turn_id: int) -> TurnView | None:
        return next((v for v in self.views if v.turn_id == turn_id), None)

    @property
    def views(self) -> list[TurnView]:
        return list(self.query(TurnView))
