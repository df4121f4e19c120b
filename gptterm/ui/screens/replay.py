"""Replay a saved session: model turns stream back with their recorded timing.

`+` / `-` change the speed (¼x to 16x); any other key stops the replay. The title
is shown inert and the turns go through the transcript, which shows them inert too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from textual import events, work
from textual.app import ComposeResult
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from gptterm.protocol import Reply
from gptterm.replay import turn_events
from gptterm.textsafe import inert
from gptterm.ui.widgets.transcript import Transcript

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
FASTER = ("plus", "equals_sign", "+", "=", "right")
SLOWER = ("minus", "underscore", "-", "left")
USER_PAUSE_S = 0.3  # a short beat before each user turn appears


class ReplayScreen(Screen[None]):
    """Plays `turns` (store Turn objects) into a transcript."""

    def __init__(self, title: str, turns: Sequence, speed: float = 1.0) -> None:
        super().__init__(classes="replay")
        self.session_title = title
        self.turns = list(turns)
        self.speed = speed if speed in SPEEDS else 1.0
        self.finished = False

    def compose(self) -> ComposeResult:
        yield Static(id="replay-bar")
        yield Transcript(id="replay-transcript")

    def on_mount(self) -> None:
        self._show_bar()
        self.play()

    def _show_bar(self) -> None:
        state = "finished" if self.finished else f"{self.speed:g}x"
        title = inert(self.session_title, single_line=True)
        self.query_one("#replay-bar", Static).update(Content.assemble(
            ("▶ replay ", "bold $accent"), (title, "bold"), f"  {state}  ",
            ("+/- speed · any other key stops", "dim")))

    async def _sleep(self, seconds: float) -> None:
        # Sleep in small slices so a speed change applies to the wait in progress.
        remaining = seconds
        while remaining > 0:
            step = min(remaining, 0.05)
            await asyncio.sleep(step / self.speed)
            remaining -= step

    @work(exclusive=True, group="replay")
    async def play(self) -> None:
        transcript = self.query_one(Transcript)
        for turn in self.turns:
            if turn.role != "model":
                await self._sleep(USER_PAUSE_S)
                transcript.add_turn(turn.role, turn.text)
                continue
            view = transcript.add_turn("model", "")
            reply, last = Reply("replay"), 0.0
            for at, delta in turn_events(turn, "replay"):
                await self._sleep(max(0.0, at - last))
                last = at
                reply.apply(delta)
                view.set_text(reply.text)
            view.set_text(reply.text, status=turn.status)
        self.finished = True
        self._show_bar()

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        if event.key in FASTER or event.character == "+":
            self.speed = SPEEDS[min(SPEEDS.index(self.speed) + 1, len(SPEEDS) - 1)]
        elif event.key in SLOWER or event.character == "-":
            self.speed = SPEEDS[max(SPEEDS.index(self.speed) - 1, 0)]
        else:
            self.workers.cancel_group(self, "replay")
            self.dismiss(None)
            return
        self._show_bar()
