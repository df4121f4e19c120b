"""One generation request on the worker thread: build the context, place the window,
prefill, decode, emit.

A pinned memory (`Generate.pinned_segments`) stays at the window's start
(`window.place_pinned`): the decoder then sees the memory and the rest of the context from
its start as one window from position 0, so the memory's cache always hits; the reply
gets room for its whole length up front (`window.room_needed`), so no slide while it is
written can push the memory out.

Token-by-token strategies (greedy, sample, contrastive) are generators of token ids;
`run_generation` consumes them, turns ids into text, watches for end-of-text, stop
strings and cancel, and emits protocol events. Beam search yields whole hypotheses.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Iterator

import torch

from gptterm.engine import window
from gptterm.engine.cache import SessionCaches
from gptterm.engine.context import context_ids, window_sha
from gptterm.engine.decode import Decoder
from gptterm.engine.detokenize import IncrementalDecoder, token_text
from gptterm.engine.stages import capture, inspected
from gptterm.presets import Preset
from gptterm.protocol import (STEP_METHODS, BeamView, Candidates, Done, Event, Generate,
                              Started, TextDelta, TokenInspect)

STEP_TOP_K = 9  # candidates a step offers (number keys 1-9)


def sample_tokens(dec: Decoder, logits: torch.Tensor, *, preset: Preset, prompt_ids: list[int],
                  max_new_tokens: int, eos_token_id: int | None, seed: int,
                  inspect_top_k: int = 0, on_alternatives: Callable | None = None,
                  on_stages: Callable | None = None, tokenizer: Any = None,
                  forced: dict[int, int] | None = None, choose: Callable | None = None
                  ) -> Iterator[int]:
    """Greedy or sampled decoding: filter chain, then one seeded pick per step.

    With `inspect_top_k` and `on_stages`, each step's chain runs stage by stage and
    `on_stages` gets every stage's top (see engine.stages) before the token is yielded.
    `forced` (reply position -> token id) and `choose(position, drawn, scores)` (step
    mode: returns the token to take) replace a step's token only after the draw, so the
    seeded generator advances exactly as in a run without them.
    """
    from gptterm.engine import sampling

    generator = sampling.make_generator(seed, dec.device)
    named = sampling.named_chain(preset, eos_token_id=eos_token_id, prompt_len=len(prompt_ids),
                                 tokenizer=tokenizer, generator=generator)
    chain = [step for _, step in named]
    staged = bool(inspect_top_k and on_stages is not None)
    history = torch.empty(len(prompt_ids) + max_new_tokens, dtype=torch.long, device=dec.device)
    history[: len(prompt_ids)] = torch.tensor(prompt_ids, dtype=torch.long)
    length = len(prompt_ids)
    for step in range(max_new_tokens):
        if staged:  # the chain step by step, each stage's top noted
            scores, stages = capture(named, history[None, :length], logits[None], inspect_top_k)
            on_stages(stages)
        else:
            # No filter step (plain greedy or sampling): no history to keep, no views per token.
            scores = (sampling.apply_chain(chain, history[None, :length], logits[None])
                      if chain else logits[None])
        token = sampling.pick(scores, preset, generator)[0].item()
        if forced and step in forced:
            token = forced[step]
        if choose is not None:
            token = choose(step, token, scores[0])
        if staged and on_alternatives is not None:  # the final stage is that top already
            on_alternatives(list(stages[-1][1]))
        elif inspect_top_k and on_alternatives is not None:
            probs = torch.softmax(scores[0].float(), dim=-1)
            top = torch.topk(probs, min(inspect_top_k, probs.shape[-1]))
            on_alternatives(list(zip(top.indices.tolist(), top.values.tolist())))
        yield token
        if chain:
            history[length] = token
            length += 1
        if step + 1 < max_new_tokens:
            logits = dec.advance(token)


FRAME = 1 / 60  # seconds: a reply's text goes out at most this often (see TextSink)


class TextSink:
    """Turns generated ids into TextDelta events, holding back a possible stop string, at
    most one event a `frame`.

    At a stop string the reply keeps only the tokens whose text ends before it, so the
    stored ids and text say the same thing (the next turn's context is built from them).

    While tokens come faster than `frame`, their text waits and the next delta due carries
    it all: every event wakes the reader's thread (the UI's, the CLI's), and on
    shakespeare-mini, a millisecond a token, one event per token cost 11% of the speed; a
    screen shows nothing faster anyway. The first token goes out at once (time to first
    token is unchanged), tokens slower than a frame each go out as they come, and a stop
    or `finish` sends what waits.
    """

    def __init__(self, request_id: str, detok: IncrementalDecoder, stops: tuple[str, ...],
                 emit: Callable[[Event], None], frame: float = FRAME,
                 clock: Callable[[], float] = time.perf_counter):
        self.request_id = request_id
        self.detok = detok
        self.stops = stops
        self.emit = emit
        self.frame, self.clock = frame, clock
        self.sent_at = -math.inf  # when the last delta went out
        self.text = ""  # all reply text decoded so far
        self.sent = 0  # characters of `text` already emitted
        self.ids: list[int] = []  # every token pushed
        self.ends: list[int] = []  # len(text) after each token
        self.sent_ids = 0  # tokens already emitted
        self.alts: list[tuple[tuple[str, float], ...]] = []
        self.insp: list[TokenInspect] = []  # one per token in `ids` when inspecting
        self.stopped = False

    @property
    def n_tokens(self) -> int:
        """Tokens in the reply (after a stop: the ones kept), once finished."""
        return self.sent_ids

    def push(self, token: int, alternatives: tuple = (),
             inspect: TokenInspect | None = None) -> None:
        self.ids.append(token)
        if alternatives:
            self.alts.append(alternatives)
        if inspect is not None:
            self.insp.append(inspect)
        self.text += self.detok.push([token])
        self.ends.append(len(self.text))
        self._take()

    def finish(self) -> None:
        """Send everything left (the decoder's last bytes too)."""
        if not self.stopped:
            self.text += self.detok.flush()
            if self.ends:
                self.ends[-1] = len(self.text)
            self._emit(len(self.text), len(self.ids), now=True)

    def _take(self) -> None:
        found = min((f for f in (self.text.find(s, max(0, self.sent - len(s)))
                                 for s in self.stops) if f != -1), default=-1)
        if found != -1:
            self.stopped = True
            keep = sum(1 for e in self.ends if e <= found)  # whole tokens before the stop
            while keep and self.ends[keep - 1] == (self.ends[keep - 2] if keep > 1 else 0):
                keep -= 1  # its bytes wait for a later token: part of a split character
            end = self.ends[keep - 1] if keep else 0
            if keep < self.sent_ids or end < self.sent:  # already showed too much: redo
                self.emit(TextDelta(self.request_id, self.text[:end], tuple(self.ids[:keep]),
                                    tuple(self.alts[:keep]), replace=True,
                                    inspect=tuple(self.insp[:keep])))
                self.sent, self.sent_ids = end, keep
            else:
                self._emit(end, keep, now=True)
            return
        self._emit(len(self.text) - _held_back(self.text, self.stops), len(self.ids))

    def _emit(self, end: int, n_ids: int, now: bool = False) -> None:
        """Send text up to `end` and ids up to `n_ids` not sent yet; unless `now`, only
        when a frame has passed since the last delta (else they wait for the next)."""
        if end > self.sent or n_ids > self.sent_ids:
            at = self.clock()
            if not now and at - self.sent_at < self.frame:
                return
            self.sent_at = at
            self.emit(TextDelta(self.request_id, self.text[self.sent:end],
                                tuple(self.ids[self.sent_ids:n_ids]),
                                tuple(self.alts[self.sent_ids:n_ids]),
                                inspect=tuple(self.insp[self.sent_ids:n_ids])))
            self.sent, self.sent_ids = max(end, self.sent), n_ids


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    held = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), held, -1):
            if stop.startswith(text[-n:]):
                held = n
                break
    return held


