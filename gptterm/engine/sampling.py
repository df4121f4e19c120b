"""Sampling building blocks: small pure logits -> logits steps, the chain a preset asks for,
and one seeded picker that ends it.

Every step has the transformers `LogitsProcessor` signature, `step(history, logits)`,
with `history` the [B, T] token ids seen so far (prompt included) and `logits` the
[B, V] next-token scores; it returns new scores and never changes its inputs. Each one
computes exactly what the matching transformers processor computes (tests compare them on
random inputs), so greedy decoding here gives the tokens `model.generate` gives.

The llama.cpp shape: `build_chain(preset)` lists the active steps in `preset.order`,
`apply_chain` runs them, `pick` takes argmax (greedy) or draws from the softmax with a
per-request `torch.Generator` (sample), so one session's seed never depends on another's.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

import torch

from gptterm.presets import Preset, active_steps

Step = Callable[[torch.LongTensor, torch.FloatTensor], torch.FloatTensor]

_NEG_INF = -math.inf


# --- processors: they change scores in every method ------------------------------------


def repetition_penalty(penalty: float) -> Step:
    """Divide positive (multiply negative) scores of tokens already seen by `penalty`.

    Each token is penalised at most once, however often it occurs (CTRL paper; transformers
    `RepetitionPenaltyLogitsProcessor`).
    """

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        vocab = logits.shape[-1]
        # One spare column absorbs ids the output layer cannot produce.
        seen = torch.zeros((logits.shape[0], vocab + 1), dtype=torch.bool, device=logits.device)
        seen.scatter_(1, history.clamp(max=vocab), True)
        penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
        return torch.where(seen[:, :vocab], penalised, logits)

    return step


def no_repeat_ngram(size: int) -> Step:
    """Ban every token that would complete an n-gram of `size` already in the history."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        length = history.shape[-1]
        if length < size:  # no complete n-gram yet
            return logits
        # The last size-1 tokens are the prefix the next token would extend.
        prefix = history[:, length + 1 - size:]
        windows = history.unfold(1, size, 1)  # [B, T-size+1, size]
        hits = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        vocab = logits.shape[-1]
        banned = torch.zeros((logits.shape[0], vocab + 1), dtype=torch.bool, device=logits.device)
        # Windows that do not match write to the spare column.
        banned.scatter_(1, torch.where(hits, windows[..., -1].clamp(max=vocab), vocab), True)
        return logits.masked_fill(banned[:, :vocab], _NEG_INF)

    return step


def min_new_tokens(count: int, eos_token_id: int, prompt_len: int) -> Step:
    """Forbid end-of-sequence until `count` tokens past the prompt have been produced."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        if history.shape[-1] - prompt_len >= count:
            return logits
        out = logits.clone()
        out[:, eos_token_id] = _NEG_INF
        return out

    return step


# --- warpers: they reshape the distribution we sample from -----------------------------


def temperature(value: float) -> Step:
    """Divide scores by `value`: below 1 sharpens, above 1 flattens the distribution."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        return logits / value

    return step


def top_k(k: int, min_keep: int = 1) -> Step:
    """Keep the k highest scores (and every score tied with the k-th), drop the rest."""
    k = max(k, min_keep)

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        kth = torch.topk(logits, min(k, logits.shape[-1]))[0][..., -1, None]
        return logits.masked_fill(logits < kth, _NEG_INF)

    return step


def top_p(p: float, min_keep: int = 1) -> Step:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches p."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        ascending, order = torch.sort(logits, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        # Drop the unlikely tail whose total mass is at most 1 - p.
        drop = cumulative <= (1 - p)
        drop[..., -min_keep:] = False
        return logits.masked_fill(drop.scatter(1, order, drop), _NEG_INF)

    return step


def min_p(p: float, min_keep: int = 1) -> Step:
    """Drop tokens whose probability is below p times the top token's probability."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(logits, dim=-1)
        drop = probs < p * probs.amax(dim=-1, keepdim=True)
        keep = torch.topk(probs, min(min_keep, probs.shape[-1]), dim=-1).indices
        drop.scatter_(-1, keep, False)
        return logits.masked_fill(drop, _NEG_INF)

    return step


def typical_p(mass: float, min_keep: int = 1) -> Step:
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy,
    until their probability adds up to `mass` (Meister et al. 2022)."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        logp = torch.nn.functional.log_softmax(logits, dim=-1)
        entropy = -(logp * torch.exp(logp)).nansum(-1, keepdim=True)
        distance = torch.abs(-logp - entropy)
        sorted_distance, order = torch.sort(distance, descending=False)
        cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < mass).sum(dim=1).clamp_(max=sorted_distance.shape[-1] - 1)
        drop = sorted_distance > sorted_distance.gather(1, last.view(-1, 1))
        drop[..., :min_keep] = False
        return logits.masked_fill(drop.scatter(1, order, drop), _NEG_INF)

    return step


# --- the chain -------------------------------------------------------------------------


def build_chain(preset: Preset, *, eos_token_id: int | None, prompt_len: int) -> list[Step]:
    """The active filter steps of `preset`, in `preset.order` (see `named_chain`)."""
    return [step for _, step in named_chain(preset, eos_token_id=eos_token_id,
                                            prompt_len=prompt_len)]


def named_chain(preset: Preset, *, eos_token_id: int | None,
                prompt_len: int) -> list[tuple[str, Step]]:
    """The active filter steps of `preset` with their `order` names, in `preset.order`;
    no-op steps are left out (the inspector names each stage after its step).

    Warpers (temperature, top-k, top-p, min-p, typical) only act when `preset.method` is
    "sample", as in transformers. `min_new_tokens` needs the end-of-sequence id and the
    prompt length (history beyond it counts as new tokens).
    """
    active = set(active_steps(preset))
    if eos_token_id is None:  # nothing to hold back
        active.discard("min_new_tokens")
    makers: dict[str, Callable[[], Step]] = {
        "repetition_penalty": lambda: repetition_penalty(preset.repetition_penalty),
        "no_repeat_ngram": lambda: no_repeat_ngram(preset.no_repeat_ngram_size),
        "min_new_tokens": lambda: min_new_tokens(preset.min_new_tokens, eos_token_id,
                                                 prompt_len),
        "temperature": lambda: temperature(preset.temperature),
        "top_k": lambda: top_k(preset.top_k),
        "top_p": lambda: top_p(preset.top_p),
        "min_p": lambda: min_p(preset.min_p),
        "typical_p": lambda: typical_p(preset.typical_p),
    }
    return [(name, makers[name]()) for name in preset.order if name in active]


def apply_chain(chain: list[Step], history: torch.LongTensor,
                logits: torch.FloatTensor) -> torch.FloatTensor:
    """Run `logits` through every step of `chain` in order."""
    for step in chain:
        logits = step(history, logits)
    return logits


def make_generator(seed: int | None, device) -> torch.Generator:
    """A generator for one request: seeded with `seed`, or a fresh random seed when None.

    Each request owns its generator, so what one session draws never shifts another's.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(secrets.randbits(63) if seed is None else seed)
    return generator


def pick(logits: torch.FloatTensor, preset: Preset,
         generator: torch.Generator | None) -> torch.LongTensor:
    """The next token of each row: argmax, or a draw from softmax(logits) when sampling."""
    if preset.method == "sample":
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    return torch.argmax(logits, dim=-1)
