"""A synchronous front for the Engine, for the CLI and scripts (not for the UI).

`EngineClient.generate` blocks the calling thread while events arrive; Ctrl+C there
sends Cancel, and the call returns once the engine reports the generation done. Its
engine is a RoutingEngine: a model named by a URL or `remote:NAME` runs on that server,
any other in-process (the local Engine is made only when one loads).
"""

from __future__ import annotations

import queue
import time
from typing import Callable

from gptterm.engine.engine import Engine
from gptterm.remote.routing import RoutingEngine
from gptterm.protocol import (
    Cancel, CountTokens, Done, Event, Failed, Generate, ModelFailed, ModelLoaded, ModelLoading,
    LoadModel, Segment, TokenCount, new_request_id,
)


class ModelLoadError(Exception):
    """LoadModel failed; the message is the engine's one line."""


class EngineClient:
    """Runs an engine (local or remote, see the module docstring) and waits on its events.

    `lenient`: a server drops the preset fields it cannot honour instead of refusing
    them; `backends`: the config's [backends] tables (None: read when one is named);
    `precision`: the local engine's (see Engine).
    """

    def __init__(self, device: str = "auto", threads: int | None = None,
                 lenient: bool = False, backends: dict | None = None,
                 precision: str | None = None):
        self._events: queue.Queue[Event] = queue.Queue()

        def local(emit):
            return Engine(emit, device=device, threads=threads, precision=precision)

        self.engine = RoutingEngine(self._events.put, local, backends=backends,
                                    lenient=lenient).start()
        self.loaded: ModelLoaded | None = None

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.close()

    def load(self, name: str, device: str = "auto",
             on_progress: Callable[[ModelLoading], None] | None = None) -> ModelLoaded:
        """Load a model; raise ModelLoadError with the engine's message on failure."""
        self.engine.submit(LoadModel(name, device))
        while True:
            event = self._events.get()
            if isinstance(event, ModelLoading) and on_progress:
                on_progress(event)
            elif isinstance(event, ModelLoaded):
                self.loaded = event
                return event
            elif isinstance(event, ModelFailed):
                raise ModelLoadError(event.error)

    def check(self, command: Generate) -> None:
        """Raise UnsupportedField (one line) when the loaded model's server cannot honour
        `command`'s preset, before anything is sent; nothing for an in-process model."""
        check = getattr(self.engine.active, "check", None)
        if check is not None:
            check(command)

    def generate(self, command: Generate,
                 on_event: Callable[[Event], None] = lambda e: None) -> Done | Failed:
        """Run one Generate to its end, passing every event to `on_event`.

        Ctrl+C cancels the generation; the Done (reason "cancelled") is still returned.
        """
        self.engine.submit(command)
        while True:
            try:
                event = self._events.get(timeout=0.1)
                if getattr(event, "request_id", command.request_id) != command.request_id:
                    continue
                on_event(event)
                if isinstance(event, (Done, Failed)):
                    return event
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                self.engine.submit(Cancel(command.request_id))

    def count_tokens(self, text: str, context: tuple[Segment, ...] = (),
                     timeout: float = 60.0) -> TokenCount | Failed:
        """The loaded model's token count for `text` after `context` (see CountTokens);
        Failed when no model is loaded. TimeoutError when no answer comes in `timeout`
        seconds (a newer count, sent from another thread, replaced this one)."""
        command = CountTokens(new_request_id(), text, context)
        self.engine.submit(command)
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no token count in {timeout:g} s") from None
            if (isinstance(event, (TokenCount, Failed))
                    and event.request_id == command.request_id):
                return event


__all__ = ["EngineClient", "ModelLoadError", "new_request_id"]