def run_generation(lm: Any, caches: SessionCaches, command: Generate, seed: int,
                   cancel: threading.Event, emit: Callable[[Event], None],
                   wait_pick: Callable[[], int | None] | None = None) -> None:
    """Serve one Generate: emits Started, TextDelta*, then Done.

    In step mode each token first emits Candidates and waits on `wait_pick` (the engine
    serves other commands meanwhile); a cancel while it waits ends the reply before that
    token. Text goes out at most once a frame (`TextSink`).
    """
    t0 = time.perf_counter()
    preset = command.preset
    check_steps(command, lm.model.config.vocab_size)
    tokenizer = lm.tokenizer
    requested = command.max_new_tokens or preset.max_new_tokens
    max_new = window.cap_max_new(requested, lm.n_ctx)
    start_token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
        else lm.eos_token_id
    full, tokenized = context_ids(tokenizer, command.segments(), lm.model.config.vocab_size,
                                  start_token)
    entry = caches.get(command.session_id)
    pinned = pinned_tokens(command, tokenized)
    need = window.room_needed(preset.method, max_new, pinned)
    kept = window.pinned_kept(pinned, lm.n_ctx, need)
    # With a pinned memory the cache holds the window from 0 (offset 0); the start of the
    # rest of the context is kept on the entry, so the next turn keeps it too.
    before = (entry.rest_start if kept else entry.offset) if entry.ids else 0
    start = command.window_start
    if start is None or not 0 <= start < len(full):
        start = window.place_pinned(len(full), pinned, before, lm.n_ctx, need)
    ids = window.window_ids(full, pinned, start, lm.n_ctx, need)
    dec = Decoder(lm.runner or lm.model, entry, lm.device, lm.n_ctx)
    if kept:
        logits, reused = dec.prefill(ids, 0, command.reuse_limit)
        entry.rest_start = start
    else:
        logits, reused = dec.prefill(full, start, command.reuse_limit)
    caches.enforce_budget(keep=command.session_id)
    dropped = window.left_out(start, pinned, lm.n_ctx, need) \
        - window.left_out(before, pinned, lm.n_ctx, need)
    emit(Started(command.request_id, len(ids), reused, window_start=start,
                 dropped_tokens=max(0, dropped), max_new_tokens=max_new,
                 requested_max_new_tokens=requested, tokenized=tokenized,
                 context_sha=window_sha(ids), n_ctx=lm.n_ctx))

    detok = IncrementalDecoder(tokenizer, ids, strip_cjk=lm.spec.strip_cjk_spaces)
    ttft = 0.0
    n_tokens = 0
    reason = "length"
    if preset.method == "beam":
        n_tokens, reason, ttft = _run_beam(lm, dec, logits, ids, command, max_new, cancel,
                                           emit, t0)
    else:
        alternatives: list = []
        stages: list = []  # the stages of the token about to be yielded (inspection)
        token_texts: dict[int, str] = {}  # each candidate decoded once per reply

        def text_of(token: int) -> str:
            if token not in token_texts:
                token_texts[token] = token_text(tokenizer, token)
            return token_texts[token]

        def note_alternatives(pairs: list) -> None:
            alternatives[:] = [tuple((text_of(i), float(p)) for i, p in pairs)]

        def note_stages(found: list) -> None:
            stages[:] = found

        if preset.method == "contrastive":
            from gptterm.engine.strategies import contrastive_search

            tokens = contrastive_search(dec, logits, preset=preset, max_new_tokens=max_new,
                                        eos_token_id=lm.eos_token_id, cancel=cancel,
                                        inspect_top_k=command.inspect_top_k,
                                        on_stages=note_stages, tokenizer=tokenizer)
        else:
            choose = step_chooser(text_of, command.request_id, emit, wait_pick) \
                if command.step_mode and wait_pick is not None else None
            tokens = sample_tokens(dec, logits, preset=preset, prompt_ids=ids,
                                   max_new_tokens=max_new, eos_token_id=lm.eos_token_id,
                                   seed=seed, inspect_top_k=command.inspect_top_k,
                                   on_alternatives=note_alternatives,
                                   on_stages=note_stages, tokenizer=tokenizer,
                                   forced=dict(command.forced_tokens), choose=choose)
        # A stepped reply waits on a person at every token: each goes out before the next
        # Candidates.
        sink = TextSink(command.request_id, detok, tuple(preset.stop), emit,
                        frame=0.0 if command.step_mode else FRAME)
        try:
            for token in tokens:
                ttft = ttft or time.perf_counter() - t0
                if command.step_mode and cancel.is_set():  # stopped while it waited for a pick
                    reason = "cancelled"
                    break
                if token == lm.eos_token_id:
                    reason = "eos"
                    break
                sink.push(token, alternatives[0] if alternatives else (),
                          inspected(token, stages, text_of) if stages else None)
                if sink.stopped:
                    reason = "stop"
                    break
                if cancel.is_set():
                    reason = "cancelled"
                    break
        finally:  # a failure mid-reply still sends the text that waits
            tokens.close()
            sink.finish()
        n_tokens = sink.n_tokens
    # The window at the end: from where it starts now (sliding may have moved it) to the
    # end of the reply. Not len(entry.ids): the cache lacks the last token until the next
    # turn feeds it, and beam search decodes on copies of the cache.
    in_window = min(len(ids if kept else full) + n_tokens - entry.offset, lm.n_ctx)
    emit(Done(command.request_id, reason, n_tokens, time.perf_counter() - t0, ttft,
              in_window, start if kept else entry.offset, max_new))


