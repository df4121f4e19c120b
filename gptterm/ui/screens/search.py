"""Search every session: results follow the typing; Enter opens the highlighted turn.

The query runs SEARCH_DELAY_S after the last key, on a worker thread (the store is
thread-safe, and a substring search over a big store must not stall the keys); only
the answer to the text now in the box is shown. A query the store refuses shows its
one line. Titles and snippets come from the store and are shown inert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from gptterm.errors import first_line
from gptterm.textsafe import inert

SEARCH_DELAY_S = 0.15
TITLE_CHARS = 30
HINT = "↑/↓ choose · Enter opens the turn · Esc closes"

SearchFn = Callable[[str], list[tuple[Any, Any, str]]]  # store.search: (Session, Turn, snippet)


def hit_label(session: Any, turn: Any, snippet: str) -> Content:
    """One result line: session title · role · snippet, every part inert on one line."""
    title = inert(session.title or session.name or session.id, single_line=True)
    if len(title) > TITLE_CHARS:
        title = title[:TITLE_CHARS - 1] + "…"
    return Content.assemble((title, "bold"), " · ", (inert(turn.role, single_line=True), "dim"),
                            " · ", inert(snippet, single_line=True))


def run_search(search: SearchFn, query: str) -> tuple[str, list, str]:
    """(query, hits, error line): what the worker hands back to the screen."""
    try:
        return query, search(query), ""
    except Exception as exc:  # noqa: BLE001 - StoreError or a damaged database: one line
        return query, [], first_line(exc)


class SearchScreen(ModalScreen[tuple[str, int] | None]):
    """Search with `search` (store.search's signature); dismisses with (session id, turn id)
    of the chosen hit, or None on Esc."""

    BINDINGS = [
        Binding("escape", "cancel", "Close"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    def __init__(self, search: SearchFn, query: str = "") -> None:
        super().__init__(classes="dialog picker search")
        self.search_fn = search
        self.query_text = query
        self.hits: list[tuple[Any, Any, str]] = []
        self._timer: Timer | None = None
        self._asked = ""  # the query whose answer we wait for
        self._shown = ""  # the query whose hits are on screen

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content.styled("Search all sessions", "bold"), classes="question")
            yield Input(self.query_text, id="search-query", placeholder="words to find",
                        select_on_focus=False)
            yield Label(Content.styled("Type words to find", "dim"), id="search-state")
            yield OptionList(id="choices")
            yield Label(Content.styled(HINT, "dim"), classes="hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).display = False
        self.query_one(Input).focus()
        if self.query_text.strip():
            self._ask(self.query_text)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(SEARCH_DELAY_S, lambda: self._ask(event.value))

    def _ask(self, query: str) -> None:
        self._asked = query
        if not query.strip():
            self._show(query, [], "", "Type words to find")
            return
        self.run_worker(lambda: run_search(self.search_fn, query), thread=True,
                        exclusive=True, group="search")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.SUCCESS or event.worker.group != "search":
            return
        query, hits, error = event.worker.result
        if query != self._asked:
            return  # an answer to text the user has since changed
        state = error or ("No turn matches" if not hits else
                          f"{len(hits)} turn{'s' if len(hits) != 1 else ''}")
        self._show(query, hits, error, state)

    def _show(self, query: str, hits: list, error: str, state: str) -> None:
        self._shown = query
        self.hits = list(hits)
        choices = self.query_one(OptionList)
        choices.set_options([Option(hit_label(*hit)) for hit in self.hits])
        choices.display = bool(self.hits)
        if self.hits:
            choices.highlighted = 0
        style = "$error" if error else "dim"
        self.query_one("#search-state", Label).update(
            Content.styled(inert(state, single_line=True), style))

    def action_move(self, step: int) -> None:
        choices = self.query_one(OptionList)
        if choices.option_count:
            now = choices.highlighted if choices.highlighted is not None else -step
            choices.highlighted = max(0, min(choices.option_count - 1, now + step))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        choices = self.query_one(OptionList)
        if self._shown != event.value:  # the hits on screen are for other text
            if self._asked != event.value:  # Enter before the delay ran out: search now
                if self._timer is not None:
                    self._timer.stop()
                self._ask(event.value)
            return
        if choices.highlighted is not None:
            self._pick(choices.highlighted)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._pick(event.option_index)

    def _pick(self, index: int) -> None:
        if 0 <= index < len(self.hits):
            session, turn, _ = self.hits[index]
            self.dismiss((session.id, turn.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
