"""Replaying stored sessions: playback with the recorded timing, and verification.

Playback turns a session's turns into timed steps (`schedule`) and writes them
out at `speed` times the recorded pace (`play`); `turn_events` gives the same
as protocol `TextDelta`s for a UI. Verification (`verify`) re-runs every model
turn through a `runner` and compares the token ids with the stored ones.
`EngineRunner` is that runner on the real engine (torch is imported only when it
starts): it redoes each turn exactly as it was computed, from what the recorder
stored with it (`gptterm.recorder`): the context built from the stored turns before
it, the same window start, the same number of cached tokens reused (the turns are
re-run in order on one engine session, so the cache holds what it held then), the
effective max_new_tokens, the preset and the seed. A turn that stopped early
(cancelled, failed, interrupted) is compared up to where it stopped. A re-run that
starts from another context than the recorded one says so instead of comparing.
A turn written by a server (its stats name the backend) is re-run on that server, only
when it answers with the same flavour and version; its text is compared (a server need
not report token ids). Otherwise it cannot be verified here, which is said, never a
difference. A session's alternatives are verified too (`verify_each`: every reply of its
tree after its own context, in the order they were written), with the pinned memory the
turn recorded; a turn whose text was edited by hand cannot be verified, which is said.
Tokens picked by hand in step mode (the turn's stats "picked": reply positions) are given
to the re-run as they are (`Generate.forced_tokens`); the sampler still draws there, so
everything else must come out the same.

Stdlib only at import time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Self

from gptterm.protocol import TextDelta
from gptterm.store import Turn

# ------------------------------------------------------------------ playback


@dataclass(frozen=True)
class Step:
    """Write `text` at `at` seconds after playback starts (at speed 1)."""

    at: float
    turn: Turn
    text: str
    replace: bool = False


def turn_duration(turn: Turn) -> float:
    """How long the turn took to stream: the time of its last chunk (0 without chunks)."""
    return max((float(c[0]) for c in turn.chunks), default=0.0)


def recorded_seconds(turns: Sequence[Turn]) -> float:
    """The playback length at speed 1: the model turns' streaming times, end to end."""
    return sum(turn_duration(t) for t in turns)


def schedule(turns: Sequence[Turn]) -> list[Step]:
    """Every turn as timed steps; the pauses between turns (reading, typing) are left out.

    A turn without chunks (a user turn, an imported one) appears whole at once.
    Beam search chunks replace the reply so far (`replace=True`).
    """
    steps: list[Step] = []
    offset = 0.0
    for turn in turns:
        if not turn.chunks:
            steps.append(Step(offset, turn, turn.text))
            continue
        for chunk in turn.chunks:
            replace = len(chunk) > 2 and chunk[2] == "replace"
            steps.append(Step(offset + float(chunk[0]), turn, chunk[1], replace))
        offset += turn_duration(turn)
    return steps


def turn_events(turn: Turn, request_id: str) -> list[tuple[float, TextDelta]]:
    """A model turn as (seconds since its start, TextDelta) pairs, for a UI to play."""
    if not turn.chunks:
        return [(0.0, TextDelta(request_id, turn.text, tuple(turn.token_ids)))]
    return [(float(c[0]), TextDelta(request_id, c[1], replace=len(c) > 2 and c[2] == "replace"))
            for c in turn.chunks]


def play(turns: Sequence[Turn], write: Callable[[str], None], *, speed: float = 1.0,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic,
         on_turn: Callable[[Turn], None] | None = None) -> float:
    """Write the session out with its recorded timing, `speed` times faster.

    Beam search turns, whose text is replaced as the search goes, are written once,
    when their last replacement was recorded (as `gptterm generate` prints them).
    Returns the seconds playback took.
    """
    if speed <= 0:
        raise ValueError("speed must be > 0")
    steps = schedule(turns)
    start = clock()
    current: Turn | None = None
    pending: str | None = None  # a beam turn's latest full text, not yet written

    def flush_pending() -> None:
        nonlocal pending
        if pending is not None:
            write(pending)
            pending = None

    for step in steps:
        if step.turn is not current:
            flush_pending()
            current = step.turn
            if on_turn:
                on_turn(step.turn)
        wait = start + step.at / speed - clock()
        if wait > 0:
            sleep(wait)
        if step.replace:
            pending = step.text
        else:
            write(step.text)
    flush_pending()
    return clock() - start


# ------------------------------------------------------------------ verification


