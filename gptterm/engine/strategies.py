"""Search strategies that look beyond one token: beam search and contrastive search.

Both run on the engine's per-session `Decoder` (model, KV cache of the prompt, last-layer
hidden states) after the prompt has been prefilled:

- `beam_search` keeps `num_beams` hypotheses on a private copy of the cache and never
  changes the session's cache. It follows transformers' `generate(num_beams=...)` step for
  step (the same top-2k continuations, finished-beam bookkeeping, length penalty and
  early-stopping heuristic), so it returns the very tokens `model.generate` returns.
- `contrastive_search` (Su et al. 2022, "A Contrastive Framework for Neural Text
  Generation") picks, among the top_k most likely tokens, the one maximising
  (1 - alpha) * p(v) - alpha * max cosine(h_v, h_j) over every earlier token j. The
  session cache grows by the chosen token each step, so the next turn reuses it.

Both check `cancel` (a threading.Event) before every model call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from gptterm.engine import sampling, stages
from gptterm.presets import Preset

_BIG = -1.0e9  # transformers' "never pick this" score offset
# One hypothesis as reported live: (generated ids, length-penalised score, finished).
Hypothesis = tuple[list[int], float, bool]


class _Beams:
    """The state of one beam search (batch of one), named after transformers' tensors."""

    def __init__(self, num_beams: int, prompt: list[int], device: Any):
        self.n = num_beams
        self.prompt_len = len(prompt)
        self.device = device
        # Running hypotheses: generated ids per beam; scores: summed log-probs. Only beam 0
        # starts live, so the first step does not pick the same token num_beams times.
        self.running: list[list[int]] = [[] for _ in range(num_beams)]
        self.running_scores = torch.zeros(num_beams, device=device)
        self.running_scores[1:] = _BIG
        # Finished hypotheses (slots start empty with a hopeless score).
        self.finished: list[list[int]] = [[] for _ in range(num_beams)]
        self.finished_scores = torch.full((num_beams,), _BIG, device=device)
        self.is_finished = torch.zeros(num_beams, dtype=torch.bool, device=device)
        self.improvable = True  # can a running beam still beat the finished ones?

    def histories(self, prompt: torch.Tensor) -> torch.Tensor:
        """[num_beams, T] token ids (prompt + generated) for the filter steps."""
        gen = torch.tensor(self.running, dtype=torch.long, device=self.device)
        return torch.cat([prompt.expand(self.n, -1), gen.reshape(self.n, -1)], dim=1)


@torch.inference_mode()
def _beam_step(state: _Beams, scores: torch.Tensor, *, cur_len: int, max_length: int,
               eos_token_id: int | None, length_penalty: float,
               early_stopping: bool) -> tuple[torch.Tensor, bool]:
    """Advance every beam by one token given processed log-probs [num_beams, V].

    Returns the source beam of each new running beam (to reorder the cache), and whether
    every candidate stopped (no way to continue).
    """
    n, vocab = scores.shape
    keep = 2 * n  # transformers keeps max(2, 1 + number of eos ids) * num_beams candidates
    flat = (scores + state.running_scores[:, None]).reshape(-1)
    top_scores, top_index = torch.topk(flat, k=keep)
    source = top_index // vocab
    tokens = top_index % vocab
    candidates = [state.running[b] + [t] for b, t in zip(source.tolist(), tokens.tolist())]

    # A candidate stops on end-of-sequence or when it reaches max_length.
    hits = torch.full((keep,), cur_len + 1 >= max_length, device=scores.device)
    if eos_token_id is not None:
        hits |= tokens == eos_token_id

    # The best num_beams candidates that go on.
    live_scores = top_scores + hits.to(torch.float32) * _BIG
    chosen = torch.topk(live_scores, k=n)[1]
    state.running = [candidates[i] for i in chosen.tolist()]
    state.running_scores = live_scores[chosen]
    beam_idx = source[chosen]

    # Finished candidates among the top num_beams join the finished pool if they beat it.
    top_mask = torch.zeros(keep, dtype=torch.bool, device=scores.device)
    top_mask[:n] = True
    just_finished = hits & top_mask
    done_scores = top_scores / ((cur_len + 1 - state.prompt_len) ** length_penalty)
    if early_stopping and bool(state.is_finished.all()):
        done_scores = done_scores + _BIG
    if not state.improvable:
        done_scores = done_scores + _BIG
    done_scores = done_scores + (~just_finished) * _BIG
    merged_scores = torch.cat([state.finished_scores, done_scores])
    merged = state.finished + candidates
    merged_finished = torch.cat([state.is_finished, just_finished])
    best = torch.topk(merged_scores, k=n)[1]
    state.finished = [merged[i] for i in best.tolist()]
    state.finished_scores = merged_scores[best]
    state.is_finished = merged_finished[best]
    return beam_idx, bool(hits.all())


