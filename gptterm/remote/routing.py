"""RoutingEngine: the engine the app and the CLI build; it sends each model to its engine.

`LoadModel(name)` goes to a RemoteEngine when `name` is `http://...`, `https://...` or
`remote:NAME` (a `[backends.NAME]` table of config.toml), else to the local Engine. The
local engine is built at once (that imports no torch) but started on its first load, so
a user who only drives servers never runs its thread nor loads torch. Generate,
Cancel, CountTokens and DropSession go to the engine of the model loaded last. A failed
load keeps the previous model in use, as the local engine does.

It also completes the local engine's Done with the Started figures (`prompt_tokens`,
`reused_tokens`), so every Done carries them, whichever engine made it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from gptterm.protocol import (
    Cancel, Command, Done, DropSession, Event, Failed, Generate, LoadModel, ModelFailed,
    ModelLoaded, Pick, Shutdown, Started,
)
from gptterm.remote import REMOTE_PREFIX, is_remote


class BackendError(ValueError):
    """A remote model name that names no usable backend; one line."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a remote model name points: what a RemoteEngine is built with."""

    url: str
    flavor: str = "auto"
    model: str | None = None
    api_key: str | None = None
    lenient: bool = False


def resolve_target(name: str, backends: Mapping[str, Any] | None = None,
                   lenient: bool = False, environ: Mapping[str, str] | None = None) -> Target:
    """The server behind a remote model name (see `is_remote`); `backends` are the config's
    BackendConfig tables. `lenient` (the --lenient flag) adds to a table's own."""
    environ = os.environ if environ is None else environ
    if not name.startswith(REMOTE_PREFIX):
        if urlsplit(name).username is not None:  # the name is stored with every turn
            raise BackendError("a model URL must not hold credentials: put the server in a "
                               "[backends.NAME] table with api_key_env, and use remote:NAME")
        return Target(name, lenient=lenient)
    key = name[len(REMOTE_PREFIX):]
    table = (backends or {}).get(key)
    if table is None:
        known = ", ".join(sorted(backends or {})) or "none"
        raise BackendError(f"{name}: no [backends.{key}] table in config.toml (known: {known})")
    api_key = None
    if table.api_key_env:
        api_key = environ.get(table.api_key_env)
        if not api_key:
            raise BackendError(f"{name}: the environment variable {table.api_key_env} "
                               "(api_key_env) is not set")
    return Target(table.url, table.flavor, table.model, api_key, table.lenient or lenient)


def load_backends() -> dict[str, Any]:
    """The `[backends]` tables of config.toml (a broken one is left out: its problem line
    is shown where the config's problems are)."""
    from gptterm.config import load_settings

    return load_settings()[0].backends


class RoutingEngine:
    """The Engine API in front of the local engine and any remote one.

    Args:
        emit: called with each Event (from the worker threads).
        local_factory: builds the local engine from an emit (started on the first local load).
        backends: the config's backend tables (None: read config.toml when needed).
        lenient: drop preset fields a server cannot honour (the --lenient flag).
        remote_factory: builds a RemoteEngine (tests pass fakes).
    """

    def __init__(self, emit: Callable[[Event], None], local_factory: Callable[..., Any],
                 backends: Mapping[str, Any] | None = None, lenient: bool = False,
                 remote_factory: Callable[..., Any] | None = None):
        self._emit = emit
        self._backends = backends
        self.lenient = lenient
        self._remote_factory = remote_factory
        self.local: Any = local_factory(self._relay_for("local"))
        self._local_started = False
        self.remotes: dict[str, Any] = {}  # model name -> its RemoteEngine
        self.active: Any = None  # the engine of the last LoadModel: commands go there
        self._loaded: Any = None  # the engine whose model loaded last (a failed load reverts)
        self._owner: dict[str, Any] = {}  # request id -> the engine it was sent to
        self._started: dict[str, Started] = {}
        self._closed = False

    # ------------------------------------------------------------ the Engine API

    def start(self) -> RoutingEngine:
        return self

    def submit(self, command: Command) -> None:
        if isinstance(command, Shutdown):
            self.close()
        elif isinstance(command, LoadModel):
            self._load(command)
        elif isinstance(command, (Cancel, Pick)):
            engine = self._owner.get(command.request_id, self.active)
            if engine is not None:
                engine.submit(command)
        elif isinstance(command, DropSession):
            for engine in self._engines():
                engine.submit(command)
        elif self.active is None:
            self._emit(Failed(command.request_id, "no model is loaded yet"))
        elif isinstance(command, Generate) and (command.step_mode or command.forced_tokens) \
                and self.active is not self.local:
            self._emit(Failed(command.request_id, "step mode and hand-picked tokens need an "
                              "in-process model, not a server"))
        else:
            if isinstance(command, Generate):
                self._owner[command.request_id] = self.active
            self.active.submit(command)

    def close(self, timeout: float = 5.0) -> None:
        self._closed = True
        for engine in self._engines():
            engine.close(timeout)

    @property
    def alive(self) -> bool:
        return not self._closed

    @property
    def threads_in_use(self) -> int | None:
        """The local engine's thread count (None while it has not loaded a model)."""
        return getattr(self.local, "threads_in_use", None)

    # ------------------------------------------------------------ routing

    def _engines(self) -> list[Any]:
        """The engines that run (the local one once started)."""
        return [self.local] * self._local_started + list(self.remotes.values())

    def _load(self, command: LoadModel) -> None:
        if is_remote(command.name):
            try:
                engine = self._remote(command.name)
            except BackendError as exc:
                self._emit(ModelFailed(command.name, str(exc)))
                return
        else:
            if not self._local_started:
                self.local.start()
                self._local_started = True
            engine = self.local
        # One model in use at a time: another engine's reply stops, as a local swap does.
        for rid, owner in list(self._owner.items()):
            if owner is not engine:
                owner.submit(Cancel(rid))
        self.active = engine
        engine.submit(command)

    def _remote(self, name: str) -> Any:
        engine = self.remotes.get(name)
        if engine is not None:
            return engine
        backends = self._backends if self._backends is not None else (
            load_backends() if name.startswith(REMOTE_PREFIX) else {})
        target = resolve_target(name, backends, self.lenient)
        if self._remote_factory is not None:
            factory = self._remote_factory
        else:
            from gptterm.remote.engine import RemoteEngine as factory
        engine = factory(self._relay_for(name), target.url, target.flavor, target.model,
                         target.api_key, target.lenient).start()
        self.remotes[name] = engine
        return engine

    def _relay_for(self, key: str) -> Callable[[Event], None]:
        """The emit an engine gets: it follows loads and requests, and completes Done."""

        def relay(event: Event) -> None:
            engine = self.local if key == "local" else self.remotes.get(key)
            if isinstance(event, ModelLoaded):
                self._loaded = engine
            elif isinstance(event, ModelFailed):
                if self.active is engine and self._loaded is not None:
                    self.active = self._loaded  # the previous model stays in use
            elif isinstance(event, Started):
                self._started[event.request_id] = event
            elif isinstance(event, (Done, Failed)):
                started = self._started.pop(event.request_id, None)
                self._owner.pop(event.request_id, None)
                if isinstance(event, Done) and started is not None and started.backend is None \
                        and event.prompt_tokens is None and event.reused_tokens is None:
                    event = dataclasses.replace(event, prompt_tokens=started.prompt_tokens,
                                                reused_tokens=started.reused_tokens)
            self._emit(event)

        return relay
