"""The step panel: in step mode, the next token's candidates, picked by number key.

The engine sends `Candidates` before each token of a stepped reply and waits: the panel
shows the final distribution's top tokens (the ones the sampler draws from) with their
probabilities, numbered 1-9, the sampler's own draw marked. A number key picks that token,
Enter takes the draw; either answers the engine (the screen sends the `Pick`). Esc is the
screen's cancel: the reply so far is kept. Token texts come from the model: shown quoted
(spaces and newlines visible) and inert.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.widget import Widget

from gptterm.protocol import Candidates
from gptterm.textsafe import inert
from gptterm.ui.widgets.inspector import shown

KEYS = 9  # candidates that a number key picks
BAR = 12  # cells of the widest probability bar


def token_label(text: str) -> str:
    """A candidate's text as the panel shows it: quoted, controls made visible."""
    return inert(shown(text), single_line=True)


def bar(p: float, width: int = BAR) -> str:
    """A probability as a bar of block characters (eighths of a cell)."""
    eighths = round(max(0.0, min(1.0, p)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")


def render_candidates(c: Candidates) -> Content:
    """One line per candidate: its key, text, probability and bar; the draw marked."""
    lines = []
    for i, (token, text, p) in enumerate(c.top):
        key = str(i + 1) if i < KEYS else " "
        drawn = token == c.drawn
        style = "bold $accent" if drawn else ""
        line = Content.assemble((f"{key} ", "bold"), (f"{token_label(text):<14}", style),
                                (f" {p:6.2%} ", "dim"), (bar(p), "$primary"))
        if drawn:
            line = line + Content.styled("  ◀ drawn" if i < KEYS else
                                         "  ◀ drawn (outside the top 9)", "bold $accent")
        lines.append(line)
    return Content("\n").join(lines)


class StepPanel(Widget, can_focus=True):
    """The candidates of the token a stepped reply waits on (hidden between steps)."""

    DEFAULT_CSS = """
    StepPanel {
        display: none;
        height: auto;
        max-height: 12;
        padding: 0 1;
        background: $surface;
        border-top: solid $accent 60%;
        border-title-color: $text-muted;
    }
    StepPanel:focus { border-top: solid $accent; }
    """

    BINDINGS = [
        Binding("1", "pick(1)", "Pick", key_display="1-9"),
        *(Binding(str(n), f"pick({n})", show=False) for n in range(2, KEYS + 1)),
        Binding("enter", "take_draw", "Sampler's"),
    ]

    @dataclass
    class Picked(Message):
        """The user answered `candidates`: `token_id` (None: the sampler's draw)."""

        candidates: Candidates
        token_id: int | None

        @property
        def differs(self) -> bool:
            """Whether the pick replaces the draw (it then starts a new version)."""
            return self.token_id is not None and self.token_id != self.candidates.drawn

        @property
        def drawn_text(self) -> str:
            return next((t for i, t, _ in self.candidates.top if i == self.candidates.drawn),
                        "")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.candidates: Candidates | None = None

    def show(self, candidates: Candidates) -> None:
        """Offer `candidates` (the reply waits until one is picked) and take the focus."""
        self.candidates = candidates
        self.border_title = (f"Step · token {candidates.position + 1} · 1-9 picks · "
                             "Enter takes the sampler's · Esc stops")
        self.display = True
        self.refresh(layout=True)
        self.focus()

    def clear(self) -> None:
        """The step is over (answered, or the reply ended): hide until the next one."""
        self.candidates = None
        self.display = False

    def _answer(self, token_id: int | None) -> None:
        candidates = self.candidates
        if candidates is None:
            return
        self.candidates = None  # one answer per step: a second key press waits for the next
        self.post_message(self.Picked(candidates, token_id))

    def action_pick(self, n: int) -> None:
        if self.candidates is not None and n <= min(KEYS, len(self.candidates.top)):
            self._answer(self.candidates.top[n - 1][0])

    def action_take_draw(self) -> None:
        self._answer(None)

    def render(self) -> Content:
        if self.candidates is None:
            return Content.styled("waiting for the next token…", "dim italic")
        return render_candidates(self.candidates)
