"""The live beam view: while a beam search reply is written, every hypothesis with its score.

The engine sends, with each step of a beam search, every hypothesis (`TextDelta.beams`,
best first): the running ones and those that finished, each with its length-penalised
score (summed log-probability over length ** length_penalty, as transformers scores
them). One row each: the best highlighted with ▶, finished ones marked ✓, then the score
and the hypothesis' text as one inert line; a text too long for the row shows its end,
where beams differ. After the reply the view keeps its last beams, the finished ones the
search chose among, until the next reply. Rows are painted on the app's frame timer.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.content import Content
from textual.widget import Widget

from gptterm.protocol import BeamView
from gptterm.textsafe import inert

BEST, FINISHED = "▶", "✓"


def tail(text: str, width: int) -> str:
    """The end of `text` that fits `width` cells, led by "…" when cut."""
    if cell_len(text) <= width:
        return text
    kept, used = [], 1  # the ellipsis takes a cell
    for char in reversed(text):
        used += cell_len(char)
        if used > width:
            break
        kept.append(char)
    return "…" + "".join(reversed(kept))


def render_beam(beam: BeamView, best: bool, width: int = 0) -> Content:
    """`▶ ✓  -1.234  ' the end'`: marks, score, then the text (its end when `width` is
    too narrow for all of it)."""
    head = Content.assemble(
        (BEST if best else " ", "bold $accent"), " ",
        (FINISHED if beam.finished else " ", "bold $success"), " ",
        (f"{beam.score:8.3f}", "bold $accent" if best else "dim"), "  ")
    text = inert(beam.text, single_line=True)
    if width > 0:
        text = tail(text, max(1, width - head.cell_length))
    return head + Content.styled(text, "bold $accent" if best else "")


class BeamPanel(Widget):
    """Every hypothesis of the beam search being written (or last written), best first."""

    DEFAULT_CSS = """
    BeamPanel {
        display: none;
        height: auto;
        max-height: 50%;
        padding: 0 1;
        background: $surface;
        border-top: solid $primary 50%;
        border-title-color: $text-muted;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.beams: tuple[BeamView, ...] = ()
        self.active = False  # holds a beam reply (live or the last one)
        self.length_penalty = 1.0
        self._dirty = False

    def begin(self, length_penalty: float) -> None:
        """A beam search reply starts: forget the last one's beams."""
        self.beams, self.active, self.length_penalty = (), True, length_penalty
        self.border_title = self.title(done=False)
        self.refresh(layout=True)

    def clear(self) -> None:
        """A reply that is not a beam search starts: nothing to show."""
        self.beams, self.active = (), False
        self.refresh(layout=True)

    def title(self, done: bool) -> str:
        when = "at the end" if done else "live"
        return (f"Beams · {when} · score = log p / length^{self.length_penalty:g} · "
                f"{BEST} best · {FINISHED} finished")

    def add(self, beams: Sequence[BeamView]) -> None:
        """A step's hypotheses (a delta without any changes nothing); shown at `flush`."""
        if beams:
            self.beams = tuple(beams)
            self._dirty = True

    def end(self) -> None:
        """The reply ended: its last beams stay."""
        self.border_title = self.title(done=True)
        self.flush()

    def flush(self) -> None:
        """Repaint if beams arrived since the last frame."""
        if self._dirty:
            self._dirty = False
            self.refresh(layout=True)  # the number of rows may change

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self.beams))

    def render(self) -> Content:
        if not self.beams:
            return Content.styled("The beams show here as the search runs.", "dim")
        width = self.size.width
        lines = [render_beam(beam, i == 0, width) for i, beam in enumerate(self.beams)]
        return Content("\n").join(lines)
