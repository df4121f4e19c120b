"""The sessions sidebar: titles with how long ago each was used, newest first.

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

TITLE_CELLS = 24  # one line in the sidebar; wide (CJK) characters count as two


def age(seconds: float) -> str:
    """A short "how long ago": now, 5m, 3h, 2d, 6w."""
    seconds = max(0.0, seconds)
    for limit, unit, size in ((60, "", 1), (3600, "m", 60), (86400, "h", 3600),
                              (86400 * 14, "d", 86400)):
        if seconds < limit:
            return "now" if not unit else f"{int(seconds // size)}{unit}"
    return f"{int(seconds // (86400 * 7))}w"


class SessionList(OptionList):
    """One option per session; the option id is the session id."""

    BINDINGS = [
        Binding("r", "app.rename_session", "Rename", id="rename_session"),
        Binding("delete,d", "app.delete_session", "Delete", id="delete_session"),
    ]

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def set_sessions(self, sessions: Sequence, current: str | None) -> None:
        """Show `sessions` (store Session objects) and highlight `current`."""
        now = self.clock()
        options = []
        for s in sessions:
            title = inert(s.title or s.name or "untitled", single_line=True)
            label = Content.styled(title, "bold" if s.id == current else "")
            options.append(Option(
                Content.assemble(label.truncate(TITLE_CELLS, ellipsis=True), "\n",
                                 (age(now - s.updated), "dim")),
                id=s.id,
            ))
        self.set_options(options)
        if current is not None:
            try:
                self.highlighted = self.get_option_index(current)
            except Exception:  # noqa: BLE001 - the current one may be an unsaved draft
                self.highlighted = None
