"""Recording a turn into a stored session: what the model sees, and when it is stored.

The TUI and `gptterm generate --session` both go through `TurnRecorder`, so one set
of rules decides what a turn is and when it is written:

- The context is built from the stored turns (`context_segments`): a turn's token ids
  are reused when the model now loaded made them, so the next turn's tokens extend
  exactly what the engine's cache holds; other turns are tokenized by the engine.
- A new prompt that follows text not ending in whitespace (and does not begin with
  whitespace itself) starts with the turn separator (`separator_for`): `turn_separator` of the preset, else of the model's
  catalog entry, else a newline. The separator is part of the stored user turn, so
  the transcript, the store, exports and replay show exactly the text the model saw.
- The user turn is stored at once, before the engine answers (nothing typed is
  lost); the engine's ids for it are added when it reports `Started`.
- The model turn is opened on `Started` (a request that fails before it stores no
  empty reply), streams into an autosaving `TurnWriter`, and ends exactly once:
  with `Done` (complete, or cancelled), `Failed` (failed), or `stop()` when the
  caller gives up on a reply without waiting for the engine (cancelled).
- With the model turn go what is needed to redo it exactly (`replay --verify`):
  window start, tokens reused, effective max_new_tokens, separator, a hash of the
  window's ids, and the seed; for a model on a server, the server (flavour, version,
  URL without credentials) and any preset field a lenient request dropped.
- Each request records the model and preset name on the session (`remember_choice`),
  so the session reopens on them; `session_preset` rebuilds its preset, with the
  session's sampling overrides, for the CLI and the TUI alike.
- A session's pinned memory opens its context as the first segment (`memory_segment`),
  marked pinned (`Generate.pinned_segments`), and is recorded with each model turn
  (stats "memory"), so replay rebuilds the context the turn was written after.
- With `inspect_top_k`, what every stage of the sampling chain made of each reply token
  (`TextDelta.inspect`) is kept with the turn once it ends, cancelled too
  (`Store.save_inspect`), so an old reply can be inspected and exported.
- Regenerating a reply (`start(alternative_of=...)`) stores the new reply as an
  alternative of the old one, after the same context (the turns before the old reply).
- In step mode a hand pick that differs from the sampler's draw (`hand_pick`) keeps the
  reply so far, with the drawn token, as a cancelled version, and goes on in a new
  alternative whose stats "picked" list its hand-picked reply positions (replay gives
  them to the re-run as they are).

Stdlib only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gptterm import catalog
from gptterm.presets import SESSION_KEYS, Preset, PresetError
from gptterm.protocol import Done, Event, Failed, Generate, Reply, Segment, Started, TextDelta
from gptterm.protocol import TokenInspect
from gptterm.protocol import new_request_id
from gptterm.store import Session, Store, StoreError, Turn, TurnWriter
from gptterm.store.inspection import MAX_TOP_K
from gptterm.textsafe import inert

DEFAULT_SEPARATOR = "\n"

# Done.reason -> stored turn status.
STATUS_FOR_REASON = {"eos": "complete", "length": "complete", "stop": "complete",
                     "cancelled": "cancelled"}


def status_for(end: Done | Failed) -> str:
    """The stored status of a turn that ended with `end`."""
    if isinstance(end, Failed):
        return "failed"
    return STATUS_FOR_REASON.get(end.reason, "complete")


def stats_for(reply: Reply) -> dict[str, Any]:
    """The stats a finished reply records (keys named after the events' fields)."""
    end = reply.end
    if isinstance(end, Failed):
        return {"error": end.error, "n_tokens": reply.n_tokens}
    if end is None:  # given up on without the engine's Done
        return {"reason": "cancelled", "n_tokens": reply.n_tokens}
    stats: dict[str, Any] = {"reason": end.reason, "n_tokens": end.n_tokens,
                             "seconds": round(end.seconds, 4), "ttft": round(end.ttft, 4),
                             "context_tokens": end.context_tokens,
                             "window_end": end.window_start}
    rate = reply.tokens_per_second
    if rate is not None:
        stats["tokens_per_second"] = round(rate, 2)
    # A server reports its figures at the end; they replace what Started knew.
    for key in ("prompt_tokens", "reused_tokens"):
        if getattr(end, key) is not None:
            stats[key] = getattr(end, key)
    return stats


def backend_stats(started: Started) -> dict[str, Any]:
    """What a turn records about the server that wrote it (flat scalars; nothing for an
    in-process model): flavour, version, URL (without credentials), the model it serves,
    and the preset fields a lenient request dropped."""
    stats: dict[str, Any] = {}
    if started.backend is not None:
        stats.update(backend_flavor=started.backend.flavor,
                     backend_version=started.backend.version, backend_url=started.backend.url,
                     backend_model=started.backend.model)
    if started.dropped:
        stats["lenient_dropped"] = "; ".join(started.dropped)
    return stats


def turn_separator(preset: Preset, model: str | None) -> str:
    """The separator for `model` with `preset`: the preset's, else the model's, else \\n."""
    if preset.turn_separator is not None:
        return preset.turn_separator
    if model:
        spec = catalog.resolve(model)
        if spec.turn_separator is not None:
            return spec.turn_separator
    return DEFAULT_SEPARATOR


def separator_for(text_so_far: str, prompt: str, separator: str) -> str:
    """What goes between the text so far and a new prompt: `separator`, except at the
    start, after whitespace, or before a prompt that begins with whitespace (the user
    chose the joint)."""
    if not text_so_far or text_so_far[-1].isspace() or prompt[:1].isspace():
        return ""
    return separator


def joined_prompt(turns: Sequence[Turn], prompt: str, preset: Preset, model: str) -> str:
    """`prompt` as it is stored and sent after `turns`: with its separator in front."""
    text_so_far = turns[-1].text if turns else ""
    return separator_for(text_so_far, prompt, turn_separator(preset, model)) + prompt


def ids_usable(turn: Turn, model: str) -> bool:
    """Whether a stored turn's token ids are the loaded model's view of its text."""
    return turn.model == model and (bool(turn.token_ids) or not turn.text)


def memory_segment(memory: str) -> Segment | None:
    """The segment a session's pinned memory takes at the start of its context (None: no
    memory): the memory, ended with a newline unless it ends in whitespace, so the story
    after it starts on a line of its own."""
    if not memory:
        return None
    return Segment(memory if memory[-1].isspace() else memory + DEFAULT_SEPARATOR)


def context_segments(turns: Sequence[Turn], model: str, memory: str = "") -> tuple[Segment, ...]:
    """The session's context for `model`: its memory (if any), then one segment per turn."""
    pinned = memory_segment(memory)
    return (*((pinned,) if pinned else ()),
            *(Segment(t.text, tuple(t.token_ids) if ids_usable(t, model) else None)
              for t in turns))


def window_notices(started: Started, model: str, pinned: bool = False) -> list[str]:
    """What the user is told once when the window cuts a request (CLI and TUI); `pinned`:
    the request's context opens with a pinned memory, which stays."""
    model = inert(model, single_line=True)
    notes = []
    if started.capped:
        notes.append(f"max_new_tokens {started.requested_max_new_tokens} is more than half of "
                     f"{model}'s {started.n_ctx}-token window: using {started.max_new_tokens}")
    if started.dropped_tokens and pinned:
        notes.append(f"the context is longer than {model}'s {started.n_ctx}-token window: "
                     "older text after the pinned memory is left out")
    elif started.dropped_tokens:
        notes.append(f"the context is longer than {model}'s {started.n_ctx}-token window: "
                     f"the oldest {started.window_start} tokens are left out")
    if started.dropped:
        flavor = started.backend.flavor if started.backend else "the server"
        notes.append(f"lenient: {'; '.join(started.dropped)}: not supported by {flavor}, "
                     "dropped")
    return notes


def session_preset(presets: Mapping[str, Preset], session: Session, fallback: str) -> Preset:
    """The preset `session` runs on: its preset by name (else `fallback`, else neutral
    values named `fallback`) with the session's sampling overrides applied."""
    base = presets.get(session.preset or "") or presets.get(fallback) or Preset(name=fallback)
    return with_sampling(base, session.sampling)


def with_sampling(preset: Preset, sampling: Mapping[str, Any]) -> Preset:
    """`preset` with a session's sampling overrides (SESSION_KEYS fields).

    Each is applied on its own: one that is unknown or invalid with this preset (a
    temperature of 0 on a sampling preset) is dropped, the others still apply.
    """
    for key, value in sampling.items():
        if key in SESSION_KEYS:
            try:
                preset = preset.replace(**{key: value})
            except PresetError:
                continue
    return preset


def open_session(store: Store, ref: str) -> str:
    """The id of the session named or numbered `ref`, created (named `ref`) if missing."""
    try:
        return store.find_session(ref).id
    except StoreError:
        pass
    try:
        return store.create_session(name=ref).id
    except StoreError:  # another process just created it
        return store.find_session(ref).id


class TurnRecorder:
    """One request in a stored session: builds its Generate and stores what comes back.

    Args:
        store: the sessions store.
        session_id: the session to continue.
        model: the model the request runs on (its turns' ids are reused).
        preset, seed, max_new_tokens, inspect_top_k: as in `Generate`.
        call: runs a store write (the TUI passes its store thread's `call`).
        wait: runs a store write and waits for it (used for the final write).
    """

    def __init__(self, store: Store, session_id: str, model: str, preset: Preset, *,
                 seed: int | None = None, max_new_tokens: int | None = None,
                 inspect_top_k: int = 0,
                 call: Callable[..., Any] | None = None, wait: Callable[..., Any] | None = None):
        self.store = store
        self.session_id = session_id
        self.model = model
        self.preset = preset
        self.seed = seed
        self.max_new_tokens = max_new_tokens
        self.inspect_top_k = inspect_top_k
        self._call = call or (lambda fn, *a, **k: fn(*a, **k))
        self._wait = wait or self._call
        self.reply = Reply(new_request_id())
        self.user_turn: Turn | None = None
        self.separator = ""
        self.writer: TurnWriter | None = None
        self.finished = False
        self._user_index: int | None = None  # the user turn's segment in the context
        self._opened_at = 0.0
        self.alternative_of: int | None = None  # the reply this request writes again
        self.memory = ""  # the session's pinned memory when the request started
        self.inspected: list[TokenInspect] = []  # each reply token's chain stages, if asked

    @property
    def request_id(self) -> str:
        return self.reply.request_id

    def start(self, prompt: str | None = None, *, alternative_of: int | None = None) -> Generate:
        """Store `prompt` (None: continue the session as it is) and build the Generate.

        With `alternative_of` (a model turn's id, and no prompt) the reply is written
        again: the context is the turns before that reply, and the new reply is stored as
        its alternative, chosen once it starts. Raises StoreError when that turn is not a
        model turn of this session.
        Also records the model and preset name on the session (see `remember_choice`).
        """
        if alternative_of is not None:
            if prompt is not None:
                raise ValueError("start: a prompt and alternative_of exclude each other")
            old = self.store.get_turn(alternative_of)
            if old.session_id != self.session_id or old.role != "model":
                raise StoreError(f"turn {alternative_of}: not a reply of session "
                                 f"{self.session_id}")
            self.alternative_of = alternative_of
        self.store.remember_choice(self.session_id, model=self.model, preset=self.preset.name)
        self.memory = self.store.get_session(self.session_id).memory
        if alternative_of is not None:
            turns = self.store.turns_before_turn(alternative_of)
        else:
            turns = self.store.context_turns(self.session_id)
        if prompt is not None:
            text = joined_prompt(turns, prompt, self.preset, self.model)
            self.separator = text[: len(text) - len(prompt)]
            self.user_turn = self.store.add_turn(self.session_id, "user", text,
                                                 model=self.model)
            turns.append(self.user_turn)
        context = context_segments(turns, self.model, self.memory)
        if prompt is not None:
            self._user_index = len(context) - 1
        return Generate(self.request_id, self.session_id, preset=self.preset,
                        max_new_tokens=self.max_new_tokens, seed=self.seed,
                        inspect_top_k=self.inspect_top_k, context=context,
                        pinned_segments=1 if self.memory else 0)

    def on_event(self, event: Event, now: float | None = None) -> bool:
        """Fold and store one engine event; False when it is not this request's.

        `now` is the arrival time the reply's live rate is measured on (the UI's clock);
        a chunk's stored time is always seconds since the engine started the turn.
        """
        if self.finished or not self.reply.apply(event, now):
            return False
        if isinstance(event, Started):
            self._started(event)
        elif isinstance(event, TextDelta) and self.writer is not None:
            if event.replace:
                self.inspected = list(event.inspect)
            else:
                self.inspected.extend(event.inspect)
            at = time.monotonic() - self._opened_at
            if event.replace:
                self._call(self.writer.replace_text, event.text, event.token_ids, at)
            else:
                self._call(self.writer.append, event.text, event.token_ids, at)
        elif isinstance(event, (Done, Failed)):
            self._finish(status_for(event))
        return True

    def stop(self) -> None:
        """Give up on the reply now (the engine is told to cancel by the caller): what
        arrived is stored as cancelled, and later events of this request are ignored."""
        if not self.finished:
            self._finish("cancelled")

    def hand_pick(self, position: int, drawn_id: int, drawn_text: str) -> None:
        """Step mode: the user picked another token than the sampler's draw at reply
        `position`. The reply so far with the drawn token is finished as a cancelled
        version; the reply goes on in a new alternative of it, holding the same text so
        far (the picked token comes with the next delta) and the same stats, with
        `position` added to its "picked"."""
        old = self.writer
        if old is None or self.finished:
            return
        at = time.monotonic() - self._opened_at
        self._call(old.append, drawn_text, [drawn_id], at)
        kept = self._wait(old.finish, "cancelled",
                          {"reason": "cancelled", "n_tokens": self.reply.n_tokens + 1})
        stats = {k: v for k, v in kept.stats.items() if k not in ("reason", "n_tokens")}
        stats["picked"] = [*stats.get("picked", []), position]
        self.writer = self.store.begin_turn(self.session_id, model=kept.model,
                                            preset=kept.preset, seed=kept.seed,
                                            alternative_of=kept.id)
        self.alternative_of = kept.id
        self._call(self.writer.set_stats, **stats)
        self._call(self.writer.append, self.reply.text, list(self.reply.token_ids), at)

    def _started(self, event: Started) -> None:
        for index, ids in event.tokenized:
            if index == self._user_index and self.user_turn is not None:
                self._call(self.store.set_turn_tokens, self.user_turn.id, ids)
        preset = self.preset.values()
        preset["max_new_tokens"] = event.max_new_tokens or preset["max_new_tokens"]
        seed = self.seed if self.seed is not None else self.preset.seed
        self.writer = self.store.begin_turn(self.session_id, model=self.model, preset=preset,
                                            seed=seed, alternative_of=self.alternative_of)
        if self.memory:  # what replay needs to rebuild this turn's context
            self._call(self.writer.set_stats, memory=self.memory)
        self._opened_at = time.monotonic()
        self._call(self.writer.set_stats, prompt_tokens=event.prompt_tokens,
                   reused_tokens=event.reused_tokens, window_start=event.window_start,
                   dropped_tokens=event.dropped_tokens, max_new_tokens=event.max_new_tokens,
                   context_sha=event.context_sha, separator=self.separator,
                   **backend_stats(event))

    def _finish(self, status: str) -> None:
        self.finished = True
        if self.writer is not None:
            self._wait(self.writer.finish, status, stats_for(self.reply))
            # The stages, kept with the reply once it has ended (bounded: top K per stage).
            if self.inspected and 0 < self.inspect_top_k <= MAX_TOP_K:
                self._wait(self.store.save_inspect, self.writer.turn_id, self.inspect_top_k,
                           tuple(self.inspected))
