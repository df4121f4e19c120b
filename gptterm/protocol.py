"""Commands to the engine worker and the events it sends back.

Plain frozen dataclasses from the standard library only: the UI, the CLI and the
store build and read them without importing torch or textual.
"""

from __future__ import annotations

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
class Generate:
    """Continue `prompt`, the whole context of a session, with `preset`.

    The engine reuses the longest cached token prefix of `session_id`.
    `max_new_tokens` and `seed` of None fall back to the preset's values.
    """

    request_id: str
    session_id: str
    prompt: str
    preset: Preset = field(default_factory=Preset)
    max_new_tokens: int | None = None
    seed: int | None = None
    inspect_top_k: int = 0


@dataclass(frozen=True)
class Cancel:
    """Stop the generation `request_id` at the next token."""

    request_id: str


@dataclass(frozen=True)
class DropSession:
    """Forget the KV cache of a session."""

    session_id: str


@dataclass(frozen=True)
class Shutdown:
    """Stop the worker thread."""


Command = Union[LoadModel, Generate, Cancel, DropSession, Shutdown]

# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class ModelLoading:
    """Loading progress, `fraction` in [0, 1]."""

    name: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class ModelLoaded:
    """A model is ready."""

    name: str
    device: str
    n_ctx: int


@dataclass(frozen=True)
class ModelFailed:
    """A model could not be loaded; the previous one (if any) stays in use."""

    name: str
    error: str


@dataclass(frozen=True)
class Started:
    """Generation began: prompt tokens in context, of which reused from the cache."""

    request_id: str
    prompt_tokens: int
    reused_tokens: int


@dataclass(frozen=True)
class TextDelta:
    """New printable text and the tokens that produced it.

    `replace` is True when `text` replaces the whole reply so far (beam search
    shows its current best hypothesis). `alternatives` holds, per token in
    `token_ids`, the top candidates as (text, probability) when inspection is on.
    """

    request_id: str
    text: str
    token_ids: tuple[int, ...] = ()
    alternatives: tuple[tuple[tuple[str, float], ...], ...] = ()
    replace: bool = False


DoneReason = Literal["eos", "length", "stop", "cancelled"]


@dataclass(frozen=True)
class Done:
    """Generation ended normally or by cancel; `ttft` in seconds."""

    request_id: str
    reason: DoneReason
    n_tokens: int
    seconds: float
    ttft: float
    context_tokens: int = 0


@dataclass(frozen=True)
class Failed:
    """Generation failed with a one-line error."""

    request_id: str
    error: str


Event = Union[ModelLoading, ModelLoaded, ModelFailed, Started, TextDelta, Done, Failed]
