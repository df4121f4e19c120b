"""The token inspector: for the latest tokens of a reply, the chosen token and its top candidates.

The engine fills `TextDelta.alternatives` (per token, (text, probability) pairs,
most likely first) when a Generate asks for `inspect_top_k`. Greedy and sampled
replies have them; beam and contrastive search do not, and the panel says so. The
title says which distribution they are (`TextDelta.distribution`): the sampler's final
one, or the model's raw one (what some servers report).
Rows are painted on the app's frame timer, not on every token.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from textual.content import Content
from textual.widget import Widget

ROWS = 12  # the most recent tokens shown
DISTRIBUTIONS = {"final": "sampler's final distribution", "raw": "model's raw distribution"}
NO_ALTERNATIVES = {"beam", "contrastive"}
Alternatives = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class InspectedToken:
    """One generated token: its text (None when unknown) and its top candidates."""

    chosen: str | None
    alternatives: Alternatives


def split_tokens(text: str, n: int, alternatives: Sequence[Alternatives]) -> list[str | None]:
    """The text of each of the `n` tokens that made `text`.

    A delta usually carries one token. When it carries several (a held-back stop
    string, a character split over tokens), each token but the last is the
    longest candidate that `text` continues with; the last takes the rest.
    None means the token's own text is not known (e.g. half a character).
    """
    if n <= 1:
        return [text] * n
    out: list[str | None] = []
    rest = text
    for i in range(n - 1):
        alts = alternatives[i] if i < len(alternatives) else ()
        match = max((t for t, _ in alts if t and rest.startswith(t)), key=len, default=None)
        out.append(match)
        if match:
            rest = rest[len(match):]
    out.append(rest)
    return out


def shown(token: str) -> str:
    """A token with its spaces and newlines visible: ' thee', '\\n'."""
    return repr(token)


def render_row(row: InspectedToken) -> Content:
    """`' thee' 0.41 │ ' the' 0.22 │ …` with the chosen token highlighted.

    A sampled token outside the top candidates is put first, with "≤" the
    smallest probability shown (all that is known about it).
    """
    parts: list[Content] = []
    index = next((i for i, (t, _) in enumerate(row.alternatives) if t == row.chosen), None)
    if row.chosen is not None and index is None:
        least = row.alternatives[-1][1] if row.alternatives else 0.0
        parts.append(Content.assemble((shown(row.chosen), "bold $warning"),
                                      (f" ≤{least:.2f}", "dim")))
    for i, (text, prob) in enumerate(row.alternatives):
        style = "bold $accent" if i == index else ""
        parts.append(Content.assemble((shown(text), style), (f" {prob:.2f}", "dim")))
    return Content.styled(" │ ", "dim").join(parts)


class TokenInspector(Widget):
    """The last `ROWS` tokens of the reply being written, one row each."""

    def __init__(self, top_k: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = top_k
        self.rows: deque[InspectedToken] = deque(maxlen=ROWS)
        self.note = ""
        self._dirty = False
        self.distribution = "final"
        self.border_title = self.title()

    def title(self) -> str:
        return f"Token inspector · top {self.top_k} · {DISTRIBUTIONS[self.distribution]}"

    def begin(self, method: str) -> None:
        """A new reply starts with `method`: forget the old rows."""
        self.rows.clear()
        self.note = (f"no alternatives for this method ({method})"
                     if method in NO_ALTERNATIVES else "")
        self.refresh()

    def add(self, text: str, token_ids: Sequence[int], alternatives: Sequence[Alternatives],
            replace: bool = False, distribution: str = "final") -> None:
        """Record a TextDelta's tokens; shown at the next `flush`. A server that reports
        no token ids still gives one `alternatives` entry per token."""
        if replace:
            self.rows.clear()
        if alternatives and distribution in DISTRIBUTIONS and distribution != self.distribution:
            self.distribution = distribution
            self.border_title = self.title()
        if not alternatives:
            if token_ids and not self.rows:
                self.note = self.note or "no alternatives for this method"
                self._dirty = True
            return
        chosen = split_tokens(text, len(token_ids) or len(alternatives), alternatives)
        for token, alts in zip(chosen, alternatives):
            self.rows.append(InspectedToken(token, tuple(alts)))
        self.note = ""
        self._dirty = True

    def flush(self) -> None:
        """Repaint if tokens arrived since the last frame (one line each: no relayout)."""
        if self._dirty:
            self._dirty = False
            self.refresh()

    def render(self) -> Content:
        if self.note:
            return Content.styled(self.note, "dim italic")
        if not self.rows:
            return Content.styled(
                f"The next reply shows here: each token's top {self.top_k} candidates "
                "with their probabilities (greedy and sampling presets).", "dim")
        height = max(1, self.size.height)
        width = self.size.width
        lines = [render_row(row) for row in list(self.rows)[-height:]]
        if width > 0:
            lines = [line.truncate(width, ellipsis=True) for line in lines]
        return Content("\n").join(lines)
