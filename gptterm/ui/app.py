"""The gptterm Textual app: the engine and its model, the store, settings, themes, palette.

`make_app()` builds it; the CLI and the tests share it. The app keeps what is
app-wide; the main screen (`screens/main.py`) owns its widgets and everything done
to a session. The app talks to the engine only through `gptterm.protocol` objects:
commands go in with `send`, events come back on the engine thread and are posted
to the UI as `EngineEvent` messages (`post_message` is the one thread-safe call).
Model events are handled here; a request's events go to the main screen. The engine
is built and started on a worker thread after the first frame, so the screen is
interactive before any model (or torch) has loaded; this module never imports torch
or transformers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App
from textual.screen import Screen

from gptterm import catalog, config
from gptterm.errors import first_line
from gptterm.presets import DEFAULT_PRESET, Preset, load_presets
from gptterm.remote import is_remote
from gptterm.remote.httpclient import public_url
from gptterm.protocol import Command, Event, LoadModel, ModelFailed, ModelLoaded, ModelLoading
from gptterm.textsafe import inert
from gptterm.ui.commands import PROVIDERS
from gptterm.ui.feeder import StoreFeeder
from gptterm.ui.keymap import BOUND_ELSEWHERE, KEY_ACTIONS, KeyAction, default_keys, resolve_keymap
from gptterm.ui.labels import short_model
from gptterm.ui.messages import EngineEvent, StoreProblem
from gptterm.ui.screens.dialogs import PickerScreen
from gptterm.ui.screens.diff import DiffScreen
from gptterm.ui.screens.help import HelpScreen
from gptterm.ui.screens.main import MainScreen
from gptterm.ui.themes import DEFAULT_THEME, load_themes

EngineFactory = Callable[[Callable[[Event], None]], Any]


def default_engine_factory(emit: Callable[[Event], None], threads: int | None = None,
                           lenient: bool = False, precision: str | None = None) -> Any:
    """The real engine: a RoutingEngine, which runs a model named by a URL or `remote:NAME`
    on that server (`lenient`: dropping preset fields it cannot honour) and any other
    in-process (at `precision`, None: the config's); imported here so `import
    gptterm.ui.app` stays light."""
    from gptterm.engine.engine import Engine
    from gptterm.remote.routing import RoutingEngine

    return RoutingEngine(emit, lambda relay: Engine(relay, threads=threads, precision=precision),
                         lenient=lenient)


class GptTermApp(App[None]):
    """The TUI; see the module docstring for how it talks to the engine."""

    CSS_PATH = "gptterm.tcss"
    TITLE = "gptterm"
    COMMANDS = set(PROVIDERS)

    def __init__(self, model: str | None = None, preset: str | None = None, *,
                 engine_factory: EngineFactory | None = None, store: Any = None,
                 settings_path: Path | None = None, threads: int | None = None) -> None:
        super().__init__()
        self.settings_path = settings_path
        self.settings, self._problems = config.load_settings(settings_path)
        # `--threads` wins over the config's `threads`; None lets the engine pick.
        self.engine_factory = engine_factory or partial(
            default_engine_factory, threads=threads or self.settings.threads)
        self.engine: Any = None
        self._pending: list[Command] = []  # commands sent before the engine is up
        self.store = store
        self._own_store = store is None
        self.clock: Callable[[], float] = time.monotonic  # tests pin these two
        self.wall_clock: Callable[[], float] = time.time
        self.seed_source: Callable[[], int] = lambda: random.randrange(2**31)
        self.presets: dict[str, Preset] = {}
        self._preset_problems: set[str] = set()
        self.reload_presets(notify=False)
        self._initial_preset_name = self._initial_preset(preset)
        # `--preset` given: it wins over the preset of the session that opens at start.
        self.preset_explicit = preset is not None and preset in self.presets
        self.model_name: str | None = None  # loaded and in use
        self.loading_model: str | None = None
        # `--model` given: it wins over the model of the session that opens at start.
        self.model_explicit = model is not None
        self.requested_model = model or self.settings.model or catalog.DEFAULT_MODEL
        self.device: str | None = None
        self.n_ctx: int | None = None
        self.feeder = StoreFeeder(lambda error: self.post_message(StoreProblem(error)))
        themes, theme_failures = load_themes()
        for theme in themes.values():
            self.register_theme(theme)
        self._problems += theme_failures
        wanted = self.settings.theme or DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else (
            DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark")
        self._keys = default_keys()
        self._apply_keymap()

    # ------------------------------------------------------------ start and stop

    def _initial_preset(self, wanted: str | None) -> str:
        if wanted and wanted in self.presets:
            return wanted
        if wanted:
            self._problems.append(f"unknown preset {wanted!r}: using the default")
        for name in (self.settings.preset, DEFAULT_PRESET):
            if name and name in self.presets:
                return name
        return min(self.presets) if self.presets else "neutral"

    def _apply_keymap(self) -> None:
        keymap, problems = resolve_keymap(self.settings.keys, default_keys())
        self._problems += problems
        self._keys.update(keymap)
        if keymap:
            self.set_keymap(keymap)

    def key_for(self, action_id: str) -> str:
        """The keys bound to `action_id` now (a config.toml rebinding included)."""
        return self._keys.get(action_id, "").replace(",", ", ")

    def get_default_screen(self) -> Screen:
        self.main = MainScreen(self._initial_preset_name)
        return self.main

    def main_mounted(self, main: MainScreen) -> None:
        """Called when the main screen mounts, before it opens a session: open the store."""
        from gptterm.store import Store, StoreError

        if self.store is None:
            try:
                self.store = Store()
            except StoreError as exc:
                self._problems.append(str(exc))
                self.store = None
        recovered = getattr(self.store, "recovered_from", None)
        if recovered:
            self._problems.append(f"the sessions database was damaged; moved to {recovered}")
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self._problems:
            self.notify("\n".join(self._problems), title="Some settings were not loaded",
                        severity="warning", timeout=10)
        self.call_after_refresh(self._launch_engine)

    def _launch_engine(self) -> None:
        self.loading_model = self.requested_model
        self.main.status.set(loading=short_model(self.requested_model), load_fraction=0.0)
        self._pending.insert(0, LoadModel(self.requested_model))
        threading.Thread(target=self._build_engine, name="gptterm-engine-start",
                         daemon=True).start()

    def _build_engine(self) -> None:
        """Worker thread: build and start the engine, then hand it to the UI thread."""
        try:
            engine = self.engine_factory(lambda event: self.post_message(EngineEvent(event)))
            engine.start()
        except Exception as exc:  # noqa: BLE001 - reported, the UI stays up
            self.call_from_thread(self._engine_failed, first_line(exc))
            return
        try:
            self.call_from_thread(self._engine_ready, engine)
        except RuntimeError:  # the app quit meanwhile
            engine.close()

    def _engine_ready(self, engine: Any) -> None:
        self.engine = engine
        pending, self._pending = self._pending, []
        for command in pending:
            engine.submit(command)

    def _engine_failed(self, error: str) -> None:
        self.loading_model = None
        self.main.status.set(loading=None)
        self.notify(f"The engine did not start: {error}", severity="error", timeout=15)

    def send(self, command: Command) -> None:
        """Give the engine a command (queued until the engine is up)."""
        if self.engine is None:
            self._pending.append(command)
        else:
            self.engine.submit(command)

    def on_unmount(self) -> None:
        self.main._stop_generation(notify=False, ui=False)
        engine, self.engine = self.engine, None
        if engine is not None:  # closing waits on the worker; never hang the exit on it
            closer = threading.Thread(target=engine.close, daemon=True)
            closer.start()
            closer.join(2.0)
        self.feeder.close()
        if self._own_store and self.store is not None:
            self.store.close()

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every notification is plain text with control characters made visible: messages
        quote file names, engine errors, model names and stored titles, none of them markup."""
        super().notify(inert(message), title=inert(title, single_line=True), severity=severity,
                       timeout=timeout, markup=markup)

    # ------------------------------------------------------------ settings and presets

    def save_settings(self) -> None:
        try:
            config.save_settings(self.settings, self.settings_path)
        except config.SettingsNotSaved as exc:
            if str(exc) != getattr(self, "_not_saved", None):  # say it once, not per change
                self._not_saved = str(exc)
                self.notify(str(exc), severity="warning")
        except OSError as exc:
            self.notify(f"Could not save config.toml: {exc}", severity="warning")

    def remember_default(self, **changes: Any) -> None:
        """Keep what a new session and the next start use (config.toml), when it changed."""
        if any(getattr(self.settings, k) != v for k, v in changes.items()):
            for key, value in changes.items():
                setattr(self.settings, key, value)
            self.save_settings()

    def _theme_changed(self, theme: Any) -> None:
        self.remember_default(theme=theme.name)

    def reload_presets(self, notify: bool = True) -> dict[str, Preset]:
        """Read the preset folders again (a file added while the app runs appears at once);
        a problem is said once per run."""
        presets, failures = load_presets()
        self.presets = presets
        new = [f for f in failures if f not in self._preset_problems]
        self._preset_problems.update(new)
        if new and notify:
            self.notify("\n".join(new), title="Some presets were not loaded", severity="warning",
                        timeout=10)
        elif new:
            self._problems += new
        return presets

    # ------------------------------------------------------------ models

    @property
    def current_model(self) -> str | None:
        """The model the next reply runs on: the one loading, else the one loaded."""
        return self.loading_model or self.model_name

    def load_model(self, name: str) -> None:
        """Swap the model: stops a generation, loads with progress; a failure keeps the old."""
        self.main._stop_generation()
        self.loading_model = name
        self.main.status.set(loading=short_model(name), load_fraction=0.0, load_message="")
        self.send(LoadModel(name))

    def model_choices(self) -> list[tuple[str, str, str]]:
        """(name, label, description) of every model the picker offers: shipped, trained or
        loaded folders, hub models (those not on disk say so), and the one in use."""
        rows = []
        names = set()
        for spec in catalog.all_models():
            where = "" if spec.available_offline() else " (not downloaded)"
            label = short_model(spec.name)
            description = inert(spec.description, single_line=True)
            if spec.local and spec.name not in catalog.SHIPPED:
                description = f"{description} · {inert(spec.source, single_line=True)}"
            rows.append((spec.name, label, f"{description}{where}"))
            names.add(spec.name)
        for name, table in sorted(self.settings.backends.items()):
            rows.append((f"remote:{name}", f"remote:{inert(name, single_line=True)}",
                         f"{table.flavor} server · {inert(public_url(table.url), single_line=True)}"))
            names.add(f"remote:{name}")
        current = self.current_model
        if current and current not in names:
            rows.append((current, short_model(current), "in use"))
        return rows

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        status = self.main.status
        if isinstance(event, ModelLoading):
            status.set(loading=short_model(event.name), load_fraction=event.fraction,
                       load_message=event.message)
        elif isinstance(event, ModelLoaded):
            self._model_loaded(event)
        elif isinstance(event, ModelFailed):
            self.loading_model = None
            status.set(loading=None, load_message="")
            kept = f"; still using {short_model(self.model_name)}" if self.model_name else ""
            self.notify(f"Could not load {event.name}: {event.error}{kept}",
                        title="Model not loaded", severity="error", timeout=15)
        else:
            self.main.engine_event(event)

    def _model_loaded(self, event: ModelLoaded) -> None:
        self.model_name, self.device, self.n_ctx = event.name, event.device, event.n_ctx
        if self.loading_model == event.name:
            self.loading_model = None
        self.main.status.set(model=short_model(event.name), device=event.device,
                             precision=event.precision, n_ctx=event.n_ctx,
                             loading=self.loading_model and short_model(self.loading_model),
                             load_message="")
        spec = catalog.resolve(event.name)
        if spec.local and event.name not in catalog.SHIPPED and not is_remote(event.name):
            from gptterm import local_models

            try:
                local_models.remember(spec.source, how="loaded")
            except OSError as exc:  # the picker just will not list it
                self.notify(f"Could not remember {spec.source}: {exc}", severity="warning")
        self.remember_default(model=event.name)
        self.main.model_changed()

    # ------------------------------------------------------------ app-wide actions

    def sessions(self) -> list:
        return self.store.list_sessions() if self.store is not None else []

    def palette_actions(self) -> list[KeyAction]:
        """Every key action with its current keys, for the command palette."""
        return [KeyAction(a.id, self.key_for(a.id), a.action, a.label,
                          f"{a.help} · {self.key_for(a.id)}", app_wide=a.app_wide)
                for a in KEY_ACTIONS]

    def run_key_action(self, action: KeyAction) -> None:
        """Run a key action from the palette on its owner (the app or the main screen)."""
        target = self if action.app_wide else self.main
        self.call_later(target.run_action, action.action)

    def action_help(self) -> None:
        rows = [(self.key_for(a.id), a.id, f"{a.label}: {a.help}") for a in KEY_ACTIONS]
        rows += [(keys, "", what) for keys, what in BOUND_ELSEWHERE]
        self.push_screen(HelpScreen(rows))

    def action_pick_theme(self) -> None:
        items = [(n, n, "") for n in sorted(self.available_themes) if n != "textual-ansi"]

        def done(name: str | None) -> None:
            if name:
                self.theme = name

        self.push_screen(PickerScreen("Theme", items, self.theme), done)

    def action_diff_models(self) -> None:
        """Checkpoint diff of two local models (A: the current one) on a text file."""
        models = [(name, label) for name, label, _ in self.model_choices()
                  if not is_remote(name)]
        self.push_screen(DiffScreen(models, self.current_model))


def make_app(model: str | None = None, preset: str | None = None, *,
             engine_factory: EngineFactory | None = None, store: Any = None,
             threads: int | None = None) -> GptTermApp:
    """Build the app (the CLI runs it; tests drive it with a fake engine and a temp store)."""
    return GptTermApp(model, preset, engine_factory=engine_factory, store=store,
                      threads=threads)
