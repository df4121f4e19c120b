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

import bisect
import functools
import math
import secrets
import struct
from collections.abc import Callable
from typing import Any

import torch

from gptterm.presets import Preset, active_steps, logit_bias_token_id

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


# --- modern samplers (llama.cpp's semantics; see the README's preset keys) -------------


def logit_bias(biases: dict[int, float]) -> Step:
    """Add each token's bias to its score; a -inf bias bans the token (transformers
    `SequenceBiasLogitsProcessor` for single tokens, `NoBadWordsLogitsProcessor` for bans).
    Ids the output layer cannot produce are ignored, as llama.cpp does."""
    made: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # built once, not per token

    def tensors(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bias to add, banned mask) over the vocabulary of `logits`."""
        key = (logits.shape[-1], logits.dtype, logits.device)
        if key not in made:
            vocab = logits.shape[-1]
            add = torch.zeros(vocab, dtype=logits.dtype, device=logits.device)
            banned = torch.zeros(vocab, dtype=torch.bool, device=logits.device)
            for token, bias in biases.items():
                if 0 <= token < vocab:
                    if bias == _NEG_INF:
                        banned[token] = True
                    else:
                        add[token] += bias
            made[key] = add, banned
        return made[key]

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        add, banned = tensors(logits)
        # Bans by masking, not adding: -inf + a +inf score would be nan.
        return (logits + add).masked_fill(banned, _NEG_INF)

    return step


def banned_strings(strings: tuple[str, ...], vocab_bytes: list[bytes]) -> Step:
    """Ban every token that would complete one of `strings` in the text so far.

    Completing means: the token's bytes hold the whole string, or the history's text ends
    with the string's first k bytes and the token's bytes start with the rest. The history
    is the prompt and the reply, so a string that starts in the prompt and would end in the
    reply is banned too. Since the token that would finish a string is never drawn, the
    string never appears however the tokens split it (unless every token is banned).
    """
    needles = [s.encode("utf-8") for s in strings]
    longest = max(map(len, needles))
    ordered = sorted(range(len(vocab_bytes)), key=vocab_bytes.__getitem__)
    keys = [vocab_bytes[i] for i in ordered]
    containing = sorted({i for i, word in enumerate(vocab_bytes)
                         for needle in needles if needle in word})

    def starting_with(prefix: bytes) -> list[int]:
        """Token ids whose bytes start with `prefix` (a range of the sorted vocabulary)."""
        lo = bisect.bisect_left(keys, prefix)
        hi = lo
        while hi < len(keys) and keys[hi].startswith(prefix):
            hi += 1
        return ordered[lo:hi]

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        vocab = logits.shape[-1]
        banned = torch.zeros((logits.shape[0], vocab), dtype=torch.bool, device=logits.device)
        always = [i for i in containing if i < vocab]
        banned[:, always] = True
        # Each token has at least one byte, so longest - 1 tokens hold the tail we need.
        for row, ids in enumerate(history[:, max(0, history.shape[1] - longest + 1):].tolist()):
            tail = b"".join(vocab_bytes[i] for i in ids if i < len(vocab_bytes))
            for needle in needles:
                for k in range(1, len(needle)):
                    if tail.endswith(needle[:k]):
                        hits = [i for i in starting_with(needle[k:]) if i < vocab]
                        banned[row, hits] = True
        return logits.masked_fill(banned, _NEG_INF)

    return step


def dry_breakers(strings: tuple[str, ...], vocab_bytes: list[bytes],
                 encode: Callable[[str], list[int]]) -> dict[int, set[tuple[int, ...]]]:
    """DRY's sequence breakers as llama.cpp prepares them: head token -> the token tails
    that complete a breaker after it (an empty tail: the head alone holds a breaker).

    A token whose bytes contain a breaker is a head with an empty tail; a token ending in
    the breaker's first bytes is a head whose tail is the encoding of the rest (at most 20
    tokens). Breakers are cut to 40 bytes (llama.cpp's limits).
    """
    heads: dict[int, set[tuple[int, ...]]] = {}
    for text in strings:
        needle = text.encode("utf-8")[:40]
        if not needle:
            continue
        for token, word in enumerate(vocab_bytes):
            if needle in word:
                heads.setdefault(token, set()).add(())
                continue
            for pos in range(len(word)):
                # The token's end is a proper start of the breaker: the rest must follow.
                if needle.startswith(word[pos:]):
                    rest = needle[len(word) - pos:].decode("utf-8", errors="ignore")
                    heads.setdefault(token, set()).add(tuple(encode(rest)[:20]))
    return heads


_FLOAT_MAX_LOG = 88.7228391  # llama.cpp caps DRY's exponent so base**exponent stays finite


def dry(multiplier: float, base: float, allowed_length: int, last_n: int,
        breakers: dict[int, set[tuple[int, ...]]]) -> Step:
    """DRY ("don't repeat yourself", KoboldCpp / llama.cpp): a token that would extend a
    repeat of the context's end longer than `allowed_length` tokens loses
    `multiplier * base ** (length - allowed_length)` from its score.

    The repeat is the longest suffix of the last `last_n` tokens (-1: all) that also ends
    earlier in them, the token being the one that followed there; a repeat never reaches
    back past the latest sequence breaker, and single-token breakers are never penalised.
    Computed as llama.cpp computes it (float32 numbers, the penalty in double).
    """
    mult, dry_base = _f32(multiplier), _f32(base)
    max_exponent = int(_f32(_f32(_FLOAT_MAX_LOG) / _f32(math.log(dry_base)))) \
        if dry_base > _f32(1.000001) else 0

    def penalties(tokens: list[int]) -> dict[int, float]:
        n = len(tokens)
        if n <= allowed_length:
            return {}
        rep_limit = n
        for i in range(n):  # the latest breaker limits how far back a repeat may reach
            tails = breakers.get(tokens[n - 1 - i])
            if not tails:
                continue
            fits = [len(t) for t in tails if len(t) <= i
                    and all(t[o] == tokens[n - 1 - (i - o - 1)] for o in range(len(t)))]
            if fits:
                rep_limit = i - max(fits)
                break
        if rep_limit < allowed_length:
            return {}
        longest: dict[int, int] = {}
        for end, length in enumerate(_common_suffixes(tokens)):
            length = min(length, rep_limit)
            if end < n - 1 and length >= allowed_length:
                follower = tokens[end + 1]
                longest[follower] = max(longest.get(follower, 0), length)
        out = {}
        for token, length in longest.items():
            if () in breakers.get(token, ()):
                continue
            exponent = length - allowed_length
            if max_exponent > 0:
                exponent = min(exponent, max_exponent)
            out[token] = _f32(mult * dry_base ** exponent)
        return out

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        vocab = logits.shape[-1]
        window = history if last_n < 0 else history[:, max(0, history.shape[1] - last_n):]
        out = logits.clone()
        for row, tokens in enumerate(window.tolist()):
            hits = [(t, p) for t, p in penalties(tokens).items() if 0 <= t < vocab]
            if hits:
                ids = torch.tensor([t for t, _ in hits], device=logits.device)
                out[row, ids] -= torch.tensor([p for _, p in hits], dtype=logits.dtype,
                                              device=logits.device)
        return out

    return step


def _f32(x: float) -> float:
    """`x` rounded to float32, as llama.cpp holds its sampler settings."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _common_suffixes(tokens: list[int]) -> list[int]:
    """For each position j, how many tokens ending at j equal the tokens ending at the
    last position (the Z-function of the reversed sequence; the last position itself: 0)."""
    rev = tokens[::-1]
    n = len(rev)
    z = [0] * n
    left = right = 0
    for k in range(1, n):
        if k < right:
            z[k] = min(right - k, z[k - left])
        while k + z[k] < n and rev[z[k]] == rev[k + z[k]]:
            z[k] += 1
        if k + z[k] > right:
            left, right = k, k + z[k]
    return z[::-1]


def top_n_sigma(n: float) -> Step:
    """Keep the tokens whose score is within n standard deviations of the top score (the
    mean and deviation over the scores not yet removed; Tang et al. 2024, llama.cpp)."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        wide = logits.double()
        valid = logits != _NEG_INF
        count = valid.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = torch.where(valid, wide, 0.0).sum(dim=-1, keepdim=True) / count
        var = torch.where(valid, (wide - mean) ** 2, 0.0).sum(dim=-1, keepdim=True) / count
        floor = wide.amax(dim=-1, keepdim=True) - n * var.sqrt()
        return logits.masked_fill(wide < floor, _NEG_INF)

    return step


def xtc(probability: float, threshold: float, generator: torch.Generator | None) -> Step:
    """Exclude Top Choices (XTC): with chance `probability` per row, drop every token whose
    probability is at least `threshold` except the least likely of them, when there are two
    or more (tokens tied with that one are all kept; llama.cpp keeps one of them, by its
    sort). Tokens already removed (-inf) are no choices. The draw uses the request's
    generator."""

    def step(history: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        chance = torch.rand(logits.shape[0], generator=generator,
                            device=generator.device if generator is not None else "cpu")
        probs = torch.softmax(logits, dim=-1)
        above = (probs >= threshold) & (logits != _NEG_INF)  # removed tokens are no choices
        lowest = torch.where(above, probs, math.inf).amin(dim=-1, keepdim=True)
        act = (chance.to(logits.device) <= probability)[:, None] & (above.sum(-1, keepdim=True) >= 2)
        return logits.masked_fill(act & above & (probs > lowest), _NEG_INF)

    return step


# --- the chain -------------------------------------------------------------------------


def build_chain(preset: Preset, *, eos_token_id: int | None, prompt_len: int,
                tokenizer: Any = None, generator: torch.Generator | None = None) -> list[Step]:
    """The active filter steps of `preset`, in `preset.order` (see `named_chain`)."""
    return [step for _, step in named_chain(preset, eos_token_id=eos_token_id,
                                            prompt_len=prompt_len, tokenizer=tokenizer,
                                            generator=generator)]


def named_chain(preset: Preset, *, eos_token_id: int | None, prompt_len: int,
                tokenizer: Any = None,
                generator: torch.Generator | None = None) -> list[tuple[str, Step]]:
    """The active filter steps of `preset` with their `order` names, in `preset.order`;
    no-op steps are left out (the inspector names each stage after its step).

    Warpers (temperature, top-k, top-p, min-p, typical, top-n-sigma, XTC) only act when
    `preset.method` is "sample", as in transformers. `min_new_tokens` needs the
    end-of-sequence id and the prompt length (history beyond it counts as new tokens);
    logit_bias string keys, banned_strings and DRY's breakers need the `tokenizer`; XTC
    draws from the request's `generator`.

    Raises:
        ValueError: a step that needs the tokenizer, and none was given.
    """
    active = set(active_steps(preset))
    if eos_token_id is None:  # nothing to hold back
        active.discard("min_new_tokens")
    if tokenizer is None and (active & {"banned_strings", "dry"} or (
            "logit_bias" in active and any(logit_bias_token_id(k) is None
                                           for k, _ in preset.logit_bias))):
        raise ValueError("logit_bias string keys, banned_strings and DRY need the tokenizer")
    makers: dict[str, Callable[[], Step]] = {
        "logit_bias": lambda: logit_bias(logit_bias_ids(preset.logit_bias, tokenizer)),
        "banned_strings": lambda: banned_strings(preset.banned_strings,
                                                 vocab_bytes(tokenizer)),
        "dry": lambda: dry(preset.dry_multiplier, preset.dry_base, preset.dry_allowed_length,
                           preset.dry_penalty_last_n,
                           _breakers(tokenizer, preset.dry_sequence_breakers)),
        "top_n_sigma": lambda: top_n_sigma(preset.top_n_sigma),
        "xtc": lambda: xtc(preset.xtc_probability, preset.xtc_threshold, generator),
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


def logit_bias_ids(pairs: tuple[tuple[str, float], ...], tokenizer: Any) -> dict[int, float]:
    """A preset's logit_bias as token id -> bias: a digits key is an id, any other key
    gives its bias to every token of its encoding (once each); the biases of different
    keys on one id add up, as in llama.cpp."""
    out: dict[int, float] = {}
    for key, bias in pairs:
        token = logit_bias_token_id(key)
        ids = [token] if token is not None else tokenizer.encode(key, add_special_tokens=False)
        for i in dict.fromkeys(ids):  # once per key, however often the string repeats it
            out[i] = out.get(i, 0.0) + bias
    return out


@functools.lru_cache(maxsize=4)
def vocab_bytes(tokenizer: Any) -> list[bytes]:
    """Every token's bytes, once per tokenizer (banned_strings and DRY match bytes)."""
    from gptterm.engine.detokenize import token_bytes

    return token_bytes(tokenizer)


@functools.lru_cache(maxsize=8)
def _breakers(tokenizer: Any, strings: tuple[str, ...]) -> dict[int, set[tuple[int, ...]]]:
    return dry_breakers(strings, vocab_bytes(tokenizer),
                        lambda text: tokenizer.encode(text, add_special_tokens=False))


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
