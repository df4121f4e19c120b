"""Messages the UI posts to itself from other threads: engine events, store problems."""

from __future__ import annotations

from textual.message import Message

from gptterm.protocol import Event


class EngineEvent(Message):
    """One protocol Event from the engine thread (posted with the thread-safe post_message)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def __repr__(self) -> str:
        return f"EngineEvent({self.event!r})"


class StoreProblem(Message):
    """Saving a streamed reply failed (one line)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
