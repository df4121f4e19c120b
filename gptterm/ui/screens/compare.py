"""Compare presets: one continuation of the same prompt per preset, side by side.

The screen runs the presets one after another through the app's engine, each
under a throwaway engine session `compare:<session>:<preset>` (dropped when the
screen closes), all with one seed and one token budget so the comparison is fair
and can be repeated. Nothing is stored in the session. Esc cancels the running
reply and closes. The app hands this screen the engine events of its requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from gptterm.presets import Preset
from gptterm.protocol import (
    Command,
    Cancel, Done, DropSession, Event, Failed, Generate, Reply, Segment, TextDelta, context_text,
    new_request_id,
)
from gptterm.ui.widgets.transcript import FRAME_S

PROMPT_TAIL = 160  # characters of the prompt shown above the columns


@dataclass
class Run:
    """One preset's continuation: its request, text so far and state."""

    preset: Preset
    session_id: str
    reply: Reply | None = None
    state: str = "waiting"  # waiting | writing | done | cancelled | failed
    stats: str = "waiting"
    dirty: bool = False

    @property
    def request_id(self) -> str:
        return self.reply.request_id if self.reply else ""

    @property
    def text(self) -> str:
        return self.reply.text if self.reply else ""

    def speed(self) -> str:
        rate = self.reply.tokens_per_second if self.reply else None
        return f" · {rate:.1f} tok/s" if rate is not None else ""


def _tokens(n: int) -> str:
    return f"{n} tok"

@dataclass(frozen=True)
class Kept:
    """A finished column the user keeps in the session (as an alternative of the reply)."""

    preset: Preset
    reply: Reply
    seed: int


class CompareScreen(ModalScreen[Kept | None]):
    """Columns of continuations, one per preset, streamed in turn."""

    BINDINGS = [Binding("escape", "close", "Close"),
                *(Binding(str(n), f"keep({n})", f"Keep {n}", show=False) for n in (1, 2, 3))]

    def __init__(self, context: Sequence[Segment], presets: Sequence[Preset], *, seed: int,
                 max_new_tokens: int, session: str | None,
                 send: Callable[[Command], None], clock: Callable[[], float]) -> None:
        super().__init__(classes="compare")
        self.context = tuple(context)
        self.prompt = context_text(self.context)
        self.seed = seed
        self.max_new_tokens = max_new_tokens
        self.runs = [Run(p, f"compare:{session or 'new'}:{p.name}") for p in presets]
        self.current: Run | None = None
        self.closed = False
        self.send = send  # to the engine
        self.clock = clock  # arrival times for the live rate

    def compose(self) -> ComposeResult:
        names = " · ".join(run.preset.name for run in self.runs)
        with Vertical(id="compare-box"):
            yield Label(Content.assemble(("Compare presets ", "bold"), (names, "bold $accent")),
                        id="compare-title")
            yield Label(Content.styled(
                f"seed {self.seed} · up to {self.max_new_tokens} tokens each · "
                "1-3 keeps that column in the session · Esc stops and closes", "dim"),
                id="compare-subtitle")
            tail = self.prompt[-PROMPT_TAIL:].replace("\n", " ⏎ ")
            ellipsis = "…" if len(self.prompt) > PROMPT_TAIL else ""
            yield Static(Content.assemble(("after: ", "dim"), (ellipsis + tail, "italic")),
                         id="compare-prompt")
            with Horizontal(id="compare-columns"):
                for i, run in enumerate(self.runs):
                    with Vertical(classes="compare-column", id=f"column-{i}"):
                        yield Label(Content.assemble(
                            (run.preset.name, "bold"), "  ",
                            (run.preset.description or run.preset.summary(), "dim")),
                            classes="compare-preset")
                        with VerticalScroll(classes="compare-scroll"):
                            yield Static(classes="compare-text")
                        yield Static(Content.styled(run.stats, "dim"), classes="compare-stats")

    def on_mount(self) -> None:
        self.set_interval(FRAME_S, self._flush)
        self._next()

    # ------------------------------------------------------------ running

    def _column(self, run: Run) -> Vertical:
        return self.query_one(f"#column-{self.runs.index(run)}", Vertical)

    def _next(self) -> None:
        """Start the first preset still waiting (the engine runs one at a time)."""
        self.current = next((r for r in self.runs if r.state == "waiting"), None)
        if self.current is None or self.closed:
            return
        run = self.current
        run.reply = Reply(new_request_id())
        run.state, run.stats = "writing", "writing…"
        self._show(run)
        self.send(Generate(run.request_id, run.session_id, preset=run.preset,
                           max_new_tokens=self.max_new_tokens, seed=self.seed,
                           context=self.context))

    def owns(self, event: Event) -> bool:
        """Whether `event` answers one of this screen's requests."""
        request_id = getattr(event, "request_id", None)
        return bool(request_id) and any(r.request_id == request_id for r in self.runs)

    def engine_event(self, event: Event) -> None:
        """An engine event for one of this screen's requests (the app routes them here)."""
        run = next(r for r in self.runs if r.request_id == getattr(event, "request_id", None))
        run.reply.apply(event, self.clock())
        if isinstance(event, TextDelta):
            run.dirty = True
            return
        if isinstance(event, Done):
            run.state = "cancelled" if event.reason == "cancelled" else "done"
            run.stats = f"{_tokens(event.n_tokens)}{run.speed()} · {event.reason}"
        elif isinstance(event, Failed):
            run.state, run.stats = "failed", f"✗ {event.error}"
        else:  # Started
            return
        self._show(run)
        if run is self.current:
            self._next()

    def _flush(self) -> None:
        """Timer: show the text that arrived since the last frame, with a live token count."""
        for run in self.runs:
            if run.dirty:
                run.dirty = False
                if run.state == "writing":
                    run.stats = self._live_stats(run)
                self._show(run)

    def _live_stats(self, run: Run) -> str:
        return f"writing… {_tokens(run.reply.n_tokens)}{run.speed()}"

    def _show(self, run: Run) -> None:
        run.dirty = False
        column = self._column(run)
        column.query_one(".compare-text", Static).update(Content(run.text or (
            "…" if run.state == "writing" else "")))
        style = "$error" if run.state == "failed" else "dim"
        column.query_one(".compare-stats", Static).update(Content.styled(run.stats, style))
        column.set_class(run is self.current and run.state == "writing", "-writing")
        if run.state == "writing":  # follow the text as it grows past the column
            column.query_one(".compare-scroll", VerticalScroll).scroll_end(animate=False)

    # ------------------------------------------------------------ closing

    def action_keep(self, n: int) -> None:
        """Close, keeping column `n` (a finished one) as a version of the session's reply."""
        if not 1 <= n <= len(self.runs):
            return
        run = self.runs[n - 1]
        if run.state != "done" or run.reply is None:
            self.notify(f"Column {n} has not finished", severity="warning")
            return
        self.action_close(Kept(run.preset, run.reply, self.seed))

    def action_close(self, kept: Kept | None = None) -> None:
        """Stop the running reply, forget the throwaway engine sessions, close."""
        if self.closed:
            return
        self.closed = True
        send = self.send
        if self.current is not None and self.current.state == "writing":
            send(Cancel(self.current.request_id))
        for run in self.runs:
            if run.reply is not None:
                send(DropSession(run.session_id))
        self.dismiss(kept)
