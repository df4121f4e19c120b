"""Messages the UI posts to itself: engine events arriving from the worker thread."""

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