def check_steps(command: Generate, vocab_size: int) -> None:
    """ValueError (one line) when `command`'s step mode or forced tokens cannot be served."""
    if (command.step_mode or command.forced_tokens) and command.preset.method not in STEP_METHODS:
        raise ValueError(f"step mode and hand-picked tokens need a greedy or sampling preset, "
                         f"not {command.preset.method}")
    for position, token in command.forced_tokens:
        if position < 0 or not 0 <= token < vocab_size:
            raise ValueError(f"forced token {token} at reply position {position}: expected a "
                             f"position >= 0 and an id below the vocabulary size {vocab_size}")


def step_chooser(text_of: Callable[[int], str], request_id: str,
                 emit: Callable[[Event], None], wait_pick: Callable[[], int | None]
                 ) -> Callable[[int, int, torch.Tensor], int]:
    """Step mode's `choose` for `sample_tokens`: emit the final distribution's top tokens
    (their texts by `text_of`, the reply's cache) and the draw as Candidates (the draw last
    when it is not among them, so its text is known), then take the Pick (None: the draw)."""

    def choose(position: int, drawn: int, scores: torch.Tensor) -> int:
        probs = torch.softmax(scores.float(), dim=-1)
        top = torch.topk(probs, min(STEP_TOP_K, probs.shape[-1])).indices.tolist()
        if drawn not in top:
            top.append(drawn)
        emit(Candidates(request_id, position, drawn, tuple(
            (i, text_of(i), probs[i].item()) for i in top)))
        picked = wait_pick()
        if picked is None:
            return drawn
        if not 0 <= picked < probs.shape[-1]:
            raise ValueError(f"pick: token id {picked} is not below the vocabulary size "
                             f"{probs.shape[-1]}")
        return picked

    return choose


