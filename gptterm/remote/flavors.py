"""What each serving engine can do with a preset: the one capability table, and `translate`.

A server ignores request fields it does not know, and its defaults are not neutral
(llama.cpp samples with top_k 40, top_p 0.95, min_p 0.05 unless told otherwise). So every
field a flavour supports is sent explicitly, neutral values included, and a preset field
that changes generation but that the flavour cannot honour is refused in one line
(`typical_p = 0.95 is not supported by vllm`), or, when lenient, dropped and reported.

`FIELDS` says, per preset field, the request key each flavour takes it as; `ORDER` which
filter order each applies (None: any order, given as llama.cpp's `samplers` list);
`GREEDY` how each is told to decode greedily; `PROBABILITIES` what each returns for the
token inspector. `markdown_table()` renders all of it for the README. Stdlib only.
"""

from __future__ import annotations

import math
from typing import Any

from gptterm.presets import Preset, active_steps
from gptterm.tomlfiles import show_value

FLAVORS = ("llama.cpp", "vllm", "sglang", "tgi", "ollama", "openai")
WARPERS = ("temperature", "top_k", "top_p", "min_p", "typical_p")  # act only when sampling
OPENAI_LIKE = ("vllm", "sglang", "openai")  # all speak /v1/completions

_ALL = dict.fromkeys(FLAVORS)

# Preset field -> {flavour: the request key it is sent as}. A flavour missing from a
# row cannot honour that field.
FIELDS: dict[str, dict[str, str]] = {
    "max_new_tokens": {"llama.cpp": "n_predict", "vllm": "max_tokens", "sglang": "max_tokens",
                       "tgi": "max_new_tokens", "ollama": "num_predict",
                       "openai": "max_tokens"},
    "temperature": {f: "temperature" for f in _ALL},
    "top_k": {"llama.cpp": "top_k", "vllm": "top_k", "sglang": "top_k", "tgi": "top_k",
              "ollama": "top_k"},
    "top_p": {f: "top_p" for f in _ALL},
    "min_p": {"llama.cpp": "min_p", "vllm": "min_p", "sglang": "min_p", "ollama": "min_p"},
    "typical_p": {"llama.cpp": "typical_p", "tgi": "typical_p"},
    "repetition_penalty": {"llama.cpp": "repeat_penalty", "vllm": "repetition_penalty",
                           "sglang": "repetition_penalty", "tgi": "repetition_penalty",
                           "ollama": "repeat_penalty"},
    "no_repeat_ngram_size": {},
    "min_new_tokens": {"vllm": "min_tokens", "sglang": "min_tokens"},
    "stop": {f: "stop" for f in _ALL},
    "seed": {f: "seed" for f in _ALL},
    # The modern samplers: only llama.cpp has DRY, XTC and top-n-sigma; OpenAI-style servers
    # take logit_bias keyed by token id; none bans strings (KoboldCpp's phrase banning).
    "logit_bias": {"llama.cpp": "logit_bias", "vllm": "logit_bias", "openai": "logit_bias"},
    "banned_strings": {},
    "dry_multiplier": {"llama.cpp": "dry_multiplier"},
    "dry_base": {"llama.cpp": "dry_base"},
    "dry_allowed_length": {"llama.cpp": "dry_allowed_length"},
    "dry_penalty_last_n": {"llama.cpp": "dry_penalty_last_n"},
    "dry_sequence_breakers": {"llama.cpp": "dry_sequence_breakers"},
    "xtc_probability": {"llama.cpp": "xtc_probability"},
    "xtc_threshold": {"llama.cpp": "xtc_threshold"},
    "top_n_sigma": {"llama.cpp": "top_n_sigma"},
}
# The modern samplers' fields are sent only while their step is on: off is every server's
# default, and requests for presets without them stay as they were.
STEP_OF = {"logit_bias": "logit_bias", "dry_multiplier": "dry", "dry_base": "dry",
           "dry_allowed_length": "dry", "dry_penalty_last_n": "dry",
           "dry_sequence_breakers": "dry", "xtc_probability": "xtc", "xtc_threshold": "xtc",
           "top_n_sigma": "top_n_sigma"}
OPENAI_BIAS_LIMIT = 100  # OpenAI-style logit_bias: token ids only, in [-100, 100]

# The methods every flavour streams; beam and contrastive search are nowhere (vLLM's beam
# search is a separate, non-streaming API).
METHODS = ("greedy", "sample")
GREEDY = {"llama.cpp": "top_k = 1", "vllm": "temperature = 0", "sglang": "temperature = 0",
          "tgi": "do_sample = false", "ollama": "temperature = 0", "openai": "temperature = 0"}

