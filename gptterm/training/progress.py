"""A plain-text progress bar on stderr: step, loss, tokens/s and ETA (no tqdm).

On a terminal the bar redraws in place a few times a second; into a file or pipe it
prints one line every `log_every` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Tracks steps and tokens of this run and draws the bar."""

    def __init__(self, total_steps: int, first_step: int = 0, stream=None,
                 log_every: float = 30.0, width: int = 24):
        self.total = max(1, total_steps)
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.width = width
        self.start_step = first_step
        self.tokens = 0
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.loss: float | None = None
        self._dirty = False

    def update(self, step: int, loss: float, tokens: int, epoch: int, epochs: int) -> None:
        """Record one finished step (`step` counts from 1) and redraw when due."""
        self.tokens += tokens
        self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss
        now = time.monotonic()
        due = 0.25 if self.tty else self.log_every
        if now - self.last_draw >= due or step >= self.total:
            self.last_draw = now
            self._draw(step, epoch, epochs, now)

    def line(self, step: int, epoch: int, epochs: int, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-6)
        done_here = step - self.start_step
        rate = self.tokens / elapsed
        eta = (self.total - step) * elapsed / done_here if done_here else 0.0
        filled = int(self.width * step / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        loss = f"{self.loss:.3f}" if self.loss is not None else "-"
        return (f"epoch {epoch}/{epochs} [{bar}] {100 * step / self.total:3.0f}% "
                f"step {step}/{self.total} loss {loss} {rate:,.0f} tok/s "
                f"ETA {format_seconds(eta)}")

    def _draw(self, step: int, epoch: int, epochs: int, now: float) -> None:
        text = self.line(step, epoch, epochs, now)
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._dirty = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """End the in-place line before other output is printed."""
        if self._dirty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._dirty = False