def pinned_tokens(command: Generate, tokenized: tuple[tuple[int, tuple[int, ...]], ...]) -> int:
    """How many tokens the command's pinned segments take at the context's start (their
    stored ids, or the ids the engine made for them)."""
    made = dict(tokenized)
    segments = command.segments()[: command.pinned_segments]
    return sum(len(made[i]) if i in made else len(s.token_ids or ())
               for i, s in enumerate(segments))


def _run_beam(lm: Any, dec: Decoder, logits: torch.Tensor, ids: list[int], command: Generate,
              max_new: int, cancel: threading.Event, emit: Callable[[Event], None],
              t0: float) -> tuple[int, str, float]:
    """Beam search: every update replaces the reply with the current best hypothesis and
    carries every hypothesis (`TextDelta.beams`).

    Returns (tokens in the reply, Done reason, time to the first update).
    """
    from gptterm.engine.strategies import beam_search

    preset, eos = command.preset, lm.eos_token_id
    ttft = 0.0
    best: list[int] = []
    shown: list[int] = []
    stopped = False
    views: list[tuple[BeamView, ...]] = [()]
    texts: dict[tuple[int, ...], str] = {}

    def note_beams(hyps: list) -> None:
        views[0] = beam_views(hyps, texts, lambda reply: _decode_all(
            lm.tokenizer, ids, [t for t in reply if t != eos], lm))

    for best, final in beam_search(dec, logits, preset=preset, max_new_tokens=max_new,
                                   eos_token_id=eos, cancel=cancel, on_beams=note_beams,
                                   tokenizer=lm.tokenizer):
        ttft = ttft or time.perf_counter() - t0
        shown = [t for t in best if t != eos]
        full = _decode_all(lm.tokenizer, ids, shown, lm)
        text = _cut_at_stop(full, preset.stop)
        stopped = len(text) < len(full)
        if stopped:  # keep just the tokens that make up the text before the stop string
            while shown and len(_decode_all(lm.tokenizer, ids, shown[:-1], lm)) >= len(text):
                shown.pop()
        emit(TextDelta(command.request_id, text, tuple(shown), replace=True, beams=views[0]))
        if cancel.is_set():
            break
    reason = ("cancelled" if cancel.is_set() else "stop" if stopped else
              "eos" if best and best[-1] == eos else "length")
    return len(shown), reason, ttft


def beam_views(hyps: list, texts: dict[tuple[int, ...], str],
               decode: Callable[[list[int]], str]) -> tuple[BeamView, ...]:
    """BeamViews of (ids, score, finished) hypotheses. `texts` remembers the text of every
    hypothesis of the last step, so a finished one is decoded once, not every step."""
    known = dict(texts)
    texts.clear()
    out = []
    for reply, score, finished in hyps:
        key = tuple(reply)
        text = known[key] if key in known else decode(reply)
        texts[key] = text
        out.append(BeamView(text, key, score, finished))
    return tuple(out)


def _decode_all(tokenizer: Any, context: list[int], reply: list[int], lm: Any) -> str:
    detok = IncrementalDecoder(tokenizer, context, strip_cjk=lm.spec.strip_cjk_spaces)
    return detok.push(reply) + detok.flush()


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cuts = [text.find(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text
