"""Session settings: the sampler knobs a session overrides on top of its preset.

The screen edits max_new_tokens, temperature, top_k, top_p and seed. Each value is
read with TOML syntax and checked by `presets.from_mapping` (the rule a preset file
follows), so a bad value shows the same one line as everywhere else and the screen
stays open. It returns only what differs from the preset: what the session should
remember (only these five fields: other knobs stay the preset's).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from gptterm.cli_types import INT_MAX
from gptterm.presets import FIELD_NAMES, PresetError, from_mapping, parse_assignment
from gptterm.textsafe import inert
from gptterm.ui.screens.dialogs import after_typing

WHERE = "session settings"
# (field, label, allowed values): the ranges are presets._check_ranges', in words.
FIELDS = (
    ("max_new_tokens", "Max new tokens", f"1 to {INT_MAX}"),
    ("temperature", "Temperature", "0 to 100; above 0 when sampling"),
    ("top_k", "Top-k", f"0 (off) to {INT_MAX}; when sampling"),
    ("top_p", "Top-p", "above 0, up to 1 (off); when sampling"),
    ("seed", "Seed", "0 to 2**63 - 1; blank: a new seed each reply"),
)
HINT = "Enter or Ctrl+S saves · Ctrl+R resets to the preset · Esc cancels"


def show(value: Any) -> str:
    """A value as the user types it ('' for no value)."""
    return "" if value is None else str(value)


def overrides(defaults: dict[str, Any], typed: dict[str, str]) -> dict[str, Any]:
    """The session's overrides of the preset `defaults` once the user typed `typed`
    (field -> text): the fields whose value differs from the preset's.

    A blank field takes the preset's value, except seed, where blank means a new
    random seed each reply. The whole preset is checked, so a rule that joins two
    fields (temperature above 0 when sampling) holds too.

    Raises:
        PresetError: a value that is not valid, as one line naming the field.
    """
    base = from_mapping({k: v for k, v in defaults.items() if k in FIELD_NAMES},
                        where=WHERE).values()
    merged = dict(base)
    for key, text in typed.items():
        if text.strip():
            merged[key] = parse_assignment(f"{key}={text}")[1]
        else:
            merged[key] = None if key == "seed" else base[key]
    resolved = from_mapping(merged, where=WHERE).values()
    return {key: resolved[key] for key in typed if resolved[key] != base[key]}


class SessionSettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Edit the session's sampler overrides; dismisses with the overrides, {} on reset,
    None on Esc."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+r", "reset", "Reset", priority=True),
    ]

    def __init__(self, values: dict[str, Any], defaults: dict[str, Any]) -> None:
        super().__init__(classes="dialog settings")
        self.values = dict(values)
        self.defaults = dict(defaults)

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(Content.styled("Session settings", "bold"), classes="question")
            for key, label, allowed in FIELDS:
                value = self.values.get(key, self.defaults.get(key))
                preset = self.defaults.get(key)
                placeholder = "random" if preset is None else f"preset: {preset}"
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield Input(show(value), id=key, compact=True, select_on_focus=False,
                                placeholder=inert(placeholder, single_line=True))
                    yield Label(Content.styled(allowed, "dim"), classes="field-range")
            yield Label("", id="settings-error")
            with Horizontal(classes="buttons"):
                yield Button("Reset", id="reset")
                yield Button("Cancel", id="cancel")
                yield Button("Save", variant="primary", id="save")
            yield Label(Content.styled(HINT, "dim"), classes="hint")

    def on_mount(self) -> None:
        self.query_one(f"#{FIELDS[0][0]}", Input).focus()

    def typed(self) -> dict[str, str]:
        return {key: self.query_one(f"#{key}", Input).value for key, _, _ in FIELDS}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"save": self.action_save, "reset": self.action_reset,
         "cancel": self.action_cancel}[event.button.id or "cancel"]()

    def action_save(self) -> None:
        after_typing(self, self._save)

    def _save(self) -> None:
        try:
            result = overrides(self.defaults, self.typed())
        except PresetError as exc:
            self.query_one("#settings-error", Label).update(
                Content.styled(inert(str(exc), single_line=True), "$error"))
            return
        self.dismiss(result)

    def action_reset(self) -> None:
        self.dismiss({})

    def action_cancel(self) -> None:
        self.dismiss(None)
