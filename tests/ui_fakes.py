"""A scripted fake engine for UI tests and the UI latency bench (same API as the real Engine).

It answers LoadModel at once (or fails the names in `fail_models`), and either plays
a scripted reply for each Generate (`auto=True`; `replies` picks one per preset name,
and `alternatives` are sent per piece when the Generate asks for `inspect_top_k`, top
k of them) or waits for the test to stream text and finish by hand. Cancel answers Done(reason="cancelled") like the real one.
CountTokens is answered at once, counting words as tokens (`fake_count`, the same count
its Started uses), with `n_ctx`; before any model is loaded, Failed like the real one.
Events go out through `emit`, i.e. the app's thread-safe post_message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gptterm.protocol import (
    Cancel,
    CountTokens,
    Done,
    Event,
    Failed,
    Generate,
    LoadModel,
    ModelFailed,
    ModelLoaded,
    ModelLoading,
    Started,
    TextDelta,
    TokenCount,
    context_text,
)


def fake_count(command: CountTokens, n_ctx: int, model: str) -> TokenCount:
    """The fake's answer to a count: words stand for tokens (text, then the context's text)."""
    return TokenCount(command.request_id, len(command.text.split()),
                      len(context_text(command.context).split()), n_ctx, model)


class FakeEngine:
    def __init__(self, emit: Callable[[Event], None], *, reply: Sequence[str] = ("Hello", " world"),
                 auto: bool = True, fail_models: dict[str, str] | None = None, n_ctx: int = 128,
                 device: str = "cpu", answer_loads: bool = True, stream_forever: bool = False,
                 rate: float = 2000.0, reply_tokens: int = 0,
                 on_done: Callable[[], None] | None = None,
                 replies: dict[str, Sequence[str]] | None = None,
                 alternatives: Sequence[Sequence[tuple[str, float]]] = (),
                 window: dict | None = None):
        self.emit = emit
        self.window = window or {}  # extra Started fields (window_start, max_new_tokens, ...)
        self.reply = list(reply)
        self.auto = auto
        self.fail_models = fail_models or {}
        self.n_ctx = n_ctx
        self.device = device
        self.answer_loads = answer_loads
        self.stream_forever = stream_forever
        self.rate = rate  # tokens per second when streaming forever
        self.reply_tokens = reply_tokens  # >0: each streamed reply ends after this many
        self.on_done = on_done  # called (engine thread) after such a reply's Done
        self.replies = replies or {}
        self.alternatives = list(alternatives)  # per piece of the reply
        self.commands: list = []
        self.active: Generate | None = None
        self.sent = 0
        self.started = False
        self.closed = False
        self._stop = threading.Event()

    # the Engine API
    def start(self) -> FakeEngine:
        self.started = True
        return self

    def submit(self, command) -> None:
        self.commands.append(command)
        if isinstance(command, LoadModel):
            if not self.answer_loads:
                self.emit(ModelLoading(command.name, 0.25, "reading weights"))
            elif command.name in self.fail_models:
                self.emit(ModelFailed(command.name, self.fail_models[command.name]))
            else:
                self.emit(ModelLoaded(command.name, self.device, self.n_ctx))
        elif isinstance(command, Generate):
            self.active, self.sent = command, 0
            self.emit(Started(command.request_id, len(command.text().split()), 0,
                              **self.window))
            if self.stream_forever:
                self._stop.clear()
                threading.Thread(target=self._flood, args=(command.request_id,),
                                 daemon=True).start()
            elif self.auto:
                # Like the real engine: beam and contrastive search give no alternatives.
                k = command.inspect_top_k if command.preset.method in ("greedy", "sample") else 0
                reply = self.replies.get(command.preset.name, self.reply)
                for i, piece in enumerate(reply):
                    alts = self.alternatives[i][:k] if k and i < len(self.alternatives) else ()
                    self.stream(piece, alternatives=(tuple(alts),) if alts else ())
                self.finish("eos")
        elif (isinstance(command, Cancel) and self.active is not None
              and command.request_id == self.active.request_id):
            self._stop.set()
            self.finish("cancelled")
        elif isinstance(command, CountTokens):
            model = self._loaded_model()
            self.emit(fake_count(command, self.n_ctx, model) if model is not None
                      else Failed(command.request_id, "no model is loaded yet"))

    def _loaded_model(self) -> str | None:
        """The model the fake answered ModelLoaded for last (None: none yet)."""
        names = [c.name for c in self.sent_commands(LoadModel)
                 if self.answer_loads and c.name not in self.fail_models]
        return names[-1] if names else None

    def close(self) -> None:
        self._stop.set()
        self.closed = True

    # what a test drives by hand
    def stream(self, text: str, replace: bool = False, alternatives: tuple = ()) -> None:
        assert self.active is not None, "no generation is running"
        self.sent += 1
        self.emit(TextDelta(self.active.request_id, text, (self.sent,), alternatives,
                            replace=replace))

    def finish(self, reason: str = "eos") -> None:
        assert self.active is not None, "no generation is running"
        self.emit(Done(self.active.request_id, reason, self.sent, 0.5, 0.05,
                       len(self.active.text().split()) + self.sent,
                       window_start=self.window.get("window_start", 0)))
        self.active = None

    def _flood(self, request_id: str) -> None:
        """Stream `rate` tokens a second until cancelled or `reply_tokens` (the latency bench)."""
        n = 0
        start = time.perf_counter()
        while not self._stop.is_set():
            if self.reply_tokens and n >= self.reply_tokens:
                self.emit(Done(request_id, "length", n, n / self.rate, 0.0, n))
                self.active = None
                if self.on_done is not None:
                    self.on_done()
                return
            n += 1
            # Lines of about 60 characters, like verse or a play.
            self.emit(TextDelta(request_id, f" tok{n}" + ("\n" if n % 10 == 0 else ""), (n,)))
            ahead = start + n / self.rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)

    def sent_commands(self, kind: type) -> list:
        return [c for c in self.commands if isinstance(c, kind)]


class Engines(list):
    """Collects the fake engines an app builds; `factory(**kw)` is its engine_factory."""

    def factory(self, **kwargs) -> Callable:
        def make(emit):
            engine = FakeEngine(emit, **kwargs)
            self.append(engine)
            return engine
        return make

    @property
    def one(self) -> FakeEngine:
        assert len(self) == 1, f"expected one engine, got {len(self)}"
        return self[0]


# ---------------------------------------------------------------- fixtures and helpers

PRESETS = {
    "alpha": 'description = "first test preset"\nmethod = "greedy"\nmax_new_tokens = 20\n',
    "beta": 'description = "second test preset"\nmethod = "sample"\ntemperature = 0.7\n',
    "gamma": 'description = "third, with a fixed seed"\nmethod = "sample"\nseed = 7\n',
}


def make_ui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deterministic world for the UI (the `ui_env` fixture in conftest): three test presets, no bundled presets,
    no shipped models and an empty hub cache. Returns the config dir."""
    from gptterm import paths

    config = paths.config_dir()
    (config / "presets").mkdir(parents=True)
    for name, text in PRESETS.items():
        (config / "presets" / f"{name}.toml").write_text(text)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(paths, "bundled_presets_dir", lambda: empty)
    monkeypatch.setattr(paths, "shipped_models_dir", lambda: empty)
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    (config / "config.toml").write_text('preset = "alpha"\nmodel = "fake-model"\n')
    return config


async def until(pilot, condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the app run until `condition()` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.01)


async def ready(pilot) -> None:
    """Wait for the engine to be built and the first model to be in use."""
    app = pilot.app
    await until(pilot, lambda: app.engine is not None and app.model_name is not None)
    await pilot.pause()


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]
