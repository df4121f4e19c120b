"""The prompt box: a multi-line TextArea where Enter sends and Shift+Enter or Ctrl+J breaks the line."""

from __future__ import annotations

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

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         compact=True, **kwargs)

    async def _on_key(self, event: events.Key) -> None:
        # Runs before TextArea's own handler (which would insert a newline for Enter).
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.send()
        elif event.key in ("shift+enter", "ctrl+j", "newline"):
            event.stop()
            event.prevent_default()
            self.insert("\n")

    def send(self) -> None:
        text = self.text
        if text.strip():
            self.clear()
            self.post_message(self.Submitted(text))