# The order each flavour applies its filters in (steps of presets.DEFAULT_ORDER); None: the
# request sets it (llama.cpp's `samplers`).
ORDER: dict[str, tuple[str, ...] | None] = {
    "llama.cpp": None,
    "vllm": ("repetition_penalty", "min_new_tokens", "temperature", "min_p", "top_k", "top_p"),
    "sglang": ("repetition_penalty", "min_new_tokens", "temperature", "top_k", "top_p", "min_p"),
    "tgi": ("repetition_penalty", "temperature", "top_k", "top_p", "typical_p"),
    "ollama": ("repetition_penalty", "top_k", "temperature", "top_p", "min_p"),
    "openai": ("temperature", "top_p"),
}
# Step pairs whose order changes nothing (both keep the same tokens either way round).
COMMUTE = {frozenset(("temperature", "top_k")), frozenset(("top_k", "min_p")),
           frozenset(("temperature", "min_p"))}
# llama.cpp's sampler name for each step it has.
LLAMA_SAMPLERS = {"repetition_penalty": "penalties", "temperature": "temperature",
                  "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typical_p": "typ_p",
                  "dry": "dry", "top_n_sigma": "top_n_sigma", "xtc": "xtc"}

# What the token inspector gets: "final" (the sampler's final distribution), "raw" (the
# model's softmax before any filter); llama.cpp gives either (post_sampling_probs).
PROBABILITIES: dict[str, tuple[str, ...]] = {"llama.cpp": ("final", "raw"), "vllm": ("raw",)}

# TGI rejects the neutral values of these (top_p must be < 1 ...): its default, leaving
# the field out, is the neutral one.
_OMIT_NEUTRAL = {"tgi": {"top_k", "top_p", "typical_p"}}
LLAMA_SEED_LIMIT = 2**32 - 1  # llama.cpp's seed is 32 bits, and 2**32 - 1 means "random"
DEFAULT_REPEAT_WINDOW = 4096  # llama.cpp's repeat_last_n when the window is not known


class UnsupportedField(ValueError):
    """A preset field the flavour cannot honour; the message is one line."""


def _step_field(step: str) -> str:
    return {"no_repeat_ngram": "no_repeat_ngram_size", "dry": "dry_multiplier",
            "xtc": "xtc_probability"}.get(step, step)


def _in_effect(preset: Preset) -> list[str]:
    """The fields of `preset` that change what is generated (beyond method and order):
    its active steps (warpers only when sampling, as in transformers) and stop strings."""
    fields = [_step_field(step) for step in active_steps(preset)]
    return fields + ["stop"] if preset.stop else fields


def _order_problem(preset: Preset, flavor: str, steps: list[str]) -> bool:
    """Whether the flavour's fixed order would run two of `steps` the other way round."""
    fixed = ORDER[flavor]
    if fixed is None:
        return False
    mine = [s for s in preset.order if s in steps]
    for i, a in enumerate(mine):
        for b in mine[i + 1:]:
            if a in fixed and b in fixed and fixed.index(a) > fixed.index(b) \
                    and frozenset((a, b)) not in COMMUTE:
                return True
    return False


def _shown(field: str, value: Any) -> str:
    """`field = value` as a refusal names it: numbers as written, the rest as repr."""
    if field == "logit_bias":
        value = dict(value)
    elif isinstance(value, tuple):
        value = list(value)
    plain = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{field} = {value if plain else show_value(value)}"


def translate(preset: Preset, flavor: str, *, lenient: bool = False,
              n_ctx: int = 0) -> tuple[dict[str, Any], list[str]]:
    """The request fields that make `flavor` generate as `preset` says.

    Returns (fields as the server names them, flat; what was dropped, one
    "field = value" each, only when lenient). `n_ctx` is the server's window, used as
    llama.cpp's repetition window (the whole context, as transformers penalises).

    Raises:
        UnsupportedField: a field in effect that `flavor` cannot honour (not lenient).
    """
    if flavor not in FLAVORS:
        raise UnsupportedField(f"unknown flavor {show_value(flavor)}: expected one of "
                               f"{', '.join(FLAVORS)}")
    problems: list[str] = []
    method = preset.method
    if method not in METHODS:
        problems.append(_shown("method", method))
        method = "greedy"
    sampling = method == "sample"
    dropped_fields: set[str] = set()
    for name in _in_effect(preset):
        string_keys = name == "logit_bias" and flavor != "llama.cpp" and any(
            not key.isdigit() for key, _ in preset.logit_bias)
        if flavor not in FIELDS[name] or string_keys:
            problems.append(_shown(name, getattr(preset, name)))
            dropped_fields.add(name)
    steps = [s for s in active_steps(preset) if _step_field(s) not in dropped_fields]
    if _order_problem(preset, flavor, steps):
        problems.append(_shown("order", [s for s in preset.order if s in steps]))
    if problems and not lenient:
        raise UnsupportedField(f"{problems[0]} is not supported by {flavor}")
    neutral = Preset()

    def value(name: str) -> Any:
        if name in dropped_fields or (name in WARPERS and not sampling):
            return getattr(neutral, name)
        return getattr(preset, name)

    fields: dict[str, Any] = {}
    for name, keys in FIELDS.items():
        key = keys.get(flavor)
        if key is None:
            continue
        v = value(name)
        if name in _OMIT_NEUTRAL.get(flavor, ()) and v == getattr(neutral, name):
            continue
        if name in STEP_OF and STEP_OF[name] not in steps:
            continue
        fields[key] = list(v) if isinstance(v, tuple) else v
    if "logit_bias" in fields:
        fields["logit_bias"] = _logit_bias(preset, flavor)
    _flavor_specifics(fields, preset, flavor, method, steps, n_ctx)
    return fields, problems