class ModelUnavailable(Exception):
    """The turn's model cannot be loaded here; the message says why."""


class RerunError(Exception):
    """The re-run itself failed (bad stored preset, engine failure); one line."""


class ContextDiffers(Exception):
    """The re-run's window is not the one the turn was written after; one line."""


class NotVerifiableHere(Exception):
    """The turn's server is not here as it was (unreachable, another version); one line."""


@dataclass(frozen=True)
class RerunText:
    """A re-run on a server: its text (what is compared) and the token ids it reported."""

    text: str
    token_ids: tuple[int, ...] = ()


def remote_turn(turn: Turn) -> bool:
    """Whether a server wrote the turn (its stats name the backend)."""
    return isinstance(turn.stats, dict) and isinstance(turn.stats.get("backend_flavor"), str)


@dataclass(frozen=True)
class TurnCheck:
    """The verdict on one model turn.

    outcome: "identical" | "differs" | "unavailable" | "unverifiable" | "failed".
    index: the first token index that differs (for "differs").
    """

    turn: Turn
    outcome: str
    index: int | None = None
    stored: int | None = None  # the stored token at `index` (None past its end)
    produced: int | None = None  # the re-run's token at `index` (None past its end)
    compared: int = 0  # tokens compared
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "identical"

    def line(self) -> str:
        """One line for people."""
        head = f"turn {self.turn.index}"
        if self.turn.alternatives > 1:
            head += f" reply {self.turn.alternative}/{self.turn.alternatives}"
        if self.turn.model:
            head += f" ({_label(self.turn)})"
        if self.outcome == "identical":
            extra = f"; the stored turn was {self.turn.status}" if self.turn.status != "complete" \
                else ""
            unit = "tokens" if self.turn.token_ids or not remote_turn(self.turn) \
                else "characters"  # a server that reports no ids is compared by text
            picked = len(picked_tokens(self.turn))
            if picked:
                extra = f", {picked} picked by hand{extra}"
            return f"{head}: identical ({self.compared} {unit}{extra})"
        if self.outcome == "differs" and self.index is None:
            return f"{head}: differs: {self.detail}"
        if self.outcome == "differs":
            def show(tok: int | None) -> str:
                return "end of reply" if tok is None else str(tok)

            return (f"{head}: differs at token index {self.index} "
                    f"(stored {show(self.stored)}, re-run {show(self.produced)})")
        return f"{head}: {self.detail}"

    def as_json(self) -> dict:
        return {"turn": self.turn.index, "model": self.turn.model, "outcome": self.outcome,
                "index": self.index, "stored": self.stored, "produced": self.produced,
                "compared": self.compared, "detail": self.detail,
                "alternative": self.turn.alternative, "alternatives": self.turn.alternatives}


def _label(turn: Turn) -> str:
    parts = [turn.model or "?"]
    if turn.preset:
        parts.append(f"{turn.preset.get('name', 'custom')}/{turn.preset.get('method', '?')}")
    if turn.seed is not None:
        parts.append(f"seed {turn.seed}")
    return ", ".join(parts)


def compare(turn: Turn, produced: Sequence[int]) -> TurnCheck:
    """Compare a re-run's tokens with the stored ones.

    A complete turn must match exactly. A cancelled, failed or partial turn stopped
    early, so only its stored tokens are compared with the start of the re-run.
    """
    stored = list(turn.token_ids)
    produced = list(produced)
    whole = turn.status == "complete"
    if not whole:
        produced = produced[: len(stored)]
    for i, (a, b) in enumerate(zip(stored, produced)):
        if a != b:
            return TurnCheck(turn, "differs", i, a, b, i)
    if len(stored) != len(produced):
        i = min(len(stored), len(produced))
        return TurnCheck(turn, "differs", i, stored[i] if i < len(stored) else None,
                         produced[i] if i < len(produced) else None, i)
    return TurnCheck(turn, "identical", compared=len(stored))


def compare_text(turn: Turn, produced: str) -> TurnCheck:
    """Compare a server's re-run by text, as `compare` does by tokens (a turn that stopped
    early is compared up to where it stopped); `index` is then a character index."""
    stored = turn.text
    if stopped_early(turn):
        produced = produced[: len(stored)]
    for i, (a, b) in enumerate(zip(stored, produced)):
        if a != b:
            return TurnCheck(turn, "differs", detail=f"differs at character {i} "
                             f"(stored {a!r}, re-run {b!r})")
    if len(stored) != len(produced):
        i = min(len(stored), len(produced))
        return TurnCheck(turn, "differs", detail=f"differs at character {i} (stored "
                         f"{'end of reply' if i >= len(stored) else repr(stored[i])}, re-run "
                         f"{'end of reply' if i >= len(produced) else repr(produced[i])})")
    return TurnCheck(turn, "identical", compared=len(turn.token_ids) or len(stored))


