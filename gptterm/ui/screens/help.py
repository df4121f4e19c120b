"""The help screen: every key, as bound now (config.toml rebindings included)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label


class HelpScreen(ModalScreen[None]):
    """A table of (keys, config.toml name, what they do); any of Esc, q, F1 closes it."""

    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close")]

    def __init__(self, rows: Sequence[tuple[str, str, str]]) -> None:
        super().__init__(classes="dialog help")
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        keys_width = max((len(keys) for keys, _, _ in self.rows), default=8) + 2
        name_width = max((len(name) for _, name, _ in self.rows), default=8) + 2
        with VerticalScroll(classes="box"):
            yield Label(Content.styled("gptterm keys", "bold"), classes="question")
            for keys, name, what in self.rows:
                # Three columns; a long description wraps inside its own column.
                with Horizontal(classes="help-row"):
                    key_label = Label(Content.styled(keys, "bold $accent"))
                    key_label.styles.width = keys_width
                    name_label = Label(Content.styled(name, "dim"))
                    name_label.styles.width = name_width
                    yield key_label
                    yield name_label
                    yield Label(Content(what), classes="help-what")
            yield Label(Content.styled(
                "Esc closes · rebind a key in config.toml by its name, e.g. "
                '[keys] new_session = "f12"', "dim"), classes="help-foot")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
