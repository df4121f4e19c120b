"""The stage panel: what every stage of the sampling chain made of each token of a reply.

The top is a heat strip: the reply's tokens, each coloured by the probability the final
distribution gave the token drawn (low: the theme's error colour, high: its success
colour); the current token is underlined, and a click picks one. Below, one column per
stage ("model", each active step in the preset's order, "final") lists the current
token's top candidates with their probabilities, the chosen one highlighted.
Left/Right (Home/End) move along the reply; Page Up/Down go to the session's other
replies that kept their stages; Esc closes.

The data are `protocol.TokenInspect` records: a stored reply's from the store
(`Store.turn_inspect`), the reply being written from its `TextDelta` events (the panel
follows it while it grows). Every text shown is made inert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.style import Style
from textual.widgets import Static

from gptterm.protocol import TokenInspect
from gptterm.textsafe import inert
from gptterm.ui.widgets.inspector import shown

LIVE_S = 0.2  # how often a panel on the reply being written looks for new tokens
# (lowest probability, style): the heat of a chosen token's final probability.
HEAT = ((0.8, "on $success 45%"), (0.5, "on $success 20%"), (0.2, "on $warning 30%"),
        (0.05, "on $error 25%"), (0.0, "on $error 50%"))
COLUMN_MIN = 14  # cells a stage column needs to say something


@dataclass
class ReplyStages:
    """One reply's tokens for the panel: `tokens` (one per reply token), its `label`
    (which reply), `top_k`, and whether it is still being written (`live`)."""

    label: str
    tokens: Sequence[TokenInspect]
    top_k: int = 0
    live: bool = False


Loader = Callable[[], ReplyStages]


def chosen_probability(item: TokenInspect) -> tuple[float, bool]:
    """(the final probability of the token drawn, whether it is exact): a sampled token
    outside the final top K has at most the smallest probability shown."""
    final = item.stages[-1].top if item.stages else ()
    for token, _, p in final:
        if token == item.chosen:
            return p, True
    return (final[-1][2] if final else 0.0), False


def heat(p: float) -> str:
    return next(style for low, style in HEAT if p >= low)


def token_label(text: str) -> str:
    """A token as the panel shows it: quoted, spaces and newlines visible, inert."""
    return inert(shown(text), single_line=True)


def strip_content(tokens: Sequence[TokenInspect], current: int) -> Content:
    """The heat strip: each token's text, coloured by its final probability; a click on a
    token picks it (the `pick` action of the screen)."""
    parts = []
    for i, item in enumerate(tokens):
        text = inert(item.text, single_line=True) or "·"
        piece = Content(text).stylize(heat(chosen_probability(item)[0]))
        piece = piece.stylize(Style.from_meta({"@click": f"screen.pick({i})"}))
        if i == current:
            piece = piece.stylize("bold underline reverse")
        parts.append(piece)
    return Content("").join(parts)


def stage_columns(item: TokenInspect, width: int, rows: int) -> Content:
    """The stages of one token side by side, one column each: its name, then its top
    candidates, each `' text' 0.41`, the chosen one in the accent colour."""
    n = max(1, len(item.stages))
    col = max(COLUMN_MIN, (width - (n - 1) * 3) // n)
    lines: list[list[Content]] = [[] for _ in range(rows + 1)]
    for stage in item.stages:
        lines[0].append(Content.styled(inert(stage.stage, single_line=True), "bold")
                        .truncate(col, ellipsis=True, pad=True))
        for r in range(rows):
            if r < len(stage.top):
                token, text, p = stage.top[r]
                style = "bold $accent" if token == item.chosen else ""
                cell = Content.assemble((token_label(text), style), (f" {p:.3f}", "dim"))
            else:
                cell = Content("")
            lines[r + 1].append(cell.truncate(col, ellipsis=True, pad=True))
    sep = Content.styled(" │ ", "dim")
    return Content("\n").join(sep.join(line) for line in lines)


class StageScreen(Screen[None]):
    """The stage panel over `replies` (loaders, oldest first), opened on `start`."""

    BINDINGS = [
        Binding("left", "step(-1)", "Previous token"),
        Binding("right", "step(1)", "Next token"),
        Binding("home", "step(-1000000000)", "First", show=False),
        Binding("end", "step(1000000000)", "Last", show=False),
        Binding("pageup", "reply(-1)", "Previous reply", show=False),
        Binding("pagedown", "reply(1)", "Next reply", show=False),
        Binding("escape,q", "close", "Close"),
    ]
    DEFAULT_CSS = """
    StageScreen { layout: vertical; }
    StageScreen #stages-bar { height: 1; background: $panel; padding: 0 1; }
    StageScreen #stages-strip { height: auto; max-height: 8; padding: 0 1;
                                border: round $primary 50%; }
    StageScreen #stages-table { height: 1fr; padding: 0 1; }
    StageScreen #stages-help { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, replies: Sequence[Loader], start: int | None = None) -> None:
        super().__init__()
        self.replies = list(replies)
        self.reply_index = len(self.replies) - 1 if start is None else start
        self.data = ReplyStages("", ())
        self.current = 0
        self._following = True  # on the newest token of a live reply: stay there

    def compose(self) -> ComposeResult:
        yield Static(id="stages-bar")
        yield Static(id="stages-strip")
        yield Static(id="stages-table")
        yield Static("←/→ token · click a token · PgUp/PgDn reply · Esc close",
                     id="stages-help")

    def on_mount(self) -> None:
        self.query_one("#stages-strip").border_title = "heat: final probability of each token"
        self._load(last=False)
        self.set_interval(LIVE_S, self._poll)

    def on_resize(self) -> None:
        self._show()

    def _load(self, last: bool) -> None:
        self.data = self.replies[self.reply_index]() if self.replies else ReplyStages("", ())
        n = len(self.data.tokens)
        self.current = n - 1 if last or self._following and self.data.live else \
            min(self.current, max(0, n - 1))
        self._show()

    def _poll(self) -> None:
        """A live reply: take its new tokens (the cursor follows the newest)."""
        if not self.data.live:
            return
        had = len(self.data.tokens)
        self.data = self.replies[self.reply_index]()
        if len(self.data.tokens) != had or not self.data.live:
            if self._following:
                self.current = max(0, len(self.data.tokens) - 1)
            self._show()

    def _show(self) -> None:
        if not self.is_mounted:
            return
        tokens = self.data.tokens
        bar = self.query_one("#stages-bar", Static)
        strip = self.query_one("#stages-strip", Static)
        table = self.query_one("#stages-table", Static)
        label = inert(self.data.label, single_line=True)
        if not tokens:
            bar.update(Content.assemble(("Stages ", "bold $accent"), label))
            strip.update(Content.styled("no tokens yet", "dim"))
            table.update(Content.styled(
                "This reply kept no stages. Replies written while the token inspector is on "
                "(Ctrl+L) keep every stage of the sampling chain.", "dim"))
            return
        item = tokens[self.current]
        p, exact = chosen_probability(item)
        live = " · writing…" if self.data.live else ""
        bar.update(Content.assemble(
            ("Stages ", "bold $accent"), label, f" · token {self.current + 1} of {len(tokens)}",
            live, " · ", (token_label(item.text), "bold"),
            f" · final p {'' if exact else '≤ '}{p:.3f}"))
        strip.update(strip_content(tokens, self.current))
        width = max(COLUMN_MIN, table.size.width or self.size.width - 2)
        rows = max((len(s.top) for s in item.stages), default=0)
        table.update(stage_columns(item, width, rows))

    def action_step(self, by: int) -> None:
        n = len(self.data.tokens)
        if n:
            self.current = min(max(0, self.current + by), n - 1)
            self._following = self.current == n - 1
            self._show()

    def action_pick(self, index: int) -> None:
        if 0 <= index < len(self.data.tokens):
            self.current = index
            self._following = index == len(self.data.tokens) - 1
            self._show()

    def action_reply(self, by: int) -> None:
        index = self.reply_index + by
        if 0 <= index < len(self.replies):
            self.reply_index = index
            self.current = 0
            self._following = False
            self._load(last=False)

    def action_close(self) -> None:
        self.dismiss(None)