Runner = Callable[[Turn, Sequence[Turn]], Sequence[int]]  # (turn, turns before) -> ids


def stopped_early(turn: Turn) -> bool:
    """Whether the turn ended before the model did (only its stored tokens count)."""
    return turn.status != "complete"


def verify(turns: Sequence[Turn], runner: Runner) -> Iterator[TurnCheck]:
    """Re-run each model turn after the turns before it and compare its tokens.

    `runner(turn, before)` returns the token ids produced with the turn's model,
    preset and seed, or raises ModelUnavailable, RerunError or ContextDiffers.
    """
    yield from verify_each(((turn, turns[:i]) for i, turn in enumerate(turns)), runner)


def verify_each(pairs: Iterable[tuple[Turn, Sequence[Turn]]], runner: Runner
                ) -> Iterator[TurnCheck]:
    """`verify` over (turn, the turns before it) pairs: a session's whole tree, where each
    alternative has its own context. Turns that are not the model's are skipped."""
    for turn, before in pairs:
        if turn.role != "model":
            continue
        method = (turn.preset or {}).get("method")
        if isinstance(turn.stats, dict) and turn.stats.get("edited") is True:
            yield TurnCheck(turn, "unverifiable", detail="cannot verify: its text was edited "
                            "by hand")
        elif not turn.model or turn.preset is None:
            yield TurnCheck(turn, "unverifiable", detail="cannot verify: no model or preset "
                            "was recorded for this turn")
        elif turn.seed is None and method == "sample":
            yield TurnCheck(turn, "unverifiable", detail="cannot verify: this sampled turn "
                            "has no recorded seed")
        elif not (turn.token_ids or remote_turn(turn) and turn.text) and stopped_early(turn):
            yield TurnCheck(turn, "unverifiable",
                            detail=f"cannot verify: the {turn.status} turn stored no tokens")
        elif method == "beam" and stopped_early(turn):
            yield TurnCheck(turn, "unverifiable", detail="cannot verify: a beam search that "
                            "was stopped shows its best guess so far, which no re-run repeats")
        else:
            try:
                produced = runner(turn, before)
            except ModelUnavailable as exc:
                yield TurnCheck(turn, "unavailable",
                                detail=f"model {turn.model!r} is not available: {exc}")
                continue
            except RerunError as exc:
                yield TurnCheck(turn, "failed", detail=f"re-run failed: {exc}")
                continue
            except ContextDiffers as exc:
                yield TurnCheck(turn, "differs", detail=str(exc))
                continue
            except NotVerifiableHere as exc:
                yield TurnCheck(turn, "unverifiable", detail=f"cannot verify here: {exc}")
                continue
            if isinstance(produced, RerunText):
                yield compare_text(turn, produced.text)
            else:
                yield compare(turn, produced)


