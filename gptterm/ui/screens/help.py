"""The help screen: every key, as bound now (config.toml rebindings included)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class HelpScreen(ModalScreen[None]):
    """A table of (keys, config.toml name, what they do); any of Esc, q, F1 closes it."""

    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close")]

    def __init__(self, rows: Sequence[tuple[str, str, str]]) -> None:
        super().__init__(classes="dialog help")
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        width = max((len(keys) for keys, _, _ in self.rows), default=8) + 2
        named = max((len(name) for _, name, _ in self.rows), default=8) + 2
        lines = [
            Content.assemble((keys.ljust(width), "bold $accent"), (name.ljust(named), "dim"),
                             what)
            for keys, name, what in self.rows
        ]
        with VerticalScroll(classes="box"):
            yield Label(Content.styled("gptterm keys", "bold"), classes="question")
            yield Static(Content("\n").join(lines), id="keys")
            yield Label(Content.styled(
                "Esc closes · rebind a key in config.toml by its name, e.g. "
                '[keys] new_session = "ctrl+e"', "dim"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
