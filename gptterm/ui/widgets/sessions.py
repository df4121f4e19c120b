"""The sessions sidebar: titles, each session's model and how long ago it was used.

The order is the one the user sees and keeps: sessions are listed newest first when
the app starts, a new session goes on top, and using a session does not move it
while the app runs (Alt+Up/Down walk this order; a list that re-sorted after every
prompt made them jump).

Titles and names may come from an imported file: they are shown inert, on one line
(`gptterm.textsafe`), so none can send an escape sequence to the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from textual.binding import Binding
from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from gptterm.textsafe import inert
from gptterm.ui.labels import short_model

TITLE_CELLS = 24  # one line in the sidebar; wide (CJK) characters count as two


def age(seconds: float) -> str:
    """A short "how long ago": now, 5m, 3h, 2d, 6w."""
    seconds = max(0.0, seconds)
    for limit, unit, size in ((60, "", 1), (3600, "m", 60), (86400, "h", 3600),
                              (86400 * 14, "d", 86400)):
        if seconds < limit:
            return "now" if not unit else f"{int(seconds // size)}{unit}"
    return f"{int(seconds // (86400 * 7))}w"


def keep_order(shown: Sequence[str], sessions: Sequence[str]) -> list[str]:
    """`sessions` (newest first) in the order already `shown`: sessions not shown yet go
    on top, in their own order; gone ones drop out."""
    present = set(sessions)
    known = set(shown)
    return [s for s in sessions if s not in known] + [s for s in shown if s in present]


class SessionList(OptionList):
    """One option per session; the option id is the session id."""

    BINDINGS = [
        Binding("r", "screen.rename_session", "Rename", id="rename_session"),
        Binding("delete,d", "screen.delete_session", "Delete", id="delete_session"),
    ]

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.order: list[str] = []  # session ids as shown, top first

    def set_sessions(self, sessions: Sequence, current: str | None) -> None:
        """Show `sessions` (store Session objects, newest first) and highlight `current`."""
        now = self.clock()
        by_id = {s.id: s for s in sessions}
        self.order = keep_order(self.order, [s.id for s in sessions])
        options = []
        for s in (by_id[i] for i in self.order):
            title = inert(s.title or s.name or "untitled", single_line=True)
            label = Content.styled(title, "bold" if s.id == current else "")
            model = short_model(getattr(s, "model", None))
            detail = f"{age(now - s.updated)} · {model}" if model else age(now - s.updated)
            options.append(Option(
                Content.assemble(label.truncate(TITLE_CELLS, ellipsis=True), "\n",
                                 Content.styled(detail, "dim").truncate(TITLE_CELLS, ellipsis=True)),
                id=s.id,
            ))
        self.set_options(options)
        if current is not None and current in by_id:
            self.highlighted = self.order.index(current)
        else:
            self.highlighted = None

    def step(self, current: str | None, step: int) -> str | None:
        """The session `step` places below (negative: above) `current` in the order shown."""
        if not self.order:
            return None
        if current in self.order:
            return self.order[(self.order.index(current) + step) % len(self.order)]
        return self.order[0 if step > 0 else -1]
