"""Command palette providers: actions, presets, models, sessions and themes.

Each provider lists (label, help, callback) rows taken from the running app,
so the palette always shows what the keys would do right now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from gptterm.textsafe import inert

if TYPE_CHECKING:
    from gptterm.ui.app import GptTermApp

Row = tuple[str, str, Callable[[], object]]


class _RowsProvider(Provider):
    """A provider over a list of rows; subclasses say which rows."""

    def rows(self, app: GptTermApp) -> Iterable[Row]:
        raise NotImplementedError

    async def discover(self) -> Hits:
        for label, help_text, callback in self.rows(self.app):  # type: ignore[arg-type]
            yield DiscoveryHit(label, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, help_text, callback in self.rows(self.app):  # type: ignore[arg-type]
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), callback, help=help_text)


class ActionsProvider(_RowsProvider):
    """Every key action, with its current key in the help line."""

    def rows(self, app: GptTermApp) -> Iterable[Row]:
        for action in app.palette_actions():
            yield action.label, action.help, partial(app.run_key_action, action)


class PresetsProvider(_RowsProvider):
    def rows(self, app: GptTermApp) -> Iterable[Row]:
        for name, preset in sorted(app.reload_presets().items()):
            yield f"Preset: {name}", preset.description or preset.summary(), partial(
                app.main.set_preset, name)


class ModelsProvider(_RowsProvider):
    def rows(self, app: GptTermApp) -> Iterable[Row]:
        for name, label, description in app.model_choices():
            yield f"Model: {label}", description, partial(app.main.choose_model, name)


class SessionsProvider(_RowsProvider):
    def rows(self, app: GptTermApp) -> Iterable[Row]:
        for session in app.sessions():
            title = inert(session.title or session.name or "untitled", single_line=True)
            yield f"Session: {title}", f"open session {inert(session.id, single_line=True)}", partial(
                app.main.open_session, session.id)


class ThemesProvider(_RowsProvider):
    def rows(self, app: GptTermApp) -> Iterable[Row]:
        for name in sorted(app.available_themes):
            if name == "textual-ansi":
                continue
            yield f"Theme: {name}", "switch the colour theme (remembered)", partial(
                setattr, app, "theme", name)


PROVIDERS = (ActionsProvider, PresetsProvider, ModelsProvider, SessionsProvider, ThemesProvider)
