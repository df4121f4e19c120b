"""The Engine: one long-lived worker thread with an inbox, a cancel flag, and events out.

The thread owns the model, the tokenizer and every KV cache; nothing else touches
them. Commands go in through `submit` (any thread); events come out through the
`emit` callback, called on the worker thread (the UI wraps it in `post_message`).
torch and transformers are imported on the worker thread only.

CountTokens is answered on the worker too, never on the thread that submits it: a fast
tokenizer used from two threads at once fails ("Already borrowed", huggingface/tokenizers
#537), the submitting thread is the UI's, and only the worker knows which model is in
use. So that a count never waits for a whole reply, the worker also answers one between
the steps of a generation (after each event it emits). Counts coalesce: the engine keeps
only the newest one not yet answered, and one it replaced gets no answer.

A step-mode Generate waits for a Pick before each token; while it waits the worker goes
on serving counts and drops of other sessions (`_wait_pick`). Anything else that arrives
ends the step as a cancel would, then runs.
"""

from __future__ import annotations

import queue
import random
import threading
from typing import Any, Callable

from gptterm import catalog
from gptterm.engine.context import context_ids
from gptterm.errors import first_line
from gptterm.protocol import (
    Cancel, Command, CountTokens, Done, DropSession, Event, Failed, Generate, LoadModel,
    ModelFailed, ModelLoaded, ModelLoading, Pick, Segment, Shutdown, TokenCount,
)

DEFAULT_CACHE_BUDGET = 1 << 30  # bytes of KV cache kept across sessions
NO_MODEL = "no model is loaded yet"


def count_tokens(tokenizer: Any, vocab_size: int, context: tuple[Segment, ...],
                 text: str) -> tuple[int, int]:
    """(tokens of `text`, tokens of `context`) as a Generate of the context with `text` as
    its last segment sees them: `context_ids`, the rule that Generate uses, on just that.

    The start token that an empty context is given is not counted (-1 marks it there:
    no real id is negative).
    """
    full, made = context_ids(tokenizer, (*context, Segment(text)), vocab_size, -1)
    if full == [-1]:
        return 0, 0
    n_text = len(made[-1][1])  # the text came without ids: it is always the last one made
    return n_text, len(full) - n_text


