"""The main screen: sessions sidebar, transcript, token inspector, prompt, status bar, footer.

The screen owns its widgets and everything done to a session: opening and stepping
through sessions, sending a prompt, the reply streaming in (`Generation`), redoing,
continuing, copying, searching, exporting, and the session's own model, preset and
settings. The app keeps what is app-wide (the engine and its model, the store,
config.toml, themes, the palette) and routes the engine's reply events here.

A session remembers its model, preset and settings (the store's `Session.model`,
`.preset`, `.sampling`): the model and preset its last reply was written with (written by
`TurnRecorder`, so picking a model just before Ctrl+N does not rebind the session left),
and the settings set here. Opening a
session switches to its model, says so, and `undo_model_switch` goes back. Every status
figure is the open session's: read from its newest model turn when it opens, replaced
live while a reply streams into it.

Switching sessions while a reply streams: the reply keeps streaming into its own
session (the store writes it there); switching back shows it live. Starting another
generation, loading a model, deleting the session or quitting stops it, saved as
cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, TextArea

from gptterm import catalog
from gptterm.presets import Preset
from gptterm.protocol import (
    STEP_METHODS,
    Cancel,
    Candidates,
    CountTokens,
    DropSession,
    Done,
    Event,
    Failed,
    Pick,
    Reply,
    Segment,
    Started,
    TextDelta,
    TokenCount,
    new_request_id,
)
from gptterm.remote import is_remote
from gptterm.recorder import (
    TurnRecorder, context_segments, joined_prompt, stats_for, status_for, window_notices,
    with_sampling,
)
from gptterm.store import exporting, paging
from gptterm.ui.keymap import KEY_ACTIONS
from gptterm.ui.labels import short_model
from gptterm.ui.screens.compare import CompareScreen, Kept
from gptterm.ui.screens.dialogs import AskScreen, ChooseManyScreen, ConfirmScreen, PickerScreen
from gptterm.ui.screens.edit import EditTextScreen
from gptterm.ui.screens.export import ExportScreen
from gptterm.ui.screens.replay import ReplayScreen
from gptterm.ui.screens.search import SearchScreen
from gptterm.ui.screens.settings import SessionSettingsScreen
from gptterm.ui.screens.stages import ReplyStages, StageScreen
from gptterm.ui.screens.turns import TurnPickerScreen
from gptterm.ui.widgets.beams import BeamPanel
from gptterm.ui.widgets.inspector import TokenInspector
from gptterm.ui.widgets.prompt import PromptArea
from gptterm.ui.widgets.sessions import SessionList
from gptterm.ui.widgets.status import NO_FIGURES, StatusBar, figures_of, reused_figure
from gptterm.ui.widgets.steps import StepPanel
from gptterm.ui.widgets.transcript import FRAME_S, Transcript, TurnView

if TYPE_CHECKING:
    from gptterm.ui.app import GptTermApp

INSPECT_TOP_K = 5  # candidates per token the token inspector asks for
COMPARE_DEFAULTS = ("greedy", "top-p")  # compared with the current preset unless changed
NARROW_COLS = 80  # below this the sidebar hides unless asked for (Ctrl+S)
COUNT_DELAY_S = 0.25  # the prompt's token count is asked for this long after typing stops
OPEN_FOLDER = "\x00folder"  # the model picker's "a folder or server…" row (no model's name)


class MainFooter(Footer):
    """The footer; under NARROW_COLS it leaves out keys that still work but need room."""

    WIDE_ONLY = frozenset({"cycle_preset", "settings", "toggle_steps"})

    def compose(self) -> ComposeResult:
        narrow = self.app.size.width < NARROW_COLS
        for widget in super().compose():
            if narrow and getattr(widget, "action", None) in self.WIDE_ONLY:
                widget.display = False
            yield widget


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


class MainScreen(Screen[None]):
    """Sidebar, transcript, prompt, status bar and footer; the key bindings of `KEY_ACTIONS`."""

    BINDINGS = [Binding(a.keys, a.target, a.footer, show=a.show, id=a.id) for a in KEY_ACTIONS]

    if TYPE_CHECKING:
        @property
        def app(self) -> GptTermApp: ...

    def __init__(self, preset_name: str) -> None:
        super().__init__()
        self.session_id: str | None = None  # None: a new session not stored yet
        self.preset_name = preset_name
        self.gen: Generation | None = None
        self.inspecting = False  # token inspector on: every Generate asks for alternatives
        self.beams_wanted = True  # the beam view shows with beam search replies (Alt+B)
        self.stepping = False  # step mode on: every Generate waits for a pick at each token
        self.compare: CompareScreen | None = None  # open comparison: gets its engine events
        self.draft_sampling: dict[str, Any] = {}  # settings of the session not stored yet
        self.sidebar_wanted: bool | None = None  # Ctrl+S this run (None: config, width)
        self._undo: tuple[str, str] | None = None  # (session, model before its switch)
        self._count_timer: Timer | None = None
        self._count_request = ""
        self._memory_request = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                yield Label("Sessions", id="sidebar-title")
                yield SessionList(clock=self.app.wall_clock, id="sessions")
            with Vertical(id="body"):
                yield Transcript(id="transcript")
                yield TokenInspector(INSPECT_TOP_K, id="inspector")
                yield BeamPanel(id="beams")
                yield StepPanel(id="steps")
                yield PromptArea(id="prompt", placeholder="Write a beginning; Enter sends",
                                 history=self.prompt_history)
        yield StatusBar(id="status")
        yield MainFooter(compact=True)

    def on_mount(self) -> None:
        self.app.main_mounted(self)
        self.status.set(preset=self.preset_name)
        self._open_initial_session()
        self.prompt.focus()
        self.set_interval(FRAME_S, self._flush_text)

    # ------------------------------------------------------------ widgets

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def transcript(self) -> Transcript:
        return self.query_one("#transcript", Transcript)

    @property
    def inspector(self) -> TokenInspector:
        return self.query_one(TokenInspector)

    @property
    def beam_panel(self) -> BeamPanel:
        return self.query_one(BeamPanel)

    @property
    def steps(self) -> StepPanel:
        return self.query_one(StepPanel)

    @property
    def prompt(self) -> PromptArea:
        return self.query_one(PromptArea)

    @property
    def sidebar(self) -> SessionList:
        return self.query_one(SessionList)

    @property
    def store(self) -> Any:
        return self.app.store

    def on_resize(self) -> None:
        self._place_sidebar()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel works (and shows) only while a reply is written; Continue, which has
        nothing to add to a reply being written, gives it its place in the footer."""
        if action == "cancel":
            return self.gen is not None
        if action == "continue_reply" and self.gen is not None:
            return self.gen.session_id != self.session_id
        return True

    def _place_sidebar(self) -> None:
        wanted = self.app.settings.sidebar if self.sidebar_wanted is None else self.sidebar_wanted
        narrow = self.size.width < NARROW_COLS and self.sidebar_wanted is None
        self.query_one("#sidebar").display = wanted and not narrow

    # ------------------------------------------------------------ the session's choices

    @property
    def session(self) -> Any:
        """The open session's stored record (None for a new one)."""
        if self.session_id is None or self.store is None:
            return None
        try:
            return self.store.get_session(self.session_id)
        except Exception:  # noqa: BLE001 - deleted by another process: treat as new
            return None

    @property
    def sampling(self) -> dict[str, Any]:
        """The open session's own settings (over its preset)."""
        session = self.session
        return dict(session.sampling) if session is not None else dict(self.draft_sampling)

    @property
    def preset(self) -> Preset:
        """The preset a reply in this session uses: its preset with its own settings."""
        base = self.app.presets.get(self.preset_name) or Preset(name=self.preset_name)
        return with_sampling(base, self.sampling)

    def set_preset(self, name: str) -> None:
        """Use preset `name` for this session from now on (the cache is untouched)."""
        self.app.reload_presets()
        if name not in self.app.presets:
            self.app.notify(f"Unknown preset {name!r}", severity="warning")
            return
        self.preset_name = name
        self.status.set(preset=name)
        self.app.remember_default(preset=name)

    def choose_model(self, name: str) -> None:
        """Load `name` unless it is the one in use (the session takes it with its next reply)."""
        if name == self.app.current_model:
            return
        self._stop_generation()
        self._undo = None
        self.app.load_model(name)

    def _follow_session(self, session: Any, startup: bool = False) -> None:
        """Take the opened session's preset and model (a model switch is announced)."""
        if session is None:
            return
        if startup and self.app.preset_explicit:
            self.set_preset(self.preset_name)  # the session keeps it from its next reply
        elif session.preset and session.preset in self.app.presets:
            self.preset_name = session.preset
            self.status.set(preset=session.preset)
        wanted, current = session.model, self.app.current_model
        if not wanted or wanted == current or (startup and self.app.model_explicit):
            return
        if not is_remote(wanted) and not catalog.resolve(wanted).available_offline():
            self.app.notify(f"This session was written with {short_model(wanted)}, which is "
                            f"not on this machine: continuing with "
                            f"{short_model(current) or 'the default model'}",
                            severity="warning", timeout=8)
            return
        if startup and current is None:
            self.app.requested_model = wanted  # nothing loaded yet: load this one first
            return
        self._stop_generation()
        self._undo = (session.id, current) if current else None
        self.app.load_model(wanted)
        back = (f" · {self.app.key_for('undo_model_switch')} goes back to "
                f"{short_model(current)}") if current else ""
        self.app.notify(f"Switched to {short_model(wanted)}, this session's model{back}",
                        timeout=8)

    def action_undo_model_switch(self) -> None:
        if self._undo is None or self._undo[0] != self.session_id:
            self.app.notify("No model switch to undo")
            return
        _, previous = self._undo
        self._undo = None
        self.choose_model(previous)
        self.app.notify(f"Back to {short_model(previous)}: this session's next reply uses it")

    # ------------------------------------------------------------ sessions

    def _open_initial_session(self) -> None:
        wanted = self.app.settings.session
        ids = {s.id for s in self.app.sessions()}
        self.open_session(wanted if wanted in ids else None, startup=True)

    def refresh_sidebar(self) -> None:
        self.sidebar.set_sessions(self.app.sessions(), self.session_id)

    def open_session(self, session_id: str | None, *, startup: bool = False) -> None:
        """Show a session (None: a fresh one, stored when the first prompt is sent)."""
        if self.gen is not None and self.gen.view is not None:
            self._flush_text()
            self.gen.view = None  # the reply keeps streaming into its own session
        self.session_id = session_id
        self.draft_sampling = {}
        self._follow_session(self.session, startup=startup)
        self.reload()
        self.app.remember_default(session=session_id)
        self.refresh_bindings()
        self._ask_count()

    def reload(self) -> None:
        """Show the open session as stored now (after its path changed: an alternative
        chosen, a turn edited, an undo), with its figures and memory size."""
        live = self.gen if self.gen and self.gen.session_id == self.session_id else None
        # Reads and shows the last page of turns only: a session of any size opens at once.
        self.transcript.show_session(self.store, self.session_id,
                                     live.turn_id if live else None)
        if live is not None:
            live.view = self.transcript.add_turn("model", live.reply.text,
                                                 seed=live.recorder.seed)
        self.show_figures()
        self.refresh_sidebar()
        self._ask_memory_size()

    def show_figures(self) -> None:
        """The status figures of the open session: its live reply's, else its newest one's."""
        gen = self.gen
        if gen is not None and gen.session_id == self.session_id and gen.reply.started:
            started = gen.reply.started
            end = gen.reply.end
            first = gen.reply.first_at
            # The window may slide while the reply is written: Done says where it ended.
            window_start = end.window_start if isinstance(end, Done) else started.window_start
            self.status.set(
                generating=end is None, cancelling=gen.cancelling,
                tok_s=gen.reply.tokens_per_second if end else gen.reply.rate(self.app.clock()),
                ttft=end.ttft if isinstance(end, Done) else (
                    first - gen.started if first is not None else None),
                reused=reused_figure(started.reused_tokens),
                context=end.context_tokens if isinstance(end, Done) else started.prompt_tokens,
                out_of_window=window_start, seed=gen.recorder.seed)
            return
        generating = gen is not None and gen.session_id == self.session_id
        if self.session_id is None or self.store is None:
            self.status.set(generating=generating, cancelling=False, **NO_FIGURES)
            return
        last = paging.last_reply(self.store, self.session_id)
        self.status.set(generating=generating, cancelling=False, **figures_of(last.turn))

    @on(SessionList.OptionSelected, "#sessions")
    def _session_picked(self, event: SessionList.OptionSelected) -> None:
        if event.option.id != self.session_id:
            self.open_session(event.option.id)
        self.prompt.focus()

    def _step_session(self, step: int) -> None:
        self.refresh_sidebar()
        target = self.sidebar.step(self.session_id, step)
        if target is not None:
            self.open_session(target)

    def action_new_session(self) -> None:
        self.open_session(None)
        self.prompt.focus()

    def action_previous_session(self) -> None:
        self._step_session(-1)

    def action_next_session(self) -> None:
        self._step_session(+1)

    def _target_session(self) -> str | None:
        """The session the sidebar highlights when it has focus, else the open one."""
        sidebar = self.sidebar
        if sidebar.has_focus and sidebar.highlighted is not None:
            return sidebar.get_option_at_index(sidebar.highlighted).id
        return self.session_id

    def _session_record(self, session_id: str) -> Any:
        return next((s for s in self.app.sessions() if s.id == session_id), None)

    def action_rename_session(self) -> None:
        target = self._target_session()
        if target is None or self.store is None:
            self.app.notify("Nothing to rename yet: send a prompt first")
            return
        session = self._session_record(target)

        def done(title: str | None) -> None:
            if title is not None and title.strip():
                self.store.rename_session(target, title.strip())
                self.refresh_sidebar()

        self.app.push_screen(AskScreen("Rename session", session.title if session else ""), done)

    def action_delete_session(self) -> None:
        target = self._target_session()
        if target is None or self.store is None:
            self.app.notify("Nothing to delete: this session is not saved yet")
            return
        session = self._session_record(target)
        title = session.label if session else target

        def done(yes: bool | None) -> None:
            if not yes:
                return
            if self.gen is not None and self.gen.session_id == target:
                self._stop_generation()
            self.store.delete_session(target)
            self.app.send(DropSession(target))
            if target == self.session_id:
                self.open_session(None)
            else:
                self.refresh_sidebar()
            self.app.notify(f"Deleted {title!r}")

        self.app.push_screen(ConfirmScreen(f"Delete session {title!r} and all its turns?",
                                           yes="Delete"), done)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one("#sidebar")
        self.sidebar_wanted = not sidebar.display
        sidebar.display = self.sidebar_wanted
        self.app.remember_default(sidebar=self.sidebar_wanted)

    # ------------------------------------------------------------ the prompt

    def prompt_history(self) -> list[str]:
        """Earlier prompts, oldest first: every session's, then this session's (newest last)."""
        if self.store is None:
            return []
        mine = self.store.user_prompts(self.session_id) if self.session_id else []
        others = [p for p in self.store.user_prompts(None) if p not in set(mine)]
        return others + mine

    @on(PromptArea.Submitted)
    def _prompt_submitted(self, event: PromptArea.Submitted) -> None:
        self.submit_prompt(event.text)

    @on(TextArea.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        if self._count_timer is not None:
            self._count_timer.stop()
        self._count_timer = self.set_timer(COUNT_DELAY_S, self._ask_count)

    def _ask_count(self) -> None:
        """Ask the engine how many tokens the prompt box holds (answered by `TokenCount`)."""
        text = self.prompt.text
        model = self.app.current_model
        if not text or model is None:
            self.prompt.border_title = ""
            return
        turns = paging.turns_before(self.store, self.session_id, 1) if (
            self.store is not None and self.session_id is not None) else []
        joined = joined_prompt(turns, text, self.preset, model)
        self._count_request = new_request_id()
        self.app.send(CountTokens(self._count_request, joined))

    def _ask_memory_size(self) -> None:
        """Ask how many tokens the pinned memory takes of the window (shown in the bar)."""
        session = self.session
        memory = session.memory if session is not None else ""
        self.status.set(memory=None)
        self._memory_request = ""
        if memory and self.app.current_model is not None:
            self._memory_request = new_request_id()
            self.app.send(CountTokens(self._memory_request, memory))

    def token_count(self, event: TokenCount) -> None:
        if event.request_id == self._memory_request:
            self.status.set(memory=event.n_tokens)
            return
        if event.request_id != self._count_request or not self.prompt.text:
            return
        used = (self.status.info.context or 0) + event.n_tokens
        room = event.n_ctx - used
        left = (f"{room} left in the {event.n_ctx}-token window" if room >= 0 else
                f"the oldest {-room} slide out of the {event.n_ctx}-token window")
        self.prompt.border_title = f"{event.n_tokens} tokens · {left}"

    # ------------------------------------------------------------ generating

    def _can_generate(self) -> bool:
        if self.store is None:
            self.app.notify("No sessions database: cannot write", severity="error")
            return False
        if self.app.current_model is None:
            self.app.notify("No model is loaded: pick one with F5", severity="warning")
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
            if self.draft_sampling:
                self.store.set_session_sampling(session.id, self.draft_sampling)
            self.app.remember_default(session=session.id)
        self._start_generation(self.session_id, text)
        self.prompt.border_title = ""
        self.refresh_sidebar()

    def _start_generation(self, session_id: str, prompt: str | None = None, *,
                          alternative_of: int | None = None) -> None:
        """Continue `session_id` after `prompt` (None: as it stands), or write the reply
        `alternative_of` again as its alternative, with this session's preset and settings."""
        preset = self.preset
        if self.stepping and preset.method not in STEP_METHODS:
            self.app.notify(f"Step mode needs a greedy or sampling preset, not {preset.method}: "
                            f"pick another preset or turn it off "
                            f"({self.app.key_for('toggle_steps')})", severity="warning")
            self.reload()
            return
        seed = preset.seed if preset.seed is not None else self.app.seed_source()
        recorder = TurnRecorder(self.store, session_id, self.app.current_model, preset,
                                seed=seed,
                                inspect_top_k=INSPECT_TOP_K if self.inspecting else 0,
                                call=self.app.feeder.call, wait=self.app.feeder.wait)
        command = replace(recorder.start(prompt, alternative_of=alternative_of),
                          step_mode=self.stepping)
        self.gen = Generation(recorder, session_id, preset.name, self.app.clock(),
                              inspect=self.inspecting)
        self.refresh_bindings()
        if session_id == self.session_id:
            if recorder.user_turn is not None:
                self.transcript.add_turn("user", recorder.user_turn.text)
            self.gen.view = self.transcript.add_turn("model", "", seed=seed)
            self.transcript.anchor()
        if self.inspecting:
            self.inspector.begin(preset.method)
        if preset.method == "beam":
            self.beam_panel.begin(preset.length_penalty)
        else:
            self.beam_panel.clear()
        self._show_beams()
        self.status.set(generating=True, cancelling=False, **{**NO_FIGURES, "seed": seed})
        self.app.send(command)

    def _flush_text(self) -> None:
        """Timer, FRAME_S apart: show the text that arrived since the last frame."""
        gen = self.gen
        if gen is None or not gen.dirty:
            return
        gen.dirty = False
        if gen.inspect:
            self.inspector.flush()
        self.beam_panel.flush()
        if gen.view is not None:
            gen.view.set_text(gen.reply.text)
        rate = gen.reply.rate(self.app.clock())
        if gen.session_id == self.session_id and rate is not None:
            self.status.set(tok_s=rate)

    def _finish(self, status: str, note: str = "", ui: bool = True) -> None:
        """End the current generation on screen (the recorder has stored it)."""
        gen = self.gen
        if gen is None:
            return
        if ui and gen.session_id == self.session_id:
            self.show_figures()  # the ended reply's final figures, while `gen` still has them
        self.gen = None
        if not ui:  # quitting: the widgets are gone
            return
        if self.steps.display:
            self.steps.clear()
            self.prompt.focus()
        self.refresh_bindings()
        if gen.view is not None:
            if gen.recorder.alternative_of is not None and gen.turn_id is not None:
                n = len(self.store.alternatives(gen.turn_id))
                gen.view.alternative = (n, n)  # the newest of the reply's versions
            gen.view.set_text(gen.reply.text, status=status, note=note)
        if gen.inspect:
            self.inspector.flush()
        if self.beam_panel.active:
            self.beam_panel.end()
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
                event, self.app.clock() if isinstance(event, TextDelta) else None)
        except Exception as exc:  # noqa: BLE001 - a store failure must not kill the UI
            self.app.notify(f"Could not save the reply: {exc}", severity="error")
            return True

    def _stop_generation(self, notify: bool = True, ui: bool = True) -> None:
        """Cancel the current generation now and save what it wrote as cancelled."""
        gen = self.gen
        if gen is None:
            return
        self.app.send(Cancel(gen.request_id))
        self._record(gen, None)
        self._finish("cancelled", ui=ui)
        if ui and notify and gen.session_id != self.session_id:
            self.app.notify("Stopped the reply in another session (saved as cancelled)")

    def engine_event(self, event: Event) -> None:
        """A request's event from the engine (the app routes model events itself)."""
        if isinstance(event, TokenCount):
            self.token_count(event)
        elif self.compare is not None and self.compare.owns(event):
            self.compare.engine_event(event)
        elif self.gen is None or not self._record(self.gen, event):
            return  # a stale event from a generation we already stopped
        elif isinstance(event, Started):
            self._started(event)
        elif isinstance(event, TextDelta):
            self._text_delta(event)
        elif isinstance(event, Candidates):
            self._flush_text()  # the reply so far, then its next token's candidates
            self.steps.show(event)
        elif isinstance(event, Done):
            self._finish(status_for(event))
        elif isinstance(event, Failed):
            self.app.notify(f"Generation failed: {event.error}", severity="error", timeout=10)
            self._finish("failed", note=f"✗ {event.error}")

    def _started(self, event: Started) -> None:
        if self.gen is not None and self.gen.session_id == self.session_id:
            self.show_figures()
        pinned = bool(self.gen is not None and self.gen.recorder.memory)
        for note in window_notices(event, short_model(self.app.current_model) or "the model",
                                   pinned):
            self.app.notify(note, severity="warning", timeout=8)

    def _text_delta(self, event: TextDelta) -> None:
        gen = self.gen
        first = gen.reply.first_at is not None and gen.reply.first_at == gen.reply.last_at
        if first and gen.session_id == self.session_id:
            self.status.set(ttft=gen.reply.first_at - gen.started)
        if gen.inspect and self.inspecting:
            self.inspector.add(event.text, event.token_ids, event.alternatives, event.replace,
                               event.distribution)
        self.beam_panel.add(event.beams)
        gen.dirty = True

    def model_changed(self) -> None:
        """The engine's model changed: the open session's figures and count are redone."""
        self.show_figures()
        self._ask_count()
        self._ask_memory_size()

    # ------------------------------------------------------------ key actions

    def action_cancel(self) -> None:
        gen = self.gen
        if gen is None or gen.cancelling:
            return
        gen.cancelling = True
        self.status.set(cancelling=True)
        self.app.send(Cancel(gen.request_id))  # the engine answers Done(reason="cancelled")

    def action_regenerate(self) -> None:
        if self.session_id is None or not self.store.turns(self.session_id):
            self.app.notify("Nothing to write again yet: send a prompt first")
            return
        if not self._can_generate():
            return
        if self.gen is not None and self.gen.session_id == self.session_id:
            self._stop_generation()
        turns = self.store.turns(self.session_id)
        if turns[-1].role != "model":
            self.app.notify("No reply to write again: Enter sends the prompt")
            return
        # The old reply stays, as an alternative (Alt+Left/Right flip between them); the
        # new one takes its place on screen.
        views = self.transcript.views
        if views and views[-1].role == "model":
            views[-1].remove()
        self._start_generation(self.session_id, alternative_of=turns[-1].id)

    def action_continue_reply(self) -> None:
        if self.session_id is None or not self.store.turns(self.session_id):
            self.app.notify("Nothing to continue yet: send a prompt first")
            return
        if not self._can_generate():
            return
        if self.gen is not None:
            if self.gen.session_id == self.session_id:
                self.app.notify("Already writing")
                return
            self._stop_generation()
        self._start_generation(self.session_id)

    def last_reply_text(self) -> str:
        """The open session's last reply as the screen shows it: with its continuations."""
        if self.session_id is None or self.store is None:
            return ""
        live = self.gen if self.gen is not None and self.gen.session_id == self.session_id \
            else None
        stored = paging.last_reply(self.store, self.session_id,
                                   skip_id=live.turn_id if live else None)
        if live is None:
            return stored.text
        return (stored.text if live.recorder.user_turn is None else "") + live.reply.text

    def action_copy_reply(self) -> None:
        text = self.last_reply_text()
        if not text:
            self.app.notify("No reply to copy")
            return
        self.app.copy_to_clipboard(text)
        self.app.notify(f"Copied the last reply ({len(text)} characters)")

    def action_copy_turn(self) -> None:
        if self.session_id is None or self.store is None:
            self.app.notify("No turns to copy: send a prompt first")
            return
        turns = self.store.turns(self.session_id)
        rows = [(t.id, t.role, t.text) for t in turns]
        by_id = {t.id: t.text for t in turns}

        def done(turn_id: int | None) -> None:
            if turn_id is not None and turn_id in by_id:
                self.app.copy_to_clipboard(by_id[turn_id])
                self.app.notify(f"Copied the turn ({len(by_id[turn_id])} characters)")

        self.app.push_screen(TurnPickerScreen(rows, "Copy a turn"), done)

    # alternatives, edits, branches, memory, undo

    def _idle_session(self, what: str) -> bool:
        """Whether the open session is saved and not being written to (else say why)."""
        if self.session_id is None or self.store is None or not self.store.turns(
                self.session_id):
            self.app.notify(f"Nothing to {what} yet: send a prompt first")
            return False
        if self.gen is not None and self.gen.session_id == self.session_id:
            self.app.notify(f"A reply is being written: Esc stops it, then {what}")
            return False
        return True

    def _flip(self, step: int) -> None:
        if not self._idle_session("flip through"):
            return
        last = self.store.turns(self.session_id)[-1]
        versions = self.store.alternatives(last.id)
        if len(versions) < 2:
            self.app.notify("This reply has no alternatives: Ctrl+R writes one")
            return
        at = next(i for i, t in enumerate(versions) if t.id == last.id)
        chosen = (at + step) % len(versions)
        self.store.choose(versions[chosen].id)
        self.reload()
        self.app.notify(f"{'Reply' if last.role == 'model' else 'Prompt'} "
                        f"{chosen + 1}/{len(versions)}: the next turn continues from it",
                        timeout=3)

    def action_previous_alternative(self) -> None:
        self._flip(-1)

    def action_next_alternative(self) -> None:
        self._flip(+1)

    def _pick_turn(self, title: str, then: Callable[[Any], None]) -> None:
        """Let the user pick a turn of the open session's path, then call `then(turn)`."""
        turns = self.store.turns(self.session_id)
        by_id = {t.id: t for t in turns}

        def done(turn_id: int | None) -> None:
            if turn_id in by_id:
                then(by_id[turn_id])

        self.app.push_screen(TurnPickerScreen([(t.id, t.role, t.text) for t in turns], title),
                             done)

    def action_edit_turn(self) -> None:
        if not self._idle_session("edit"):
            return

        def edit(turn: Any) -> None:
            def done(text: str | None) -> None:
                if text is None or text == turn.text:
                    return
                self.store.edit_turn(turn.id, text)
                self.reload()
                later = "; the turns after the old version stay with it" if (
                    turn.index < len(self.store.turns(self.session_id))) else ""
                self.app.notify(f"Edited (the old text is kept as an alternative{later})")

            self.app.push_screen(EditTextScreen(f"Edit the {turn.role}'s turn", turn.text,
                                                "the old text is kept"), done)

        self._pick_turn("Edit a turn", edit)

    def action_branch(self) -> None:
        if not self._idle_session("branch"):
            return

        def branch(turn: Any) -> None:
            try:
                new = self.store.branch(self.session_id, turn.index)
            except Exception as exc:  # noqa: BLE001 - one line, nothing changed
                self.app.notify(str(exc), severity="error")
                return
            self.open_session(new.id)
            self.app.notify(f"A new session holding the turns up to there: {new.label}")

        self._pick_turn("Branch: a new session with the turns up to", branch)

    def action_memory(self) -> None:
        if self.session_id is None or self.store is None:
            self.app.notify("Send a prompt first: memory belongs to a saved session")
            return
        session = self.session

        def done(text: str | None) -> None:
            if text is None:
                return
            self.store.set_memory(self.session_id, text.strip() and text)
            self._ask_memory_size()
            self.app.notify("Pinned memory set: it opens the context of every reply" if
                            text.strip() else "Pinned memory cleared")

        self.app.push_screen(EditTextScreen(
            "Pinned memory: always at the start of the context, never cut by the window",
            session.memory if session is not None else "", "it counts against the window"),
            done)

    def action_undo(self) -> None:
        if self.session_id is None or self.store is None:
            self.app.notify("Nothing to undo")
            return
        if self.gen is not None and self.gen.session_id == self.session_id:
            self.app.notify("A reply is being written: Esc stops it first")
            return
        try:
            what = self.store.undo(self.session_id)
        except Exception as exc:  # noqa: BLE001 - "nothing to undo", one line
            self.app.notify(str(exc))
            return
        self.reload()
        self.app.notify(f"Undone: {what}")

    def action_toggle_steps(self) -> None:
        """Step mode on or off; it applies from the next reply."""
        self.stepping = not self.stepping
        self.app.notify("Step mode on: the next replies wait for your pick at each token "
                        "(1-9, Enter takes the sampler's)" if self.stepping else
                        "Step mode off")

    @on(StepPanel.Picked)
    def _step_picked(self, event: StepPanel.Picked) -> None:
        """Answer the waiting step; a pick other than the draw starts a new version."""
        gen = self.gen
        if gen is None or event.candidates.request_id != gen.request_id:
            return
        if event.differs:
            try:
                gen.recorder.hand_pick(event.candidates.position, event.candidates.drawn,
                                       event.drawn_text)
            except Exception as exc:  # noqa: BLE001 - a store failure must not kill the UI
                self.app.notify(f"Could not save the reply: {exc}", severity="error")
        self.app.send(Pick(gen.request_id, event.token_id))

    def action_toggle_inspector(self) -> None:
        """Show or hide the token inspector; the next Generate asks for alternatives or not."""
        self.inspecting = not self.inspecting
        self.inspector.display = self.inspecting
        if self.inspecting and self.gen is not None and not self.gen.inspect:
            self.inspector.begin("")  # this reply has no alternatives: say the next will
        self._show_beams()

    def action_toggle_beams(self) -> None:
        """Show or hide the beam view of beam search replies."""
        self.beams_wanted = not self.beams_wanted
        self._show_beams()
        if self.beams_wanted and not self.beam_panel.active:
            self.app.notify("The beams show with the next beam search reply "
                            "(a preset with method = \"beam\")")

    def _show_beams(self) -> None:
        """The beam view, while it holds a beam reply's beams and is wanted, takes the token
        inspector's place (a beam search has no per-token candidates to show)."""
        shown = self.beams_wanted and self.beam_panel.active
        self.beam_panel.display = shown
        self.inspector.display = self.inspecting and not shown

    def action_stages(self) -> None:
        """The stage panel on the open session's replies, the last one first (the reply
        being written follows its events; the others are read from the store)."""
        if self.session_id is None or self.store is None:
            self.app.notify("No replies yet: send a prompt first")
            return
        replies = [t.id for t in self.store.turns(self.session_id) if t.role == "model"]
        gen = self.gen if self.gen is not None and self.gen.session_id == self.session_id \
            else None
        if gen is not None and gen.turn_id not in replies:
            replies.append(gen.turn_id)
        if not replies:
            self.app.notify("No replies yet: send a prompt first")
            return

        def loader(n: int, turn_id: int | None) -> Callable[[], ReplyStages]:
            label = f"reply {n} of {len(replies)}"
            if gen is not None and turn_id == gen.turn_id:
                return lambda: ReplyStages(label, tuple(gen.recorder.inspected),
                                           gen.recorder.inspect_top_k, live=self.gen is gen)

            def stored() -> ReplyStages:
                top_k, tokens = self.store.turn_inspect(turn_id) or (0, ())
                return ReplyStages(label, tokens, top_k)

            return stored

        self.app.push_screen(StageScreen([loader(n, t) for n, t in enumerate(replies, 1)]))

    def action_settings(self) -> None:
        defaults = {k: v for k, v in (self.app.presets.get(self.preset_name) or
                                      Preset()).values().items()}
        sampling = self.sampling

        def done(result: dict | None) -> None:
            if result is None:
                return
            if self.session_id is None or self.store is None:
                self.draft_sampling = dict(result)
            else:
                try:
                    self.store.set_session_sampling(self.session_id, result)
                except Exception as exc:  # noqa: BLE001 - one line, nothing changed
                    self.app.notify(str(exc), severity="error")
                    return
            said = ", ".join(f"{k}={v}" for k, v in result.items()) or "the preset's values"
            self.app.notify(f"This session now uses {said}")
            self._ask_count()

        self.app.push_screen(SessionSettingsScreen({**defaults, **sampling}, defaults), done)

    def action_search(self) -> None:
        if self.store is None:
            self.app.notify("No sessions database to search", severity="error")
            return

        def done(hit: tuple[str, int] | None) -> None:
            if hit is None:
                return
            session_id, turn_id = hit
            if session_id != self.session_id:
                self.open_session(session_id)
            self.transcript.reveal(turn_id)

        self.app.push_screen(SearchScreen(self.store.search), done)

    def export_text(self, fmt: str) -> str:
        """The open session in `fmt`: md, json (to import again) or story (the plain text)."""
        if fmt == "json":
            return json.dumps(self.store.export_json(self.session_id), ensure_ascii=False,
                              indent=2) + "\n"
        if fmt == "story":
            return exporting.story(self.store.turns(self.session_id))
        return self.store.export_markdown(self.session_id)

    def action_export(self) -> None:
        session = self.session
        if session is None:
            self.app.notify("Nothing to export yet: send a prompt first")
            return

        def done(path: Path | None) -> None:
            if path is not None:
                self.app.notify(f"Exported to {path}")

        self.app.push_screen(ExportScreen(session.label, Path.cwd(), self.export_text), done)

    def _compare_prompt(self) -> tuple[Segment, ...] | None:
        """The session's context plus the prompt box text (joined as a sent prompt would
        be), or the context up to its last user turn."""
        typed = self.prompt.text
        turns = self.store.turns(self.session_id) if (
            self.session_id is not None and self.store is not None) else []
        model = self.app.current_model or ""
        if typed.strip():
            return (*context_segments(turns, model),
                    Segment(joined_prompt(turns, typed, self.preset, model)))
        last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
        if last_user is None:
            return None
        return context_segments(turns[:last_user + 1], model)

    def action_compare_presets(self) -> None:
        if self.app.current_model is None:
            self.app.notify("No model is loaded: pick one with F5", severity="warning")
            return
        presets = self.app.reload_presets()
        if len(presets) < 2:
            self.app.notify("Comparing needs at least two presets", severity="warning")
            return
        prompt = self._compare_prompt()
        if prompt is None:
            self.app.notify("Write a prompt (or open a session) to compare presets")
            return
        names = sorted(presets)
        chosen = [n for n in (self.preset_name, *COMPARE_DEFAULTS) if n in presets]
        chosen += [n for n in names if n not in chosen][:max(0, 2 - len(chosen))]
        items = [(n, n, p.description or p.summary()) for n, p in sorted(presets.items())]

        def picked(names: list[str] | None) -> None:
            if names:
                self._run_compare(prompt, [presets[n] for n in names])

        self.app.push_screen(ChooseManyScreen("Compare presets: pick 2 or 3", items, chosen,
                                              least=2, most=3, accept="compare"), picked)

    def _run_compare(self, prompt: tuple[Segment, ...], presets: list[Preset]) -> None:
        if self.gen is not None:
            self._stop_generation()  # the engine runs one reply at a time
        current = self.preset
        seed = current.seed if current.seed is not None else self.app.seed_source()
        self.compare = CompareScreen(prompt, presets, seed=seed,
                                     max_new_tokens=current.max_new_tokens,
                                     session=self.session_id, send=self.app.send,
                                     clock=self.app.clock)

        typed = self.prompt.text if self.prompt.text.strip() else None

        def closed(kept: Kept | None) -> None:
            self.compare = None
            if kept is not None:
                self._keep_compared(kept, typed)

        self.app.push_screen(self.compare, closed)

    def _keep_compared(self, kept: Kept, typed: str | None) -> None:
        """Store a kept comparison column: after the typed prompt (stored too), else as a
        new version of the reply to the session's last prompt."""
        if self.session_id is None:
            self.session_id = self.store.create_session().id
            self.app.remember_default(session=self.session_id)
        turns = self.store.turns(self.session_id)
        model = self.app.current_model or ""
        fields = {"model": model, "preset": kept.preset.values(), "seed": kept.seed,
                  "token_ids": list(kept.reply.token_ids), "stats": stats_for(kept.reply)}
        if typed is not None:
            self.store.add_turn(self.session_id, "user", joined_prompt(
                turns, typed, kept.preset, model))
            self.store.add_turn(self.session_id, "model", kept.reply.text, **fields)
            self.prompt.clear()
        else:
            last_user = max(i for i, t in enumerate(turns) if t.role == "user")
            after = turns[last_user + 1] if last_user + 1 < len(turns) else None
            self.store.add_turn(self.session_id, "model", kept.reply.text, **fields,
                                alternative_of=after.id if after is not None else None)
        self.reload()
        self.app.notify(f"Kept the {kept.preset.name} column as a version of the reply")

    def action_replay(self) -> None:
        session = self.session
        if session is None:
            self.app.notify("Open a saved session to replay it")
            return
        self.app.push_screen(ReplayScreen(session.label, self.store.turns(session.id)))

    # presets

    def action_cycle_preset(self) -> None:
        names = sorted(self.app.reload_presets())
        if not names:
            self.app.notify("No presets found", severity="warning")
            return
        index = names.index(self.preset_name) + 1 if self.preset_name in names else 0
        self.set_preset(names[index % len(names)])

    def action_pick_preset(self) -> None:
        presets = self.app.reload_presets()
        items = [(n, n, p.description or p.summary()) for n, p in sorted(presets.items())]

        def done(name: str | None) -> None:
            if name:
                self.set_preset(name)

        self.app.push_screen(PickerScreen("Preset", items, self.preset_name), done)

    # models

    def action_cycle_model(self) -> None:
        names = [spec.name for spec in catalog.all_models() if spec.available_offline()]
        current = self.app.current_model
        if current and current not in names:
            names.append(current)
        if len(names) < 2:
            self.app.notify("No other model on this machine: see `gptterm models`")
            return
        index = names.index(current) + 1 if current in names else 0
        self.choose_model(names[index % len(names)])

    def action_pick_model(self) -> None:
        items = [(name, label, description)
                 for name, label, description in self.app.model_choices()]
        items.append((OPEN_FOLDER, "a folder or server…",
                      "type a checkpoint folder's path, a server URL or remote:NAME"))

        def done(name: str | None) -> None:
            if name == OPEN_FOLDER:
                self.app.push_screen(AskScreen("Model folder (holds config.json), server URL "
                                               "(http://...) or remote:NAME", ""),
                                     self._folder_given)
            elif name:
                self.choose_model(name)

        self.app.push_screen(PickerScreen("Model", items, self.app.current_model), done)

    def _folder_given(self, path: str | None) -> None:
        if not path or not path.strip():
            return
        if is_remote(path.strip()):  # the server says whether it answers
            self.choose_model(path.strip())
            return
        folder = Path(path.strip()).expanduser()
        problem = model_folder_problem(folder)
        if problem:
            self.app.notify(problem, severity="error", timeout=10)
            return
        self.choose_model(str(folder.resolve()))


def model_folder_problem(folder: Path) -> str:
    """Why `folder` cannot be loaded as a checkpoint ('' when it looks loadable)."""
    shown = str(folder)
    if not folder.is_dir():
        return f"{shown}: no such folder"
    if not (folder / "config.json").is_file():
        return f"{shown}: not a model folder (expected a config.json in it)"
    return ""

