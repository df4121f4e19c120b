"""How often a reply's text goes out: at most once a frame.

Every event wakes the thread that reads it (the UI's, or the CLI's), and that wake-up
costs the decoding thread too: the two trade the GIL at every torch call for a while.
On shakespeare-mini, where a token takes about a millisecond, one event per token cost
0.11 ms of it (11%); a screen shows nothing faster than about 60 frames a second anyway.
So while tokens come faster than `FRAME`, a reply's TextDeltas wait and go out merged
(`protocol.merge_deltas`) with the next one due. The first goes out at once (time to
first token is unchanged), tokens slower than a frame each go out as they come, and any
other event (Candidates before a step-mode wait, Done, ...) sends what waits first.
A delta that replaces the reply (beam search: the hypotheses after each step) is a
snapshot of its own and goes out as it comes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gptterm.protocol import Event, TextDelta, merge_deltas

FRAME = 1 / 60  # seconds


class Paced:
    """An emit that sends TextDeltas at most once per `frame` (see the module doc)."""

    def __init__(self, emit: Callable[[Event], None], frame: float = FRAME,
                 clock: Callable[[], float] = time.perf_counter):
        self._emit = emit
        self._frame = frame
        self._clock = clock
        self._held: TextDelta | None = None
        self._sent_at = -float("inf")

    def __call__(self, event: Event) -> None:
        if isinstance(event, TextDelta) and not event.replace:
            self._held = event if self._held is None else merge_deltas(self._held, event)
            if self._clock() - self._sent_at >= self._frame:
                self.flush()
            return
        self.flush()
        self._emit(event)

    def flush(self) -> None:
        """Send the delta that waits, if one does."""
        if self._held is not None:
            held, self._held = self._held, None
            self._sent_at = self._clock()
            self._emit(held)