def _flavor_specifics(fields: dict[str, Any], preset: Preset, flavor: str, method: str,
                      steps: list[str], n_ctx: int) -> None:
    """What each flavour needs beyond the table: greedy, order, seeds, its other defaults."""
    greedy = method == "greedy"
    if flavor == "llama.cpp":
        order = [s for s in preset.order if s in LLAMA_SAMPLERS
                 and (s not in STEP_OF.values() or s in steps)]
        if greedy:  # the processors, then the top token
            order = [s for s in order if s in ("repetition_penalty", "dry")] + ["top_k"]
            fields["top_k"] = 1
        fields["samplers"] = [LLAMA_SAMPLERS[s] for s in order]
        # Its other samplers' defaults, neutral: penalties include presence and frequency;
        # mirostat replaces the chain; dynatemp widens the temperature.
        fields.update(repeat_last_n=n_ctx or DEFAULT_REPEAT_WINDOW, presence_penalty=0.0,
                      frequency_penalty=0.0, dynatemp_range=0.0, mirostat=0, min_keep=0)
        if fields["seed"] is not None:
            fields["seed"] = fields["seed"] % LLAMA_SEED_LIMIT
        if fields.get("dry_penalty_last_n") == -1:  # the whole context; it refuses -1
            fields["dry_penalty_last_n"] = n_ctx or DEFAULT_REPEAT_WINDOW
    elif flavor in OPENAI_LIKE or flavor == "ollama":
        if greedy:
            fields["temperature"] = 0.0
        if "top_k" in fields and fields["top_k"] == 0 and flavor in ("vllm", "sglang"):
            fields["top_k"] = -1  # their "off" (0 is refused by older versions)
        fields.update(presence_penalty=0.0, frequency_penalty=0.0)
        if flavor == "ollama":
            fields["repeat_last_n"] = -1  # the whole context, as transformers penalises
        if flavor in ("vllm", "sglang"):
            fields.update(include_stop_str_in_output=False, ignore_eos=False)
    elif flavor == "tgi":
        fields["do_sample"] = not greedy
    if fields.get("seed") is None:
        fields.pop("seed", None)


def _logit_bias(preset: Preset, flavor: str) -> dict[str, Any]:
    """logit_bias as the flavour takes it: llama.cpp bans with false and tokenizes string
    keys itself; OpenAI-style servers take ids and ban with -100."""
    if flavor == "llama.cpp":
        return {key: False if bias == -math.inf else bias for key, bias in preset.logit_bias}
    return {key: max(bias, -OPENAI_BIAS_LIMIT) for key, bias in preset.logit_bias}


# ---------------------------------------------------------------- the README table

_ROWS = ("method", "order", *FIELDS, "probabilities")


def markdown_table() -> str:
    """The flavour support table of the README, from the tables above."""
    head = "| preset field | " + " | ".join(FLAVORS) + " |"
    lines = [head, "|" + "---|" * (len(FLAVORS) + 1)]
    for row in _ROWS:
        cells = []
        for flavor in FLAVORS:
            if row == "method":
                cells.append(f"greedy (`{GREEDY[flavor]}`), sample")
            elif row == "order":
                fixed = ORDER[flavor]
                cells.append("any (`samplers`)" if fixed is None else " → ".join(fixed))
            elif row == "probabilities":
                kinds = PROBABILITIES.get(flavor, ())
                cells.append(" or ".join(kinds) if kinds else "—")
            else:
                key = FIELDS[row].get(flavor)
                cells.append(f"`{key}`" if key else "—")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