class Engine:
    """Owns the model on a worker thread; see the module docstring.

    Args:
        emit: called with each Event, on the worker thread.
        device: auto | cpu | cuda, used when a LoadModel does not say.
        cache_budget: bytes of KV cache kept across sessions.
        threads: CPU threads for the model (None: picked for the model's size).
        precision: auto | fp32 | bf16 | fp16 | int8 (None: the config's, else the
            device's default; see engine/precision.py).
    """

    def __init__(self, emit: Callable[[Event], None], device: str = "auto",
                 cache_budget: int = DEFAULT_CACHE_BUDGET, threads: int | None = None,
                 precision: str | None = None):
        self._emit = emit
        self._threads = threads  # CPU threads asked for (None: picked per model)
        self._precision = precision
        self._threads_in_use: int | None = None  # set on the worker when a model loads
        self._device = device
        self._cache_budget = cache_budget
        self._inbox: queue.Queue[Command] = queue.Queue()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._active: str | None = None  # request id being generated
        self._cancelled: set[str] = set()  # cancelled before they started
        self._count: CountTokens | None = None  # the newest count not yet answered
        self._thread = threading.Thread(target=self._run, name="gptterm-engine", daemon=True)
        self._lm: Any = None  # LoadedModel
        self._model_name = ""  # the name the loaded model was asked for (ModelLoaded.name)
        self._caches: Any = None  # SessionCaches
        self._deferred: list[Command] = []  # commands that ended a step-mode wait, next up

    # ------------------------------------------------------------ any thread

    def start(self) -> "Engine":
        self._thread.start()
        return self

    def submit(self, command: Command) -> None:
        """Queue a command. Cancel takes effect at once, not in queue order; CountTokens
        replaces a count still waiting (see the module docstring)."""
        with self._lock:
            if isinstance(command, CountTokens):
                self._count = command  # still queued below: it wakes an idle worker
            if isinstance(command, Cancel):
                if command.request_id == self._active:
                    self._cancel.set()
                    self._inbox.put(command)  # wakes a step-mode wait (the loop skips it)
                else:
                    self._cancelled.add(command.request_id)
                return
            if isinstance(command, (LoadModel, Shutdown)) and self._active is not None:
                self._cancel.set()  # a new model or shutdown stops the generation first
        self._inbox.put(command)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (cancelling any generation) and wait for it."""
        if self._thread.is_alive():
            self.submit(Shutdown())
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def threads_in_use(self) -> int | None:
        """torch intra-op threads the worker runs the loaded model on (None before)."""
        return self._threads_in_use

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        while True:
            command = self._deferred.pop(0) if self._deferred else self._inbox.get()
            if isinstance(command, Shutdown):
                return
            try:
                if isinstance(command, LoadModel):
                    self._load(command)
                elif isinstance(command, Generate):
                    self._generate(command)
                elif isinstance(command, DropSession) and self._caches is not None:
                    self._caches.drop(command.session_id)
                elif isinstance(command, CountTokens):
                    self._answer_count()  # nothing left to do when one already answered it
            except Exception as exc:  # the worker must survive anything one command does
                line = first_line(exc)
                if isinstance(command, Generate):
                    self._emit(Failed(command.request_id, line))
                elif isinstance(command, LoadModel):
                    self._emit(ModelFailed(command.name, line))

    def _load(self, command: LoadModel) -> None:
        from gptterm.engine.cache import SessionCaches
        from gptterm.engine.loading import LoadError, load, with_precision
        from gptterm.engine.threads import use_threads

        spec = catalog.resolve(command.name)
        device = command.device if command.device != "auto" else self._device

        def progress(fraction: float, message: str) -> None:
            self._emit(ModelLoading(command.name, fraction, message))

        try:
            lm = load(spec, device, progress)
            # On the worker itself: torch's thread count is per thread once it has run an
            # op. Before the precision: `auto` measures speed with it.
            n_params = sum(p.numel() for p in lm.model.parameters())
            threads = use_threads(n_params, self._threads)
            with_precision(lm, self._precision, threads, progress)
        except LoadError as exc:
            self._emit(ModelFailed(command.name, str(exc)))
            return
        # Only now drop the old model: a failed load keeps it in use.
        self._lm, self._model_name = lm, command.name
        self._caches = SessionCaches(self._cache_budget)
        self._threads_in_use = threads
        self._emit(ModelLoaded(command.name, lm.device, lm.n_ctx, precision=lm.precision))

    def _generate(self, command: Generate) -> None:
        with self._lock:
            if command.request_id in self._cancelled:
                self._cancelled.discard(command.request_id)
                self._emit(Done(command.request_id, "cancelled", 0, 0.0, 0.0))
                return
            self._active = command.request_id
            self._cancel.clear()
        try:
            if self._lm is None:
                self._emit(Failed(command.request_id, NO_MODEL))
                return
            from gptterm.engine.generation import run_generation

            seed = command.seed if command.seed is not None else command.preset.seed
            if seed is None:
                seed = random.randrange(2**31)
            # Only a stepped generation waits for picks (and serves commands meanwhile).
            steps = {"wait_pick": lambda: self._wait_pick(command)} if command.step_mode else {}
            run_generation(self._lm, self._caches, command, seed, self._cancel,
                           self._emit_then_count, **steps)
        finally:
            with self._lock:
                self._active = None
                self._cancel.clear()

    def _wait_pick(self, command: Generate) -> int | None:
        """Serve commands until the Pick for the stepped `command`: its token (None: the
        sampler's draw). Counts, and drops of other sessions, are served as they come;
        anything else (another Generate, a model, a drop of this session, a shutdown) ends
        the step, as a cancel does (None), and runs next."""
        while not self._cancel.is_set():
            waiting = self._inbox.get()
            if isinstance(waiting, Pick):
                if waiting.request_id == command.request_id:  # else a stale one
                    return waiting.token_id
            elif isinstance(waiting, CountTokens):
                self._answer_count()
            elif isinstance(waiting, DropSession) and waiting.session_id != command.session_id:
                self._caches.drop(waiting.session_id)
            elif not isinstance(waiting, Cancel):  # a Cancel only wakes this loop
                self._deferred.append(waiting)
                self._cancel.set()
        return None

    def _emit_then_count(self, event: Event) -> None:
        """A generation's emit: the event, then any count waiting (between two steps)."""
        self._emit(event)
        if self._count is not None:  # one attribute read per event when none waits
            self._answer_count()

    def _answer_count(self) -> None:
        """Answer the newest CountTokens not yet answered, if there is one."""
        with self._lock:
            command, self._count = self._count, None
        if command is None:
            return
        if self._lm is None:
            self._emit(Failed(command.request_id, NO_MODEL))
            return
        try:
            n_tokens, context_tokens = count_tokens(
                self._lm.tokenizer, self._lm.model.config.vocab_size, command.context,
                command.text)
        except Exception as exc:  # noqa: BLE001 - a count must never stop the generation
            self._emit(Failed(command.request_id, first_line(exc)))
            return
        self._emit(TokenCount(command.request_id, n_tokens, context_tokens, self._lm.n_ctx,
                              self._model_name))
