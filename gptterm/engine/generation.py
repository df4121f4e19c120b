"""One generation request on the worker thread: fit the context, prefill, decode, emit.

Token-by-token strategies (greedy, sample, contrastive) are generators of token ids;
`run_generation` consumes them, turns ids into text, watches for end-of-text, stop
strings and cancel, and emits protocol events. Beam search yields whole hypotheses.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import torch

from gptterm.engine.cache import CacheEntry, SessionCaches
from gptterm.engine.decode import Decoder
from gptterm.engine.detokenize import IncrementalDecoder
from gptterm.presets import Preset
from gptterm.protocol import Done, Event, Generate, Started, TextDelta


def fit_context(full: list[int], entry: CacheEntry, n_ctx: int, max_new: int) -> list[int]:
    """The window of `full` to feed the model, leaving room for `max_new` tokens.

    Past the window the oldest tokens are dropped, down to half the context, so the
    next turns keep this window start (stored in `entry.offset`) and reuse the cache.
    """
    room = n_ctx - max_new
    if entry.offset >= len(full):
        entry.offset = 0
    ids = full[entry.offset:]
    if len(ids) > room:
        keep = max(1, min(room, n_ctx // 2))
        entry.offset = len(full) - keep
        ids = full[entry.offset:]
    return ids


def sample_tokens(dec: Decoder, logits: torch.Tensor, *, preset: Preset, prompt_ids: list[int],
                  max_new_tokens: int, eos_token_id: int | None, seed: int,
                  inspect_top_k: int = 0, on_alternatives: Callable | None = None
                  ) -> Iterator[int]:
    """Greedy or sampled decoding: filter chain, then one seeded pick per step."""
    from gptterm.engine import sampling

    chain = sampling.build_chain(preset, eos_token_id=eos_token_id, prompt_len=len(prompt_ids))
    generator = sampling.make_generator(seed, dec.device)
    history = torch.empty(len(prompt_ids) + max_new_tokens, dtype=torch.long, device=dec.device)
    history[: len(prompt_ids)] = torch.tensor(prompt_ids, dtype=torch.long)
    length = len(prompt_ids)
    for step in range(max_new_tokens):
        scores = sampling.apply_chain(chain, history[None, :length], logits[None])
        token = int(sampling.pick(scores, preset, generator)[0])
        if inspect_top_k and on_alternatives is not None:
            probs = torch.softmax(scores[0].float(), dim=-1)
            top = torch.topk(probs, min(inspect_top_k, probs.shape[-1]))
            on_alternatives(list(zip(top.indices.tolist(), top.values.tolist())))
        yield token
        history[length] = token
        length += 1
        if step + 1 < max_new_tokens:
            logits = dec.advance(token)


class TextSink:
    """Turns generated ids into TextDelta events, holding back a possible stop string."""

    def __init__(self, request_id: str, detok: IncrementalDecoder, stops: tuple[str, ...],
                 emit: Callable[[Event], None]):
        self.request_id = request_id
        self.detok = detok
        self.stops = stops
        self.emit = emit
        self.text = ""  # all reply text decoded so far
        self.sent = 0  # characters of `text` already emitted
        self.pending_ids: list[int] = []
        self.pending_alts: list[tuple[tuple[str, float], ...]] = []
        self.stopped = False

    def push(self, token: int, alternatives: tuple = ()) -> None:
        self.pending_ids.append(token)
        if alternatives:
            self.pending_alts.append(alternatives)
        self._take(self.detok.push([token]))

    def finish(self) -> None:
        if not self.stopped:
            self._take(self.detok.flush(), final=True)

    def _take(self, delta: str, final: bool = False) -> None:
        self.text += delta
        end = len(self.text)
        for stop in self.stops:
            found = self.text.find(stop, max(0, self.sent - len(stop)))
            if found != -1 and found < end:
                end, self.stopped = found, True
        if not self.stopped and not final:
            end -= _held_back(self.text, self.stops)
        if end > self.sent or (self.pending_ids and final):
            self.emit(TextDelta(self.request_id, self.text[self.sent:end],
                                tuple(self.pending_ids), tuple(self.pending_alts)))
            self.sent = end
            self.pending_ids, self.pending_alts = [], []


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
                   cancel: threading.Event, emit: Callable[[Event], None]) -> None:
    """Serve one Generate: emits Started, TextDelta*, then Done."""
    t0 = time.perf_counter()
    preset = command.preset
    tokenizer = lm.tokenizer
    max_new = max(1, min(command.max_new_tokens or preset.max_new_tokens, lm.n_ctx - 1))
    full = tokenizer(command.prompt, add_special_tokens=False)["input_ids"]
    if not full:  # an empty prompt starts from the start-of-text token
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else lm.eos_token_id
        full = [start if start is not None else 0]
    entry = caches.get(command.session_id)
    ids = fit_context(full, entry, lm.n_ctx, max_new)
    dec = Decoder(lm.model, entry, lm.device)
    logits, reused = dec.prefill(ids)
    caches.enforce_budget(keep=command.session_id)
    emit(Started(command.request_id, len(ids), reused))

    detok = IncrementalDecoder(tokenizer, ids, strip_cjk=lm.spec.strip_cjk_spaces)
    ttft = 0.0
    n_tokens = 0
    reason = "length"
    if preset.method == "beam":
        n_tokens, reason, ttft = _run_beam(lm, dec, logits, ids, command, max_new, cancel,
                                           emit, t0)
    else:
        alternatives: list = []

        def note_alternatives(pairs: list) -> None:
            alternatives[:] = [tuple((tokenizer.decode([i]), float(p)) for i, p in pairs)]

        if preset.method == "contrastive":
            from gptterm.engine.strategies import contrastive_search

            tokens = contrastive_search(dec, logits, preset=preset, max_new_tokens=max_new,
                                        eos_token_id=lm.eos_token_id, cancel=cancel)
        else:
            tokens = sample_tokens(dec, logits, preset=preset, prompt_ids=ids,
                                   max_new_tokens=max_new, eos_token_id=lm.eos_token_id,
                                   seed=seed, inspect_top_k=command.inspect_top_k,
                                   on_alternatives=note_alternatives)
        sink = TextSink(command.request_id, detok, tuple(preset.stop), emit)
        for token in tokens:
            ttft = ttft or time.perf_counter() - t0
            if token == lm.eos_token_id:
                reason = "eos"
                break
            n_tokens += 1
            sink.push(token, alternatives[0] if alternatives else ())
            if sink.stopped:
                reason = "stop"
                break
            if cancel.is_set():
                reason = "cancelled"
                break
        tokens.close()
        sink.finish()
    emit(Done(command.request_id, reason, n_tokens, time.perf_counter() - t0, ttft,
              len(entry.ids)))


def _run_beam(lm: Any, dec: Decoder, logits: torch.Tensor, ids: list[int], command: Generate,
              max_new: int, cancel: threading.Event, emit: Callable[[Event], None],
              t0: float) -> tuple[int, str, float]:
    """Beam search: every update replaces the reply with the current best hypothesis.

    Returns (tokens in the reply, Done reason, time to the first update).
    """
    from gptterm.engine.strategies import beam_search

    preset, eos = command.preset, lm.eos_token_id
    ttft = 0.0
    best: list[int] = []
    shown: list[int] = []
    stopped = False
    for best, final in beam_search(dec, logits, preset=preset, max_new_tokens=max_new,
                                   eos_token_id=eos, cancel=cancel):
        ttft = ttft or time.perf_counter() - t0
        shown = [t for t in best if t != eos]
        full = _decode_all(lm.tokenizer, ids, shown, lm)
        text = _cut_at_stop(full, preset.stop)
        stopped = len(text) < len(full)
        if stopped:  # keep just the tokens that make up the text before the stop string
            while shown and len(_decode_all(lm.tokenizer, ids, shown[:-1], lm)) >= len(text):
                shown.pop()
        emit(TextDelta(command.request_id, text, tuple(shown), replace=True))
        if cancel.is_set():
            break
    reason = ("cancelled" if cancel.is_set() else "stop" if stopped else
              "eos" if best and best[-1] == eos else "length")
    return len(shown), reason, ttft


def _decode_all(tokenizer: Any, context: list[int], reply: list[int], lm: Any) -> str:
    detok = IncrementalDecoder(tokenizer, context, strip_cjk=lm.spec.strip_cjk_spaces)
    return detok.push(reply) + detok.flush()


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cuts = [text.find(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text
