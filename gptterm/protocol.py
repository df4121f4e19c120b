"""Commands to the engine worker, the events it sends back, and the one fold of them.

Plain frozen dataclasses from the standard library only: the UI, the CLI and the
store build and read them without importing torch or textual. `Reply` folds the
events of one request into the reply so far; every reader of events (the TUI, the
CLI, compare, replay, verify, the turn recorder) uses it, so a `replace` delta or
tokens per second mean the same everywhere. `new_request_id` makes request ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal, Union

from gptterm.presets import Preset

# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class LoadModel:
    """Load a model by catalog name or directory; replaces the current one."""

    name: str
    device: str = "auto"  # auto | cpu | cuda


@dataclass(frozen=True)
class Segment:
    """One piece of a session's context (a turn): its text and, when they were made by
    the model now loaded, its token ids. The engine tokenizes a segment without ids."""

    text: str
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Generate:
    """Continue a session's whole context with `preset`.

    The context is `context` (segments, oldest first) or, when that is empty, the
    plain text `prompt`. The engine reuses the longest cached token prefix of
    `session_id`. `max_new_tokens` and `seed` of None fall back to the preset's values.
    `window_start` and `reuse_limit` redo a stored turn exactly (`replay --verify`):
    the window starts at that token of the context, and at most that many cached
    tokens are reused, so the re-run computes what the original did.
    `pinned_segments`: the first N segments (a session's memory) never leave the window
    when it moves (see engine.window.place_pinned).
    """

    request_id: str
    session_id: str
    prompt: str = ""
    preset: Preset = field(default_factory=Preset)
    max_new_tokens: int | None = None
    seed: int | None = None
    inspect_top_k: int = 0
    context: tuple[Segment, ...] = ()
    window_start: int | None = None
    reuse_limit: int | None = None
    pinned_segments: int = 0
    # Hand picks (step mode): (reply position, token id). At each such position the sampler
    # still draws (so a seeded generator advances as it would), then the token replaces
    # the draw; `replay --verify` passes a stepped turn's picks so it re-runs exactly.
    forced_tokens: tuple[tuple[int, int], ...] = ()
    # Step mode: before each token emit Candidates and wait for a Pick (or a Cancel).
    step_mode: bool = False

    def segments(self) -> tuple[Segment, ...]:
        return self.context or (Segment(self.prompt),)

    def text(self) -> str:
        """The whole context as text."""
        return context_text(self.segments())


@dataclass(frozen=True)
class Cancel:
    """Stop the generation `request_id` at the next token."""

    request_id: str


@dataclass(frozen=True)
class DropSession:
    """Forget the KV cache of a session."""

    session_id: str


@dataclass(frozen=True)
class CountTokens:
    """Count the loaded model's tokens for `text` sent after `context` (the prompt box).

    `text` is counted as a Generate would tokenize it as its last segment, and the
    context reuses each segment's token ids when given, so the answer (a TokenCount)
    is what that Generate will see. Only the newest unanswered count is answered.
    """

    request_id: str
    text: str
    context: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class Shutdown:
    """Stop the worker thread."""


@dataclass(frozen=True)
class Pick:
    """The answer to a step-mode generation's Candidates: the next token is `token_id`
    (None: the sampler's own draw). A Pick for no waiting generation is ignored."""

    request_id: str
    token_id: int | None = None


Command = Union[LoadModel, Generate, Cancel, DropSession, CountTokens, Shutdown, Pick]

STEP_METHODS = ("greedy", "sample")  # the methods with step mode and forced tokens

# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class ModelLoading:
    """Loading progress, `fraction` in [0, 1]."""

    name: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class Backend:
    """The server a remote model runs on: its flavour (llama.cpp, vllm, ...), its version
    ("" when it does not say), its URL without credentials, and the model it serves (its
    id or file name; "" when it does not say)."""

    flavor: str
    version: str
    url: str
    model: str = ""

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.flavor}{version} at {self.url}"


@dataclass(frozen=True)
class ModelLoaded:
    """A model is ready. `backend` names the server of a remote model (None: in-process);
    `precision` is what an in-process model decodes at (fp32, bf16, ...; "": not said)."""

    name: str
    device: str
    n_ctx: int
    backend: Backend | None = None
    precision: str = ""


@dataclass(frozen=True)
class ModelFailed:
    """A model could not be loaded; the previous one (if any) stays in use."""

    name: str
    error: str


@dataclass(frozen=True)
class Started:
    """Generation began: `prompt_tokens` in the window, of which `reused_tokens` came
    from the cache.

    `window_start`: tokens of the oldest context left out of the window (0: none).
    `dropped_tokens`: how many of those were dropped by this request (the window
    moved now). `max_new_tokens`: the effective limit, after the window cap
    (`requested_max_new_tokens` is what was asked). `tokenized`: (segment index, ids)
    for each segment that came without ids, in order. `context_sha`: a hash of
    the window's token ids, so a re-run can check it starts from the same place.
    A remote engine may not know everything: `reused_tokens` is then None, and
    `prompt_tokens` 0 (Done says None there). `backend`: the server that generates (None:
    in-process); `dropped`: preset fields it cannot honour that a lenient request left
    out, as "field = value".
    """

    request_id: str
    prompt_tokens: int
    reused_tokens: int | None
    window_start: int = 0
    dropped_tokens: int = 0
    max_new_tokens: int = 0
    requested_max_new_tokens: int = 0
    tokenized: tuple[tuple[int, tuple[int, ...]], ...] = ()
    context_sha: str = ""
    n_ctx: int = 0
    backend: Backend | None = None
    dropped: tuple[str, ...] = ()

    @property
    def capped(self) -> bool:
        """Whether the window cap lowered max_new_tokens."""
        return self.max_new_tokens < self.requested_max_new_tokens


@dataclass(frozen=True)
class BeamView:
    """One beam search hypothesis as it stands: its text (without a final end-of-sequence),
    its generated token ids (a finished one that ended on end-of-sequence includes it, as
    `model.generate` returns it), its length-penalised score (transformers': summed
    log-probabilities over length ** length_penalty; a finished one's is its
    `sequences_scores` entry) and whether it has finished."""

    text: str
    token_ids: tuple[int, ...]
    score: float
    finished: bool


@dataclass(frozen=True)
class StageTop:
    """One stage of the sampling chain for one token: `stage` ("model", a step's name in
    the preset's `order`, or "final") and its most probable tokens as (id, text,
    probability), most probable first; tokens the stage removed are left out."""

    stage: str
    top: tuple[tuple[int, str, float], ...]


@dataclass(frozen=True)
class TokenInspect:
    """What every stage of the chain made of one generated token's distribution: the
    token drawn (`chosen`, its own text `text`) and the stages in order, "model" first and
    "final" (what was drawn from) last."""

    chosen: int
    stages: tuple[StageTop, ...]
    text: str = ""


@dataclass(frozen=True)
class TextDelta:
    """New printable text and the tokens that produced it.

    `replace` is True when `text` replaces the whole reply so far (beam search
    shows its current best hypothesis). `alternatives` holds, per token in
    `token_ids`, the top candidates as (text, probability) when inspection is on;
    `distribution` says which probabilities they are: "final" (what the sampler drew
    from, after every filter) or "raw" (the model's softmax, before any). A server may
    not report token ids: `token_ids` is then empty, and `alternatives` has one entry
    per token all the same. `beams` (beam search): every hypothesis after this step, best
    first; the last delta of a search holds the finished ones it chose among. `inspect`
    holds, per token in `token_ids`, every chain stage's top candidates (`TokenInspect`)
    when inspection is on (an in-process greedy, sampled or contrastive reply).
    """

    request_id: str
    text: str
    token_ids: tuple[int, ...] = ()
    alternatives: tuple[tuple[tuple[str, float], ...], ...] = ()
    replace: bool = False
    distribution: Literal["final", "raw"] = "final"
    beams: tuple[BeamView, ...] = ()
    inspect: tuple[TokenInspect, ...] = ()


DoneReason = Literal["eos", "length", "stop", "cancelled"]


@dataclass(frozen=True)
class Done:
    """Generation ended normally or by cancel.

    `seconds` runs from the request's start to its end, `ttft` to the first token.
    `context_tokens`: tokens in the window at the end (context plus reply).
    `window_start`: where the window starts at the end (it moves when a long reply
    slides it). `max_new_tokens`: the effective limit. `prompt_tokens` and
    `reused_tokens`: the context's tokens and how many of them came from a cache, as
    Started said or (a remote engine) as the server reported at the end; None where
    unknown.
    """

    request_id: str
    reason: DoneReason
    n_tokens: int
    seconds: float
    ttft: float
    context_tokens: int = 0
    window_start: int = 0
    max_new_tokens: int = 0
    prompt_tokens: int | None = None
    reused_tokens: int | None = None


@dataclass(frozen=True)
class Failed:
    """Generation failed with a one-line error."""

    request_id: str
    error: str


@dataclass(frozen=True)
class TokenCount:
    """The answer to a CountTokens: `n_tokens` of its text after `context_tokens` of its
    context, for `model` (the name it was loaded by), whose window is `n_ctx`."""

    request_id: str
    n_tokens: int
    context_tokens: int
    n_ctx: int
    model: str


@dataclass(frozen=True)
class Candidates:
    """A step-mode generation waits for a Pick before reply token `position`: `top` is the
    final distribution's most likely tokens as (id, text, probability), most likely first,
    and `drawn` the token the sampler drew (when it is not among them, it comes last)."""

    request_id: str
    position: int
    drawn: int
    top: tuple[tuple[int, str, float], ...] = ()


Event = Union[ModelLoading, ModelLoaded, ModelFailed, Started, TextDelta, Done, Failed,
              TokenCount, Candidates]


def context_text(segments: tuple[Segment, ...]) -> str:
    """A context's text: its segments joined as they are (the separator is in them)."""
    return "".join(segment.text for segment in segments)


def new_request_id() -> str:
    """A fresh request id (the one place they are made)."""
    return uuid.uuid4().hex[:12]


def decode_rate(n_tokens: int, first_at: float | None, last_at: float | None) -> float | None:
    """Tokens per second: the tokens after the first over the time after the first.

    This leaves out the prefill (time to first token), so a long context does not
    drag the figure down; None until two tokens have arrived.
    """
    if first_at is None or last_at is None or n_tokens < 2 or last_at <= first_at:
        return None
    return (n_tokens - 1) / (last_at - first_at)


@dataclass
class Reply:
    """One request's reply, folded from its events with `apply` (the only fold).

    `text` and `token_ids` are the reply so far: a delta with `replace` (beam search)
    replaces them, any other delta appends. `rate` is `decode_rate`: while streaming
    on the arrival times given to `apply` (`now`; up to the moment asked about, so a
    stalled stream slows down), once done on the engine's own times (`Done.ttft` and
    `Done.seconds`), so both count the same way.
    """

    request_id: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    started: Started | None = None
    end: Done | Failed | None = None
    first_at: float | None = None
    last_at: float | None = None

    def apply(self, event: Event, now: float | None = None) -> bool:
        """Fold `event` in; False (and nothing changes) when it is another request's."""
        if getattr(event, "request_id", None) != self.request_id:
            return False
        if isinstance(event, Started):
            self.started = event
        elif isinstance(event, TextDelta):
            if event.replace:
                self.text, self.token_ids = event.text, list(event.token_ids)
            else:
                self.text += event.text
                self.token_ids.extend(event.token_ids)
            if now is not None:
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now
        elif isinstance(event, (Done, Failed)):
            self.end = event
        return True

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def done(self) -> bool:
        return self.end is not None

    def rate(self, now: float | None = None) -> float | None:
        """Tokens per second (see the class docstring); `now` while streaming."""
        if isinstance(self.end, Done):
            return decode_rate(self.end.n_tokens, self.end.ttft, self.end.seconds)
        return decode_rate(self.n_tokens, self.first_at,
                           self.last_at if now is None else max(now, self.last_at or now))

    @property
    def tokens_per_second(self) -> float | None:
        return self.rate()