def _still_improvable(state: _Beams, cur_len: int, length_penalty: float) -> bool:
    """transformers' early-stop heuristic: could the best running beam, scored at the
    current length, beat the worst finished one?"""
    best_possible = state.running_scores[:1] / ((cur_len - state.prompt_len) ** length_penalty)
    worst = torch.where(state.is_finished, state.finished_scores.min(), _BIG)
    return state.improvable and bool((best_possible > worst).any())


def hypotheses(state: _Beams, length_penalty: float, *, running: bool) -> list[Hypothesis]:
    """Every hypothesis with its length-penalised score, best first.

    Finished ones carry the score they finished with (what transformers returns as
    `sequences_scores`); with `running`, the live ones too, scored at their current
    length as transformers' early-stop heuristic scores them. Empty slots and banned
    continuations (hopeless scores) are left out.
    """
    found = [(list(ids), float(score), True) for ids, score, done
             in zip(state.finished, state.finished_scores.tolist(), state.is_finished.tolist())
             if done and score > _BIG / 2]
    if running and state.running[0]:  # every running hypothesis has the same length
        scored = state.running_scores / (len(state.running[0]) ** length_penalty)
        found += [(list(ids), score, False) for ids, raw, score
                  in zip(state.running, state.running_scores.tolist(), scored.tolist())
                  if raw > _BIG / 2]
    return sorted(found, key=lambda h: -h[1])


def beam_search(dec: Any, logits: torch.Tensor, *, preset: Preset, max_new_tokens: int,
                eos_token_id: int | None, cancel: threading.Event,
                on_beams: Callable[[list[Hypothesis]], None] | None = None,
                tokenizer: Any = None
                ) -> Iterator[tuple[list[int], bool]]:
    """Beam search with `preset.num_beams` beams from the prefilled prompt in `dec`.

    Yields (best running hypothesis, False) after every step so a UI can show it, and
    finally (best finished hypothesis, True). Hypotheses are generated ids only; one that
    ended on end-of-sequence includes it, as `model.generate` does. `dec.entry` is left as
    it was. On cancel the last yield is the best running hypothesis, marked final.
    `on_beams`, when given, gets `hypotheses` before every yield: the running and finished
    ones while the search goes on (and on cancel), the finished ones at the end.
    """
    num_beams = preset.num_beams
    prompt_ids = list(dec.entry.ids)
    device = dec.device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    chain = sampling.build_chain(preset, eos_token_id=eos_token_id, prompt_len=len(prompt_ids),
                                 tokenizer=tokenizer)
    state = _Beams(num_beams, prompt_ids, device)
    max_length = len(prompt_ids) + max_new_tokens
    cur_len = len(prompt_ids)
    past = None
    step_logits = logits.float()[None].expand(num_beams, -1)

    def report(running: bool) -> None:
        if on_beams is not None:
            on_beams(hypotheses(state, preset.length_penalty, running=running))

    while True:
        log_probs = torch.nn.functional.log_softmax(step_logits, dim=-1)
        log_probs = sampling.apply_chain(chain, state.histories(prompt), log_probs)
        beam_idx, all_stopped = _beam_step(state, log_probs, cur_len=cur_len, max_length=max_length,
                              eos_token_id=eos_token_id, length_penalty=preset.length_penalty,
                              early_stopping=preset.early_stopping)
        cur_len += 1
        state.improvable = _still_improvable(state, cur_len, preset.length_penalty)
        if (not state.improvable or (preset.early_stopping and bool(state.is_finished.all()))
                or all_stopped):
            break
        report(running=True)
        if cancel.is_set():
            yield state.running[0], True
            return
        yield state.running[0], False
        # The cache follows the beams; the prompt's copy is made once, on the first step,
        # with room for the whole reply. The session's own cache is never written.
        if past is None:
            past = dec.entry.past.fork(num_beams, room=max_new_tokens)
        past.reorder(beam_idx)
        last = torch.tensor([[h[-1]] for h in state.running], dtype=torch.long, device=device)
        step_logits = dec.runner.forward(last, past)
    report(running=False)
    yield state.finished[0], True


