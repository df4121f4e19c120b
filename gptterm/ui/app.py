"""The gptterm Textual app: sessions, a streaming transcript, presets, models, themes.

`make_app()` builds it; the CLI and the tests share it. The app talks to the
engine only through `gptterm.protocol` objects: commands go in with
`engine.submit`, events come back on the engine thread and are posted to the UI
as `EngineEvent` messages (`post_message` is the one thread-safe call). The
engine is built and started on a worker thread after the first frame, so the
screen is interactive before any model (or torch) has loaded; this module never
imports torch or transformers.

Switching sessions while a reply streams: the reply keeps streaming into its
own session (the store writes it there); switching back shows it live. Starting
another generation, loading a model, deleting the session or quitting stops it,
saved as cancelled.

The token inspector (a panel under the transcript) asks each Generate for the top
candidates of every token; compare presets runs 2-3 presets on the same prompt
in a modal screen (`screens/compare.py`) that receives its requests' events.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label

from gptterm import catalog, config
from gptterm.errors import first_line
from gptterm.textsafe import inert
from gptterm.presets import DEFAULT_PRESET, Preset, load_presets
from gptterm.protocol import (
    Cancel,
    Command,
    Done,
    DropSession,
    Event,
    Failed,
    LoadModel,
    ModelFailed,
    ModelLoaded,
    ModelLoading,
    Reply,
    Segment,
    Started,
    TextDelta,
)
from gptterm.recorder import (
    TurnRecorder, context_segments, joined_prompt, status_for, window_notices,
)
from gptterm.ui.commands import PROVIDERS
from gptterm.ui.feeder import StoreFeeder
from gptterm.ui.keymap import resolve_keymap
from gptterm.ui.messages import EngineEvent, StoreProblem
from gptterm.ui.screens.compare import CompareScreen
from gptterm.ui.screens.dialogs import AskScreen, ChooseManyScreen, ConfirmScreen, PickerScreen
from gptterm.ui.screens.help import HelpScreen
from gptterm.ui.screens.replay import ReplayScreen
from gptterm.ui.themes import DEFAULT_THEME, load_themes
from gptterm.ui.widgets.inspector import TokenInspector
from gptterm.ui.widgets.prompt import PromptArea
from gptterm.ui.widgets.sessions import SessionList
from gptterm.ui.widgets.status import StatusBar
from gptterm.ui.widgets.transcript import FRAME_S, Transcript, TurnView

EngineFactory = Callable[[Callable[[Event], None]], Any]
INSPECT_TOP_K = 5  # candidates per token the token inspector asks for
COMPARE_DEFAULTS = ("greedy", "top-p")  # compared with the current preset unless changed


def default_engine_factory(emit: Callable[[Event], None], threads: int | None = None) -> Any:
    """The real engine; imported here so `import gptterm.ui.app` stays light."""
    from gptterm.engine.engine import Engine

    return Engine(emit, threads=threads)


@dataclass(frozen=True)
class KeyAction:
    """A key binding that is also a palette command and a help-screen row."""

    id: str  # binding id: the name used in config.toml [keys]
    keys: str
    action: str
    label: str
    help: str
    show: bool = True
    priority: bool = False


# Default keys. Avoid ctrl+m, ctrl+i, ctrl+h (terminals send Enter, Tab, Backspace),
# ctrl+b (tmux) and the keys the prompt's TextArea uses (ctrl+a/c/d/e/k/u/v/w/x/y/z, f6/f7).
KEY_ACTIONS = (
    KeyAction("help", "f1", "help", "Help", "show every key"),
    KeyAction("new_session", "ctrl+n", "new_session", "New session", "start a new session"),
    KeyAction("previous_session", "alt+up,ctrl+pageup", "previous_session", "Previous session",
              "open the session above", show=False),
    KeyAction("next_session", "alt+down,ctrl+pagedown", "next_session", "Next session",
              "open the session below", show=False),
    KeyAction("cycle_preset", "f2", "cycle_preset", "Preset", "cycle to the next preset"),
    KeyAction("pick_preset", "f3", "pick_preset", "Pick preset", "choose a preset from a list"),
    KeyAction("cycle_model", "f4", "cycle_model", "Model", "cycle to the next available model"),
    KeyAction("pick_model", "f5", "pick_model", "Pick model", "choose a model from a list"),
    KeyAction("cancel", "escape", "cancel", "Cancel", "stop the reply (kept, saved as cancelled)"),
    KeyAction("regenerate", "ctrl+r", "regenerate", "Regenerate", "write the last reply again"),
    KeyAction("continue", "ctrl+g", "continue_reply", "Continue", "continue the last reply"),
    KeyAction("copy_reply", "ctrl+t", "copy_reply", "Copy", "copy the last reply"),
    KeyAction("toggle_inspector", "ctrl+l", "toggle_inspector", "Inspector",
              "show each new token's top candidates"),
    KeyAction("compare_presets", "ctrl+f", "compare_presets", "Compare",
              "try 2-3 presets side by side (not saved)"),
    KeyAction("replay", "f8", "replay", "Replay", "replay the session with its timing"),
    KeyAction("toggle_sidebar", "ctrl+s", "toggle_sidebar", "Sidebar",
              "show or hide the sessions sidebar", show=False),
    KeyAction("rename_session", "f9", "rename_session", "Rename session",
              "rename the open session", show=False),
    KeyAction("delete_session", "f10", "delete_session", "Delete session",
              "delete the open session (asks first)", show=False),
    KeyAction("pick_theme", "f11", "pick_theme", "Pick theme", "choose a colour theme",
              show=False),
)
_BOUND_ELSEWHERE = (  # shown in help; not rebindable here
    ("enter", "send the prompt"),
    ("shift+enter, ctrl+j", "new line in the prompt"),
    ("ctrl+p", "command palette: actions, presets, models, sessions, themes"),
    ("ctrl+q", "quit"),
    ("r / delete (sidebar)", "rename / delete the highlighted session"),
)


@dataclass
class Generation:
    """The reply being written: its recorder (which folds and stores it) and its view."""

    recorder: TurnRecorder
    session_id: str
    preset: str
    started: float
    cancelling: bool = False
    inspect: bool = False  # alternatives were asked for
    view: TurnView | None = None
    dirty: bool = False

    @property
    def request_id(self) -> str:
        return self.recorder.request_id

    @property
    def reply(self) -> Reply:
        return self.recorder.reply

    @property
    def turn_id(self) -> int | None:
        """The stored model turn (None until the engine has started it)."""
        writer = self.recorder.writer
        return writer.turn_id if writer is not None else None


class MainScreen(Screen):
    """Sidebar, transcript, prompt, status bar and footer; holds the key bindings."""

    BINDINGS = [
        Binding(a.keys, f"app.{a.action}", a.label, show=a.show, id=a.id, priority=a.priority)
        for a in KEY_ACTIONS
    ]

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                yield Label("Sessions", id="sidebar-title")
                yield SessionList(clock=self.app.wall_clock, id="sessions")  # type: ignore
            with Vertical(id="body"):
                yield Transcript(id="transcript")
                yield TokenInspector(INSPECT_TOP_K, id="inspector")
                yield PromptArea(id="prompt", placeholder="Write a beginning; Enter sends")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.app.setup_main(self)  # type: ignore[attr-defined]


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
        self.presets, preset_failures = load_presets()
        self._problems += preset_failures
        self.preset_name = self._initial_preset(preset)
        self.model_name: str | None = None  # loaded and in use
        self.loading_model: str | None = None
        self.requested_model = model or self.settings.model or catalog.DEFAULT_MODEL
        self.device: str | None = None
        self.n_ctx: int | None = None
        self.session_id: str | None = None  # None: a new session not stored yet
        self.gen: Generation | None = None
        self.inspecting = False  # token inspector on: every Generate asks for alternatives
        self.compare: CompareScreen | None = None  # open comparison: gets its engine events
        self.feeder = StoreFeeder(lambda error: self.post_message(StoreProblem(error)))
        themes, theme_failures = load_themes()
        for theme in themes.values():
            self.register_theme(theme)
        self._problems += theme_failures
        wanted = self.settings.theme or DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else (
            DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark")
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
        defaults = {a.id: a.keys for a in KEY_ACTIONS}
        keymap, problems = resolve_keymap(self.settings.keys, defaults)
        self._problems += problems
        if keymap:
            self.set_keymap(keymap)

    def get_default_screen(self) -> Screen:
        self.main = MainScreen()
        return self.main

    def setup_main(self, main: MainScreen) -> None:
        """Called when the main screen is mounted: open the store, show the last session."""
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
        self.main.query_one("#sidebar").display = self.settings.sidebar
        self.status.set(preset=self.preset_name)
        self._open_initial_session()
        self.main.query_one(PromptArea).focus()
        self.set_interval(FRAME_S, self._flush_text)
        if self._problems:
            self.notify("\n".join(self._problems), title="Some settings were not loaded",
                        severity="warning", timeout=10)
        self.call_after_refresh(self._launch_engine)

    def _launch_engine(self) -> None:
        self.loading_model = self.requested_model
        self.status.set(loading=self._short(self.requested_model), load_fraction=0.0)
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
        self.status.set(loading=None)
        self.notify(f"The engine did not start: {error}", severity="error", timeout=15)

    def send(self, command: Command) -> None:
        """Give the engine a command (queued until the engine is up)."""
        if self.engine is None:
            self._pending.append(command)
        else:
            self.engine.submit(command)

    def on_unmount(self) -> None:
        self._stop_generation(notify=False, ui=False)
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

    # ------------------------------------------------------------ helpers

    @property
    def status(self) -> StatusBar:
        return self.main.query_one(StatusBar)

    @property
    def transcript(self) -> Transcript:
        return self.main.query_one("#transcript", Transcript)

    @property
    def inspector(self) -> TokenInspector:
        return self.main.query_one(TokenInspector)

    @property
    def preset(self) -> Preset:
        return self.presets.get(self.preset_name) or Preset(name=self.preset_name)

    @staticmethod
    def _short(model: str) -> str:
        return Path(model).name if ("/" in model and Path(model).is_absolute()) else model

    def save_settings(self) -> None:
        try:
            config.save_settings(self.settings, self.settings_path)
        except config.SettingsNotSaved as exc:
            if str(exc) != getattr(self, "_not_saved", None):  # say it once, not per change
                self._not_saved = str(exc)
                self.notify(str(exc), severity="warning")
        except OSError as exc:
            self.notify(f"Could not save config.toml: {exc}", severity="warning")

    def _theme_changed(self, theme: Any) -> None:
        if self.settings.theme != theme.name:
            self.settings.theme = theme.name
            self.save_settings()

    def sessions(self) -> list:
        return self.store.list_sessions() if self.store is not None else []

    def model_choices(self) -> list[tuple[str, str]]:
        """(name, description) of catalog models; those not on disk say so."""
        rows = []
        for spec in catalog.all_models():
            where = "" if spec.available_offline() else " (not downloaded)"
            rows.append((spec.name, f"{spec.description}{where}"))
        return rows

    def palette_actions(self) -> list[KeyAction]:
        keymap = getattr(self, "_keymap", {})
        return [
            KeyAction(a.id, keymap.get(a.id, a.keys), a.action, a.label,
                      f"{a.help} · {keymap.get(a.id, a.keys)}")
            for a in KEY_ACTIONS
        ]

    # ------------------------------------------------------------ sessions

    def _open_initial_session(self) -> None:
        wanted = self.settings.session
        ids = {s.id for s in self.sessions()}
        self.open_session(wanted if wanted in ids else None)

    def refresh_sidebar(self) -> None:
        self.main.query_one(SessionList).set_sessions(self.sessions(), self.session_id)

    def open_session(self, session_id: str | None) -> None:
        """Show a session (None: a fresh one, stored when the first prompt is sent)."""
        if self.gen is not None and self.gen.view is not None:
            self._flush_text()
            self.gen.view = None  # the reply keeps streaming into its own session
        self.session_id = session_id
        live = self.gen if self.gen and self.gen.session_id == session_id else None
        # Reads and shows the last page of turns only: a session of any size opens at once.
        self.transcript.show_session(self.store, session_id, live.turn_id if live else None)
        if self.gen is not None and self.gen.session_id == session_id:
            self.gen.view = self.transcript.add_turn("model", self.gen.reply.text)
        self.refresh_sidebar()
        if self.settings.session != session_id:
            self.settings.session = session_id
            self.save_settings()

    @on(SessionList.OptionSelected, "#sessions")
    def _session_picked(self, event: SessionList.OptionSelected) -> None:
        if event.option.id != self.session_id:
            self.open_session(event.option.id)
        self.main.query_one(PromptArea).focus()

    def _step_session(self, step: int) -> None:
        ids = [s.id for s in self.sessions()]
        if not ids:
            return
        if self.session_id in ids:
            index = (ids.index(self.session_id) + step) % len(ids)
        else:
            index = 0 if step > 0 else len(ids) - 1
        self.open_session(ids[index])

    def action_new_session(self) -> None:
        self.open_session(None)
        self.main.query_one(PromptArea).focus()

    def action_previous_session(self) -> None:
        self._step_session(-1)

    def action_next_session(self) -> None:
        self._step_session(+1)

    def _target_session(self) -> str | None:
        """The session the sidebar highlights when it has focus, else the open one."""
        sidebar = self.main.query_one(SessionList)
        if sidebar.has_focus and sidebar.highlighted is not None:
            return sidebar.get_option_at_index(sidebar.highlighted).id
        return self.session_id

    def action_rename_session(self) -> None:
        target = self._target_session()
        if target is None or self.store is None:
            self.notify("Nothing to rename yet: send a prompt first")
            return
        session = next((s for s in self.sessions() if s.id == target), None)

        def done(title: str | None) -> None:
            if title is not None and title.strip():
                self.store.rename_session(target, title.strip())
                self.refresh_sidebar()

        self.push_screen(AskScreen("Rename session", session.title if session else ""), done)

    def action_delete_session(self) -> None:
        target = self._target_session()
        if target is None or self.store is None:
            return
        session = next((s for s in self.sessions() if s.id == target), None)
        title = (session.title or session.name or target) if session else target

        def done(yes: bool | None) -> None:
            if not yes:
                return
            if self.gen is not None and self.gen.session_id == target:
                self._stop_generation()
            self.store.delete_session(target)
            self.send(DropSession(target))
            if target == self.session_id:
                self.open_session(None)
            else:
                self.refresh_sidebar()
            self.notify(f"Deleted {title!r}")

        self.push_screen(ConfirmScreen(f"Delete session {title!r} and all its turns?",
                                       yes="Delete"), done)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.main.query_one("#sidebar")
        sidebar.display = not sidebar.display
        self.settings.sidebar = bool(sidebar.display)
        self.save_settings()

    # ------------------------------------------------------------ generating

    @on(PromptArea.Submitted)
    def _prompt_submitted(self, event: PromptArea.Submitted) -> None:
        self.submit_prompt(event.text)

    def _can_generate(self) -> bool:
        if self.store is None:
            self.notify("No sessions database: cannot write", severity="error")
            return False
        if self.model_name is None and self.loading_model is None:
            self.notify("No model is loaded: pick one with F5", severity="warning")
            return False
        return True

    def submit_prompt(self, text: str) -> None:
        """Store the user's text as a turn and ask the engine to continue the session."""
        if not self._can_generate():
            return
        if self.gen is not None:
            self._stop_generation()
        if self.session_id is None:
            session = self.store.create_session()
            self.session_id = session.id
            self.settings.session = session.id
            self.save_settings()
        self._start_generation(self.session_id, text)
        self.refresh_sidebar()

    def _start_generation(self, session_id: str, prompt: str | None = None) -> None:
        """Continue `session_id` after `prompt` (None: as it stands) on the current preset."""
        preset = self.preset
        seed = preset.seed if preset.seed is not None else self.seed_source()
        recorder = TurnRecorder(self.store, session_id, self.loading_model or self.model_name,
                                preset, seed=seed,
                                inspect_top_k=INSPECT_TOP_K if self.inspecting else 0,
                                call=self.feeder.call, wait=self.feeder.wait)
        command = recorder.start(prompt)
        self.gen = Generation(recorder, session_id, preset.name, self.clock(),
                              inspect=self.inspecting)
        if session_id == self.session_id:
            if recorder.user_turn is not None:
                self.transcript.add_turn("user", recorder.user_turn.text)
            self.gen.view = self.transcript.add_turn("model", "")
            self.transcript.anchor()
        if self.inspecting:
            self.inspector.begin(preset.method)
        self.status.set(generating=True, cancelling=False, tok_s=None, ttft=None)
        self.send(command)

    def _flush_text(self) -> None:
        """Timer, FRAME_S apart: show the text that arrived since the last frame."""
        gen = self.gen
        if gen is None or not gen.dirty:
            return
        gen.dirty = False
        if gen.inspect:
            self.inspector.flush()
        if gen.view is not None:
            gen.view.set_text(gen.reply.text)
        rate = gen.reply.rate(self.clock())
        if gen.session_id == self.session_id and rate is not None:
            self.status.set(tok_s=rate)

    def _finish(self, status: str, note: str = "", ui: bool = True) -> None:
        """End the current generation on screen (the recorder has stored it)."""
        gen = self.gen
        if gen is None:
            return
        self.gen = None
        if not ui:  # quitting: the widgets are gone
            return
        if gen.view is not None:
            gen.view.set_text(gen.reply.text, status=status, note=note)
        if gen.inspect:
            self.inspector.flush()
        self.status.set(generating=False, cancelling=False)
        self.refresh_sidebar()

    def _record(self, gen: Generation, event: Event | None) -> bool:
        """Pass `event` to the recorder (None: stop it); a store failure is a notification."""
        try:
            if event is None:
                gen.recorder.stop()
                return True
            # Only a delta's arrival time counts (for the live rate and the TTFT).
            return gen.recorder.on_event(
                event, self.clock() if isinstance(event, TextDelta) else None)
        except Exception as exc:  # noqa: BLE001 - a store failure must not kill the UI
            self.notify(f"Could not save the reply: {exc}", severity="error")
            return True

    def _stop_generation(self, notify: bool = True, ui: bool = True) -> None:
        """Cancel the current generation now and save what it wrote as cancelled."""
        gen = self.gen
        if gen is None:
            return
        self.send(Cancel(gen.request_id))
        self._record(gen, None)
        self._finish("cancelled", ui=ui)
        if ui and notify and gen.session_id != self.session_id:
            self.notify("Stopped the reply in another session (saved as cancelled)")

    def on_store_problem(self, message: StoreProblem) -> None:
        self.notify(f"Could not save the reply: {message.error}", severity="error", timeout=10)

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, ModelLoading):
            self.status.set(loading=self._short(event.name), load_fraction=event.fraction,
                            load_message=event.message)
        elif isinstance(event, ModelLoaded):
            self._model_loaded(event)
        elif isinstance(event, ModelFailed):
            self.loading_model = None
            self.status.set(loading=None, load_message="")
            kept = f"; still using {self._short(self.model_name)}" if self.model_name else ""
            self.notify(f"Could not load {event.name}: {event.error}{kept}",
                        title="Model not loaded", severity="error", timeout=15)
        elif self.compare is not None and self.compare.owns(event):
            self.compare.engine_event(event)
        elif self.gen is None or not self._record(self.gen, event):
            return  # a stale event from a generation we already stopped
        elif isinstance(event, Started):
            self._started(event)
        elif isinstance(event, TextDelta):
            self._text_delta(event)
        elif isinstance(event, Done):
            self._done(event)
        elif isinstance(event, Failed):
            self.notify(f"Generation failed: {event.error}", severity="error", timeout=10)
            self._finish("failed", note=f"✗ {event.error}")

    def _model_loaded(self, event: ModelLoaded) -> None:
        self.model_name, self.device, self.n_ctx = event.name, event.device, event.n_ctx
        if self.loading_model == event.name:
            self.loading_model = None
        self.status.set(model=self._short(event.name), device=event.device, n_ctx=event.n_ctx,
                        loading=self.loading_model and self._short(self.loading_model),
                        load_message="", context=None, reused=None, tok_s=None, ttft=None,
                        out_of_window=0)
        if self.settings.model != event.name:
            self.settings.model = event.name
            self.save_settings()

    def _started(self, event: Started) -> None:
        self.status.set(reused=event.reused_tokens, context=event.prompt_tokens,
                        out_of_window=event.window_start)
        for note in window_notices(event, self._short(self.model_name or "the model")):
            self.notify(note, severity="warning", timeout=8)

    def _text_delta(self, event: TextDelta) -> None:
        gen = self.gen
        if gen.reply.first_at is not None and gen.reply.first_at == gen.reply.last_at:
            self.status.set(ttft=gen.reply.first_at - gen.started)
        if gen.inspect and self.inspecting:
            self.inspector.add(event.text, event.token_ids, event.alternatives, event.replace)
        gen.dirty = True

    def _done(self, event: Done) -> None:
        gen = self.gen
        self.status.set(tok_s=gen.reply.tokens_per_second, ttft=event.ttft,
                        context=event.context_tokens,
                        out_of_window=event.window_start)
        self._finish(status_for(event))

    # ------------------------------------------------------------ key actions

    def action_cancel(self) -> None:
        gen = self.gen
        if gen is None or gen.cancelling:
            return
        gen.cancelling = True
        self.status.set(cancelling=True)
        self.send(Cancel(gen.request_id))  # the engine answers Done(reason="cancelled")

    def _last_reply(self) -> tuple[Any, str] | None:
        """(turn, text) of the open session's last model turn."""
        if self.gen is not None and self.gen.session_id == self.session_id:
            return None, self.gen.reply.text
        if self.session_id is None or self.store is None:
            return None
        for turn in reversed(self.store.turns(self.session_id)):
            if turn.role == "model":
                return turn, turn.text
        return None

    def action_regenerate(self) -> None:
        if self.session_id is None or not self._can_generate():
            return
        if self.gen is not None and self.gen.session_id == self.session_id:
            self._stop_generation()
        turns = self.store.turns(self.session_id)
        if not turns or turns[-1].role != "model":
            self.notify("No reply to regenerate")
            return
        self.store.delete_turn(turns[-1].id)
        self.open_session(self.session_id)
        self._start_generation(self.session_id)

    def action_continue_reply(self) -> None:
        if self.session_id is None or not self._can_generate():
            return
        if self.gen is not None:
            if self.gen.session_id == self.session_id:
                self.notify("Already writing")
                return
            self._stop_generation()
        if not self.store.turns(self.session_id):
            return
        self._start_generation(self.session_id)

    def action_copy_reply(self) -> None:
        found = self._last_reply()
        if not found or not found[1]:
            self.notify("No reply to copy")
            return
        self.copy_to_clipboard(found[1])
        self.notify(f"Copied the last reply ({len(found[1])} characters)")

    def action_toggle_inspector(self) -> None:
        """Show or hide the token inspector; the next Generate asks for alternatives or not."""
        self.inspecting = not self.inspecting
        self.inspector.display = self.inspecting
        if self.inspecting and self.gen is not None and not self.gen.inspect:
            self.inspector.begin("")  # this reply has no alternatives: say the next will

    def _compare_prompt(self) -> tuple[Segment, ...] | None:
        """The session's context plus the prompt box text (joined as a sent prompt would
        be), or the context up to its last user turn."""
        typed = self.main.query_one(PromptArea).text
        turns = self.store.turns(self.session_id) if (
            self.session_id is not None and self.store is not None) else []
        model = self.loading_model or self.model_name or ""
        if typed.strip():
            return (*context_segments(turns, model),
                    Segment(joined_prompt(turns, typed, self.preset, model)))
        last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
        if last_user is None:
            return None
        return context_segments(turns[:last_user + 1], model)

    def action_compare_presets(self) -> None:
        if self.model_name is None and self.loading_model is None:
            self.notify("No model is loaded: pick one with F5", severity="warning")
            return
        if len(self.presets) < 2:
            self.notify("Comparing needs at least two presets", severity="warning")
            return
        prompt = self._compare_prompt()
        if prompt is None:
            self.notify("Write a prompt (or open a session) to compare presets")
            return
        names = sorted(self.presets)
        chosen = [n for n in (self.preset_name, *COMPARE_DEFAULTS) if n in self.presets]
        chosen += [n for n in names if n not in chosen][:max(0, 2 - len(chosen))]
        items = [(n, n, p.description or p.summary()) for n, p in sorted(self.presets.items())]

        def picked(names: list[str] | None) -> None:
            if names:
                self._run_compare(prompt, [self.presets[n] for n in names])

        self.push_screen(ChooseManyScreen("Compare presets: pick 2 or 3", items, chosen,
                                          least=2, most=3, accept="compare"), picked)

    def _run_compare(self, prompt: tuple[Segment, ...], presets: list[Preset]) -> None:
        if self.gen is not None:
            self._stop_generation()  # the engine runs one reply at a time
        current = self.preset
        seed = current.seed if current.seed is not None else self.seed_source()
        self.compare = CompareScreen(prompt, presets, seed=seed,
                                     max_new_tokens=current.max_new_tokens,
                                     session=self.session_id)

        def closed(_: None) -> None:
            self.compare = None

        self.push_screen(self.compare, closed)

    def action_replay(self) -> None:
        if self.session_id is None or self.store is None:
            self.notify("Open a saved session to replay it")
            return
        session = next((s for s in self.sessions() if s.id == self.session_id), None)
        title = session.title if session else self.session_id
        self.push_screen(ReplayScreen(title, self.store.turns(self.session_id)))

    def action_help(self) -> None:
        keymap = getattr(self, "_keymap", {})
        rows = [(keymap.get(a.id, a.keys).replace(",", ", "), f"{a.label}: {a.help}")
                for a in KEY_ACTIONS]
        self.push_screen(HelpScreen(rows + list(_BOUND_ELSEWHERE)))

    # presets

    def set_preset(self, name: str) -> None:
        """Use preset `name` for the next generation (the cache is untouched)."""
        if name not in self.presets:
            self.notify(f"Unknown preset {name!r}", severity="warning")
            return
        self.preset_name = name
        self.status.set(preset=name)
        if self.settings.preset != name:
            self.settings.preset = name
            self.save_settings()

    def action_cycle_preset(self) -> None:
        names = sorted(self.presets)
        if not names:
            self.notify("No presets found", severity="warning")
            return
        index = names.index(self.preset_name) + 1 if self.preset_name in names else 0
        self.set_preset(names[index % len(names)])

    def action_pick_preset(self) -> None:
        items = [(n, n, p.description or p.summary()) for n, p in sorted(self.presets.items())]

        def done(name: str | None) -> None:
            if name:
                self.set_preset(name)

        self.push_screen(PickerScreen("Preset", items, self.preset_name), done)

    # models

    def load_model(self, name: str) -> None:
        """Swap the model: stops a generation, loads with progress; a failure keeps the old."""
        self._stop_generation()
        self.loading_model = name
        self.status.set(loading=self._short(name), load_fraction=0.0, load_message="")
        self.send(LoadModel(name))

    def action_cycle_model(self) -> None:
        names = [spec.name for spec in catalog.all_models() if spec.available_offline()]
        current = self.loading_model or self.model_name
        if current and current not in names:
            names.append(current)
        if len(names) < 2:
            self.notify("No other model on this machine: see `gptterm models`")
            return
        index = names.index(current) + 1 if current in names else 0
        self.load_model(names[index % len(names)])

    def action_pick_model(self) -> None:
        items = [(name, name, description) for name, description in self.model_choices()]

        def done(name: str | None) -> None:
            if name and name != (self.loading_model or self.model_name):
                self.load_model(name)

        self.push_screen(PickerScreen("Model", items, self.model_name), done)

    # themes

    def action_pick_theme(self) -> None:
        items = [(n, n, "") for n in sorted(self.available_themes) if n != "textual-ansi"]

        def done(name: str | None) -> None:
            if name:
                self.theme = name

        self.push_screen(PickerScreen("Theme", items, self.theme), done)


def make_app(model: str | None = None, preset: str | None = None, *,
             engine_factory: EngineFactory | None = None, store: Any = None,
             threads: int | None = None) -> GptTermApp:
    """Build the app (the CLI runs it; tests drive it with a fake engine and a temp store)."""
    return GptTermApp(model, preset, engine_factory=engine_factory, store=store,
                      threads=threads)
