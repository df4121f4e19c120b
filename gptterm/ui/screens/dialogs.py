"""Small modal dialogs: confirm (yes/no), ask for a line of text, pick one or several of a list."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, OptionList, SelectionList
from textual.widgets.option_list import Option


def after_typing(screen: Screen, action: Callable[[], object]) -> None:
    """Run `action` once the focused widget has taken the keys already sent to it.

    A priority binding (Ctrl+S in a dialog) is handled as its key arrives, while the keys
    typed just before it may still wait in the focused widget's queue: reading its text
    at once lost the last characters of a fast typist (found in the tmux test).
    """
    def run() -> None:  # returns nothing: `call_later` would await a dismiss() (deadlock)
        action()

    focused = screen.focused
    if focused is None:
        run()
        return
    # Queue behind the widget's keys, then run on the screen's own queue.
    focused.call_later(lambda: screen.call_later(run))


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; Enter or y confirms, Esc or n declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class AskScreen(ModalScreen[str | None]):
    """Ask for one line of text; Enter accepts, Esc cancels (returns None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content(self.question), classes="question")
            yield Input(self.value, id="answer", select_on_focus=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickerScreen(ModalScreen[str | None]):
    """Pick one item: (id, label, description) rows; Enter picks, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, items: Sequence[tuple[str, str, str]],
                 current: str | None = None) -> None:
        super().__init__(classes="dialog picker")
        self.title_text = title
        self.items = list(items)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content.styled(self.title_text, "bold"), classes="question")
            options = []
            for ident, label, description in self.items:
                mark = "● " if ident == self.current else "  "
                text = Content.assemble(mark, (label, "bold"))
                if description:
                    text = Content.assemble(text, "  ", (description, "dim"))
                options.append(Option(text, id=ident))
            yield OptionList(*options, id="choices")

    def on_mount(self) -> None:
        choices = self.query_one(OptionList)
        ids = [ident for ident, _, _ in self.items]
        if self.current in ids:
            choices.highlighted = ids.index(self.current)
        choices.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChooseManyScreen(ModalScreen[list[str] | None]):
    """Pick `least`..`most` items of (id, label, description) rows; Space toggles,
    Enter accepts (returns the ids in list order), Esc cancels (returns None)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "accept", "Accept", priority=True),
    ]

    def __init__(self, title: str, items: Sequence[tuple[str, str, str]],
                 selected: Sequence[str] = (), *, least: int = 1, most: int | None = None,
                 accept: str = "accept") -> None:
        super().__init__(classes="dialog picker")
        self.title_text = title
        self.items = list(items)
        self.selected = list(selected)
        self.least = least
        self.most = most
        self.accept = accept

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content.styled(self.title_text, "bold"), classes="question")
            choices = []
            for ident, label, description in self.items:
                text = Content.styled(label, "bold")
                if description:
                    text = Content.assemble(text, "  ", (description, "dim"))
                choices.append((text, ident, ident in self.selected))
            yield SelectionList[str](*choices, id="choices")
            yield Label(Content.styled(f"Space toggles · Enter to {self.accept} · Esc cancels",
                                       "dim"), id="hint")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_accept(self) -> None:
        chosen = set(self.query_one(SelectionList).selected)
        ids = [ident for ident, _, _ in self.items if ident in chosen]
        most = self.most or len(self.items)
        if not self.least <= len(ids) <= most:
            wanted = f"{self.least}" if self.least == most else f"{self.least} to {most}"
            self.query_one("#hint", Label).update(
                Content.styled(f"Pick {wanted} (now {len(ids)}) · Space toggles", "$warning"))
            return
        self.dismiss(ids)

    def action_cancel(self) -> None:
        self.dismiss(None)