def contrastive_search(dec: Any, logits: torch.Tensor, *, preset: Preset, max_new_tokens: int,
                       eos_token_id: int | None, cancel: threading.Event,
                       inspect_top_k: int = 0, on_stages: Callable | None = None,
                       tokenizer: Any = None) -> Iterator[int]:
    """Contrastive search: yields one chosen token id per step.

    Each step runs the top_k candidates through the model as one batch on a fork of the
    session cache, scores them, and keeps the winner's row as the session cache, so
    `dec.entry` always holds the prompt plus every token yielded so far.
    With `inspect_top_k` and `on_stages`, `on_stages` gets each step's stages before the
    token is yielded: "model", the chain's steps, and "final": the chain's scores kept to
    the top_k candidates it chooses among (the winner need not be the most probable).
    """
    k, alpha = preset.top_k, preset.penalty_alpha
    entry = dec.entry
    prompt_len = len(entry.ids)
    named = sampling.named_chain(preset, eos_token_id=eos_token_id, prompt_len=prompt_len,
                                 tokenizer=tokenizer)
    chain = [step for _, step in named]
    for _ in range(max_new_tokens):
        if cancel.is_set():
            return
        history = torch.tensor([entry.ids], dtype=torch.long, device=dec.device)
        if inspect_top_k and on_stages is not None:
            scores, staged = stages.capture(named, history, logits.float()[None], inspect_top_k)
        else:
            scores = sampling.apply_chain(chain, history, logits.float()[None])
        probs = torch.softmax(scores[0], dim=-1)
        top_probs, top_ids = torch.topk(probs, k=min(k, probs.shape[-1]))
        if inspect_top_k and on_stages is not None:
            on_stages([*staged[:-1], (stages.FINAL, stages.among(scores, top_ids,
                                                                 inspect_top_k))])
        context = entry.hidden
        fork = entry.past.fork(len(top_ids))
        next_logits = dec.runner.forward(top_ids[:, None], fork)
        cand_hidden = fork.last_hidden()
        best = int(torch.argmax(contrastive_scores(top_probs, cand_hidden, context, alpha)))
        token = int(top_ids[best])
        # The winner's row of the fork is the session cache extended by `token`.
        entry.past = fork.select(best)
        entry.ids.append(token)
        logits = next_logits[best]
        yield token


def contrastive_scores(probs: torch.Tensor, candidates: torch.Tensor, context: torch.Tensor,
                       alpha: float) -> torch.Tensor:
    """(1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j) for each candidate v.

    Args:
        probs: [k] model probability of each candidate.
        candidates: [k, d] last hidden state of each candidate.
        context: [n, d] last hidden states of every earlier token.
    """
    cand = candidates / candidates.norm(dim=-1, keepdim=True)
    ctx = context / context.norm(dim=-1, keepdim=True)
    degeneration = (cand @ ctx.T).max(dim=-1).values
    return (1.0 - alpha) * probs - alpha * degeneration
