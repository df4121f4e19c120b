"""The prompt box: a multi-line TextArea where Enter sends and Shift+Enter or Ctrl+J breaks the line.

Up in an empty prompt recalls the previous prompt (from `history`, oldest first), as in
a shell; while an entry is shown unchanged, Up on its first row goes further back and
Down on its last row goes forward, past the newest back to the empty prompt. Typing
anything ends browsing: the edited text is a new draft. The cursor lands as in IPython:
at the end of the text going back, at the end of the first line going forward, so
repeated presses walk the list.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class PromptArea(TextArea):
    """Multi-line prompt; posts `Submitted` on Enter and clears itself."""

    class Submitted(Message):
        """The user sent `text`."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, history: Callable[[], list[str]] | None = None, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         compact=True, **kwargs)
        self.history_source = history
        self._entries: list[str] = []  # the history as it was when browsing began
        self._index = 0  # the entry shown; len(_entries) is the empty draft
        self._shown: str | None = None  # the text browsing put in the box (None: not browsing)

    async def _on_key(self, event: events.Key) -> None:
        # Runs before TextArea's own handler (which would insert a newline for Enter)
        # and, when stopped, before the app's bindings (TextArea binds Up and Down).
        if event.key == "enter":
            self._consume(event)
            self.send()
        elif event.key in ("shift+enter", "ctrl+j", "newline"):
            self._consume(event)
            self.insert("\n")
        elif (event.key == "up" and self._recall(-1)) or (
                event.key == "down" and self._recall(+1)):
            self._consume(event)
        elif event.key.startswith("alt+") and event.character:
            # A terminal sends Alt+C as the character "c" with the alt flag: the app's
            # Alt bindings get it, the text does not.
            event.prevent_default()

    @staticmethod
    def _consume(event: events.Key) -> None:
        event.stop()
        event.prevent_default()

    @property
    def browsing(self) -> bool:
        """Whether the box shows a history entry the user has not edited."""
        return self._shown is not None and self.text == self._shown

    def _recall(self, step: int) -> bool:
        """Show the entry `step` away (-1 older, +1 newer); False: the key moves the cursor."""
        at = self.cursor_location
        if self.browsing:
            edge = (self.navigator.is_first_wrapped_line(at) if step < 0
                    else self.navigator.is_last_wrapped_line(at))
            if not edge:
                return False
        elif step < 0 and not self.text and self.history_source is not None:
            self._entries = [e for e in self.history_source() if e.strip()]
            self._index = len(self._entries)
        else:
            return False
        index = self._index + step
        if index < 0:
            return True  # already at the oldest: stay there
        self._index = index
        if index >= len(self._entries):  # past the newest: back to the empty draft
            self._shown = None
            self.load_text("")
            return True
        self._shown = self._entries[index]
        self.load_text(self._shown)
        if step < 0:
            self.move_cursor(self.document.end)
        else:
            self.move_cursor((0, len(self.document.get_line(0))))
        return True

    def send(self) -> None:
        text = self.text
        if text.strip():
            self._shown = None
            self.clear()
            self.post_message(self.Submitted(text))