class EngineRunner:
    """A verify runner on a real engine: loads each turn's model (once) and re-runs it."""

    def __init__(self, device: str = "auto"):
        self.device = device
        self._client = None
        self._loaded: str | None = None
        self._failed: dict[str, str] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _load(self, name: str) -> None:
        from gptterm.engine.client import EngineClient, ModelLoadError

        if name in self._failed:
            raise ModelUnavailable(self._failed[name])
        if self._client is None:
            self._client = EngineClient(device=self.device)
        if self._loaded != name:
            try:
                self._client.load(name, self.device)
            except ModelLoadError as exc:
                self._failed[name] = str(exc)
                raise ModelUnavailable(str(exc)) from None
            self._loaded = name

    def _same_server(self, turn: Turn) -> None:
        """Load the server of a remote turn; NotVerifiableHere unless it is the same one."""
        from gptterm.engine.client import EngineClient, ModelLoadError

        if self._client is None:
            self._client = EngineClient(device=self.device)
        name = turn.model or ""
        if self._loaded != name:
            try:
                self._client.load(name, self.device)
            except ModelLoadError as exc:
                raise NotVerifiableHere(str(exc)) from None
            self._loaded = name
        loaded = self._client.loaded
        backend = loaded.backend if loaded is not None else None
        stats = turn.stats
        was = f"{stats.get('backend_flavor')} {stats.get('backend_version') or '?'}"
        if backend is None or (backend.flavor, backend.version) != (
                stats.get("backend_flavor"), stats.get("backend_version")):
            now = f"{backend.flavor} {backend.version or '?'}" if backend else "not a server"
            raise NotVerifiableHere(f"the turn was written by {was}, this server is {now}")
        if not backend.version:
            raise NotVerifiableHere(f"the server ({backend.flavor}) does not say its version")
        recorded = stats.get("backend_model")
        if isinstance(recorded, str) and recorded and recorded != backend.model:
            raise NotVerifiableHere(f"the turn was written by model {recorded!r}, this server "
                                    f"serves {backend.model or 'an unnamed model'!r}")

    def __call__(self, turn: Turn, before: Sequence[Turn]) -> list[int] | RerunText:
        from gptterm import presets
        from gptterm.protocol import Failed, Generate, Reply, Started, new_request_id
        from gptterm.recorder import context_segments

        # The pinned memory the turn was written with (recorded in its stats).
        memory = turn.stats.get("memory") if isinstance(turn.stats, dict) else None
        memory = memory if isinstance(memory, str) else ""
        values = {k: v for k, v in (turn.preset or {}).items() if k in presets.FIELD_NAMES}
        try:
            preset = presets.from_mapping(values, where=f"turn {turn.index} preset")
        except presets.PresetError as exc:
            raise RerunError(f"its stored preset is invalid: {exc}") from None
        stats = turn.stats if isinstance(turn.stats, dict) else {}
        max_new = _stat_int(stats, "max_new_tokens")
        if stopped_early(turn) and not remote_turn(turn):
            max_new = max(1, len(turn.token_ids))  # it stopped there: no need to go further
        # (A server's stream may miss ids, so its stopped turn re-runs to its full length
        # and only the stored text's length is compared.)
        if remote_turn(turn):
            self._same_server(turn)
            command = Generate(new_request_id(), f"verify:{turn.session_id}:{turn.model}",
                               preset=preset, max_new_tokens=max_new, seed=turn.seed,
                               context=context_segments(before, turn.model or "", memory),
                               pinned_segments=1 if memory else 0)
            reply = Reply(command.request_id)
            end = self._client.generate(command, reply.apply)
            if isinstance(end, Failed):
                raise RerunError(end.error)
            return RerunText(reply.text, tuple(reply.token_ids))
        self._load(turn.model or "")
        # One engine session per stored session and model, re-run in order: its cache
        # then holds what the original's held, and `reuse_limit` takes as much of it.
        command = Generate(new_request_id(), f"verify:{turn.session_id}:{turn.model}",
                           preset=preset, max_new_tokens=max_new, seed=turn.seed,
                           context=context_segments(before, turn.model or "", memory),
                           pinned_segments=1 if memory else 0,
                           window_start=_stat_int(stats, "window_start"),
                           reuse_limit=_stat_int(stats, "reused_tokens") or 0,
                           forced_tokens=picked_tokens(turn))
        reply = Reply(command.request_id)
        end = self._client.generate(command, reply.apply)
        if isinstance(end, Failed):
            raise RerunError(end.error)
        recorded = stats.get("context_sha")
        started = reply.started
        if isinstance(recorded, str) and isinstance(started, Started) \
                and started.context_sha != recorded:
            raise ContextDiffers(
                "the re-run starts from another context than the recorded one (window "
                f"start {started.window_start}, {started.prompt_tokens} tokens): an earlier "
                "turn's stored tokens or model, or the tokenizer, changed")
        return reply.token_ids


def picked_tokens(turn: Turn) -> tuple[tuple[int, int], ...]:
    """The turn's hand-picked tokens as (reply position, token id): its stats "picked"
    positions with the stored tokens there (positions past them, or not whole numbers,
    are left out: nothing to give)."""
    picked = turn.stats.get("picked") if isinstance(turn.stats, dict) else None
    if not isinstance(picked, list):
        return ()
    ids = turn.token_ids
    return tuple((p, ids[p]) for p in sorted({p for p in picked if isinstance(p, int)
                                              and not isinstance(p, bool)})
                 if 0 <= p < len(ids))


def _stat_int(stats: dict, key: str) -> int | None:
    """An integer a turn recorded in its stats, or None (older turns, odd values)."""
    value = stats.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None
