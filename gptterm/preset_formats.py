"""Presets from other tools and back: HF `generation_config.json`, text-generation-webui
presets (YAML) and llama.cpp server request bodies (JSON).

Pure data in, data out: `read_text` parses a file's text, `detect` says which tool wrote
it, `to_values` turns its fields into gptterm preset values (validated by the caller with
`presets.from_mapping`), `from_preset` writes a preset in the other tool's fields. Neither
direction drops a field silently: every field the other side cannot express comes back
as one note line naming it, its value and why.

Each tool has a table with one row per field that maps one to one (the other tool's name,
gptterm's name, a converter each way), the fields gptterm knows but cannot express with
the value at which they change nothing, and the defaults the tool uses for a field a file
leaves out (llama-server samples with top_k 40 unless told otherwise; transformers with
top_k 50). What is not one to one (the decoding method, the order of the steps, the ranges
of the penalties, logit biases) is code next to the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gptterm.presets import (
    DEFAULT_ORDER,
    DRY_BREAKERS,
    Preset,
    PresetError,
    active_steps,
    logit_bias_token_id,
)
from gptterm.textsafe import inert
from gptterm.tomlfiles import one_line, show_value

FORMATS = ("hf", "webui", "llama.cpp")
LABELS = {
    "hf": "an HF generation_config.json",
    "webui": "a text-generation-webui preset (YAML)",
    "llama.cpp": "a llama.cpp server request body (JSON)",
}
TOOLS = {"hf": "transformers", "webui": "text-generation-webui", "llama.cpp": "llama-server"}
EXPECTED = (f"expected {LABELS['hf']}, {LABELS['webui']} or {LABELS['llama.cpp']}")

NEUTRAL = Preset()


class FormatError(PresetError):
    """A file is no preset of a tool gptterm reads; the message is one line."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Row:
    """One field that maps one to one: the other tool's name, gptterm's, a converter each way."""

    theirs: str
    ours: str
    to_ours: Callable[[Any], Any] = _same
    to_theirs: Callable[[Any], Any] = _same


@dataclass(frozen=True)
class Format:
    name: str
    rows: tuple[Row, ...]
    # Fields the code next to the table reads (method, order, ranges, biases, ...).
    structural: frozenset[str]
    # Known fields gptterm cannot express: their key -> (the value at which it changes
    # nothing, why). A file holding the neutral value loses nothing.
    inexpressible: Mapping[str, tuple[Any, str]]
    # What the tool uses for a field the file leaves out.
    defaults: Mapping[str, Any]
    # Settings that only matter while another one is on (mirostat_tau needs mirostat).
    depends: Mapping[str, str] = field(default_factory=dict)
    # Bookkeeping that holds no setting (transformers_version).
    metadata: frozenset[str] = frozenset()
    # gptterm fields the tool has no place for: field -> why.
    unsupported: Mapping[str, str] = field(default_factory=dict)

    def known(self) -> set[str]:
        return ({r.theirs for r in self.rows} | set(self.structural) | set(self.inexpressible)
                | set(self.metadata))


# --- converters ------------------------------------------------------------------------


def _off_below_zero(value: Any) -> Any:
    """top_k: llama.cpp and webui turn it off at 0 or below, gptterm at 0."""
    return 0 if _number(value) and value < 0 else value


def _sigma_in(value: Any) -> Any:
    """top_n_sigma: <= 0 is off everywhere; gptterm writes off as -1."""
    return -1.0 if _number(value) and value <= 0 else value


def _sigma_webui(value: float) -> float:
    return max(0, value)  # webui writes off as 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _breakers_webui_in(value: Any) -> Any:
    """webui keeps DRY's sequence breakers as JSON items without the brackets."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text if text.startswith("[") else f"[{text}]")
    except ValueError:
        return value  # from_mapping names it


def _breakers_webui_out(value: list[str]) -> str:
    return ", ".join(json.dumps(s, ensure_ascii=False) for s in value)


# --- the tables ------------------------------------------------------------------------

_NO_SETTING = "a fact of the model, not a sampler setting: gptterm takes it from the model"
_REQUEST = "a detail of the request, not a sampler setting"

HF = Format(
    name="hf",
    rows=(
        Row("temperature", "temperature"),
        Row("top_k", "top_k"),
        Row("top_p", "top_p"),
        Row("typical_p", "typical_p"),
        Row("min_p", "min_p"),
        Row("repetition_penalty", "repetition_penalty"),
        Row("no_repeat_ngram_size", "no_repeat_ngram_size"),
        Row("num_beams", "num_beams"),
        Row("length_penalty", "length_penalty"),
        Row("penalty_alpha", "penalty_alpha"),
        Row("max_new_tokens", "max_new_tokens"),
        Row("min_new_tokens", "min_new_tokens"),
        Row("stop_strings", "stop"),
    ),
    structural=frozenset({"do_sample", "early_stopping", "max_length", "min_length",
                          "sequence_bias", "bad_words_ids", "suppress_tokens",
                          "num_beam_groups"}),
    inexpressible={
        "bos_token_id": (None, _NO_SETTING),
        "eos_token_id": (None, _NO_SETTING),
        "pad_token_id": (None, _NO_SETTING),
        "decoder_start_token_id": (None, _NO_SETTING),
        "forced_bos_token_id": (None, "gptterm never forces a first token"),
        "forced_eos_token_id": (None, "gptterm never forces a last token"),
        "begin_suppress_tokens": (None, "gptterm bans tokens everywhere or nowhere"),
        "diversity_penalty": (0.0, "no group beam search"),
        "epsilon_cutoff": (0.0, "no epsilon sampling"),
        "eta_cutoff": (0.0, "no eta sampling"),
        "top_h": (None, "no top-h sampling"),
        "encoder_repetition_penalty": (1.0, "GPT-2 models have no encoder"),
        "encoder_no_repeat_ngram_size": (0, "GPT-2 models have no encoder"),
        "exponential_decay_length_penalty": (None, "no length decay"),
        "renormalize_logits": (False, "gptterm always draws from the softmax"),
        "remove_invalid_values": (False, "gptterm has no such setting"),
        "guidance_scale": (None, "no classifier-free guidance"),
        "num_return_sequences": (1, "a gptterm reply is one sequence"),
        "max_time": (None, "gptterm limits tokens, not time"),
        "force_words_ids": (None, "no constrained beam search"),
        "constraints": (None, "no constrained beam search"),
        "dola_layers": (None, "no DoLa decoding"),
        "watermarking_config": (None, "no watermarking"),
        "use_cache": (True, "gptterm always uses the cache"),
        "cache_implementation": (None, "gptterm picks its own cache"),
        "token_healing": (False, "no token healing"),
        "output_scores": (False, _REQUEST), "output_logits": (False, _REQUEST),
        "output_attentions": (False, _REQUEST), "output_hidden_states": (False, _REQUEST),
        "return_dict_in_generate": (False, _REQUEST),
    },
    defaults={"do_sample": False, "num_beams": 1, "temperature": 1.0, "top_k": 50,
              "top_p": 1.0, "typical_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0,
              "no_repeat_ngram_size": 0, "length_penalty": 1.0, "early_stopping": False,
              "penalty_alpha": 0.0, "min_new_tokens": 0},
    metadata=frozenset({"transformers_version", "_from_model_config"}),
    unsupported={
        "seed": "a generation config holds no seed",
        "banned_strings": "transformers has no string bans in a generation config",
        "dry_multiplier": "transformers has no DRY", "dry_base": "transformers has no DRY",
        "dry_allowed_length": "transformers has no DRY",
        "dry_penalty_last_n": "transformers has no DRY",
        "dry_sequence_breakers": "transformers has no DRY",
        "xtc_probability": "transformers has no XTC", "xtc_threshold": "transformers has no XTC",
        "top_n_sigma": "transformers has no top-n-sigma",
        "turn_separator": "a gptterm setting",
    },
)

# text-generation-webui: modules/presets.py default_preset_values (a preset file holds
# only what differs from them).
WEBUI_PRIORITY = (
    "repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "top_n_sigma",
    "temperature", "dynamic_temperature", "quadratic_sampling", "top_k", "top_p", "typical_p",
    "epsilon_cutoff", "eta_cutoff", "tfs", "top_a", "min_p", "adaptive_p", "mirostat", "xtc",
    "encoder_repetition_penalty", "no_repeat_ngram",
)
_WEBUI_STEPS = {  # webui's sampler_priority name -> gptterm's order name
    "repetition_penalty": "repetition_penalty", "no_repeat_ngram": "no_repeat_ngram",
    "dry": "dry", "top_n_sigma": "top_n_sigma", "temperature": "temperature",
    "top_k": "top_k", "top_p": "top_p", "typical_p": "typical_p", "min_p": "min_p",
    "xtc": "xtc",
}
_WEBUI_SETTING = "a webui preset holds sampler settings only (set it in webui's Parameters tab)"

WEBUI = Format(
    name="webui",
    rows=(
        Row("temperature", "temperature"),
        Row("top_p", "top_p"),
        Row("top_k", "top_k", _off_below_zero),
        Row("min_p", "min_p"),
        Row("typical_p", "typical_p"),
        Row("repetition_penalty", "repetition_penalty"),
        Row("no_repeat_ngram_size", "no_repeat_ngram_size"),
        Row("penalty_alpha", "penalty_alpha"),
        Row("top_n_sigma", "top_n_sigma", _sigma_in, _sigma_webui),
        Row("xtc_threshold", "xtc_threshold"),
        Row("xtc_probability", "xtc_probability"),
        Row("dry_multiplier", "dry_multiplier"),
        Row("dry_base", "dry_base"),
        Row("dry_allowed_length", "dry_allowed_length"),
        Row("dry_sequence_breakers", "dry_sequence_breakers", _breakers_webui_in,
            _breakers_webui_out),
    ),
    structural=frozenset({"do_sample", "sampler_priority", "temperature_last",
                          "repetition_penalty_range"}),
    inexpressible={
        "dynamic_temperature": (False, "no dynamic temperature"),
        "dynatemp_low": (1, "no dynamic temperature"),
        "dynatemp_high": (1, "no dynamic temperature"),
        "dynatemp_exponent": (1, "no dynamic temperature"),
        "smoothing_factor": (0, "no quadratic sampling"),
        "smoothing_curve": (1, "no quadratic sampling"),
        "epsilon_cutoff": (0, "no epsilon sampling"),
        "eta_cutoff": (0, "no eta sampling"),
        "tfs": (1, "no tail-free sampling"),
        "top_a": (0, "no top-a sampling"),
        "adaptive_target": (0, "no adaptive-p sampling"),
        "adaptive_decay": (0.9, "no adaptive-p sampling"),
        "frequency_penalty": (0, "no frequency penalty"),
        "presence_penalty": (0, "no presence penalty"),
        "encoder_repetition_penalty": (1, "GPT-2 models have no encoder"),
        "guidance_scale": (1, "no classifier-free guidance"),
        "mirostat_mode": (0, "no Mirostat"),
        "mirostat_tau": (5, "no Mirostat"),
        "mirostat_eta": (0.1, "no Mirostat"),
    },
    depends={"dynatemp_low": "dynamic_temperature", "dynatemp_high": "dynamic_temperature",
             "dynatemp_exponent": "dynamic_temperature", "smoothing_curve": "smoothing_factor",
             "adaptive_decay": "adaptive_target", "mirostat_tau": "mirostat_mode",
             "mirostat_eta": "mirostat_mode"},
    defaults={"temperature": 1, "top_p": 1, "top_k": 0, "min_p": 0, "top_n_sigma": 0,
              "typical_p": 1, "xtc_threshold": 0.1, "xtc_probability": 0, "dry_multiplier": 0,
              "dry_allowed_length": 2, "dry_base": 1.75, "repetition_penalty": 1,
              "no_repeat_ngram_size": 0, "repetition_penalty_range": 1024, "penalty_alpha": 0,
              "do_sample": True, "temperature_last": False,
              "sampler_priority": "\n".join(WEBUI_PRIORITY),
              "dry_sequence_breakers": '"\\n", ":", "\\"", "*"'},
    unsupported={
        "max_new_tokens": _WEBUI_SETTING, "min_new_tokens": "webui has no minimum length",
        "stop": _WEBUI_SETTING, "seed": _WEBUI_SETTING,
        "logit_bias": _WEBUI_SETTING, "banned_strings": _WEBUI_SETTING,
        "num_beams": "a webui preset holds no beam search",
        "length_penalty": "a webui preset holds no beam search",
        "early_stopping": "a webui preset holds no beam search",
        "turn_separator": "a gptterm setting",
    },
)

# llama.cpp: tools/server (params_from_json_cmpl) and common/common.h's defaults.
LLAMA_SAMPLERS = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                  "temperature")
_LLAMA_STEPS = {  # llama.cpp's sampler name -> gptterm's order name
    "penalties": "repetition_penalty", "dry": "dry", "top_n_sigma": "top_n_sigma",
    "top_k": "top_k", "typ_p": "typical_p", "top_p": "top_p", "min_p": "min_p", "xtc": "xtc",
    "temperature": "temperature",
}
_LLAMA_ALIASES = {"nucleus": "top_p", "temp": "temperature", "typ": "typ_p"}
_LLAMA_CHARS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typ_p",
                "p": "top_p", "m": "min_p", "x": "xtc", "t": "temperature", "i": "infill",
                "a": "adaptive_p"}
_LLAMA_RANDOM_SEED = (-1, 0xFFFFFFFF)  # LLAMA_DEFAULT_SEED: a fresh seed every request

LLAMA = Format(
    name="llama.cpp",
    rows=(
        Row("top_k", "top_k", _off_below_zero),
        Row("top_p", "top_p"),
        Row("min_p", "min_p"),
        Row("typical_p", "typical_p"),
        Row("repeat_penalty", "repetition_penalty"),
        Row("stop", "stop"),
        Row("dry_multiplier", "dry_multiplier"),
        Row("dry_base", "dry_base", lambda v: 1.75 if _number(v) and v < 1 else v),
        Row("dry_allowed_length", "dry_allowed_length"),
        Row("dry_penalty_last_n", "dry_penalty_last_n"),
        Row("dry_sequence_breakers", "dry_sequence_breakers"),
        Row("xtc_probability", "xtc_probability"),
        Row("top_n_sigma", "top_n_sigma", _sigma_in),
    ),
    structural=frozenset({"temperature", "n_predict", "max_tokens", "max_completion_tokens",
                          "seed", "samplers", "repeat_last_n", "logit_bias", "xtc_threshold"}),
    inexpressible={
        "presence_penalty": (0, "no presence penalty"),
        "frequency_penalty": (0, "no frequency penalty"),
        "dynatemp_range": (0, "no dynamic temperature"),
        "dynatemp_exponent": (1, "no dynamic temperature"),
        "mirostat": (0, "no Mirostat"),
        "mirostat_tau": (5, "no Mirostat"),
        "mirostat_eta": (0.1, "no Mirostat"),
        "adaptive_target": (None, "no adaptive-p sampling"),
        "adaptive_decay": (None, "no adaptive-p sampling"),
        "ignore_eos": (False, "gptterm stops at the end token (a logit_bias on its id bans it)"),
        "grammar": ("", "no grammars"),
        "json_schema": (None, "no grammars"),
        "min_keep": (0, "gptterm's filters keep at least one token"),
        "n_probs": (0, _REQUEST), "prompt": (None, _REQUEST), "stream": (False, _REQUEST),
        "cache_prompt": (True, _REQUEST), "n_keep": (0, _REQUEST), "id_slot": (-1, _REQUEST),
        "return_tokens": (False, _REQUEST), "timings_per_token": (False, _REQUEST),
        "post_sampling_probs": (False, _REQUEST), "response_fields": (None, _REQUEST),
        "return_progress": (False, _REQUEST), "n_indent": (0, _REQUEST),
        "t_max_predict_ms": (0, _REQUEST), "lora": (None, _REQUEST), "n_cmpl": (1, _REQUEST),
    },
    depends={"dynatemp_exponent": "dynatemp_range", "mirostat_tau": "mirostat",
             "mirostat_eta": "mirostat", "adaptive_decay": "adaptive_target"},
    defaults={"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "typical_p": 1.0,
              "repeat_penalty": 1.0, "repeat_last_n": 64, "dry_multiplier": 0.0,
              "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": -1,
              "dry_sequence_breakers": list(DRY_BREAKERS), "xtc_probability": 0.0,
              "xtc_threshold": 0.1, "top_n_sigma": -1.0, "seed": -1, "n_predict": -1,
              "samplers": list(LLAMA_SAMPLERS)},
    unsupported={
        "no_repeat_ngram_size": "llama-server has no n-gram ban",
        "min_new_tokens": "llama-server has no minimum length",
        "banned_strings": "llama-server has no string bans",
        "num_beams": "llama-server has no beam search",
        "length_penalty": "llama-server has no beam search",
        "early_stopping": "llama-server has no beam search",
        "penalty_alpha": "llama-server has no contrastive search",
        "turn_separator": "a gptterm setting",
    },
)

TABLES = {"hf": HF, "webui": WEBUI, "llama.cpp": LLAMA}


# --- reading a file --------------------------------------------------------------------


def read_text(text: str, where: str) -> tuple[dict[str, Any], bool]:
    """Parse a file's text: (the mapping, whether it was JSON). YAML is tried after JSON.

    Raises:
        FormatError: neither JSON nor YAML, or not a mapping of settings.
    """
    try:
        data, is_json = json.loads(text), True
    except ValueError:
        import yaml

        try:
            data, is_json = yaml.safe_load(text), False
        except yaml.YAMLError as exc:
            raise FormatError(f"{where}: neither JSON nor YAML ({one_line(exc)}): "
                              f"{EXPECTED}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise FormatError(f"{where}: not a table of settings: {EXPECTED}")
    return data, is_json


def detect(data: Mapping[str, Any], is_json: bool, where: str) -> str:
    """Which tool's preset `data` is, by the keys only that tool uses.

    A YAML file that is not JSON can only be a webui preset; a JSON file is one only when
    it holds keys only webui uses. Raises FormatError (one line
    naming the file and what was expected) when no tool's keys fit, or when the keys fit
    more than one equally.
    """
    keys = set(data)
    candidates = FORMATS if is_json else ("webui",)
    scores = {}
    for name in candidates:
        others = set().union(*(TABLES[o].known() for o in FORMATS if o != name))
        own = TABLES[name].known()
        scores[name] = (len(keys & (own - others)), len(keys & own))
    if is_json and scores["webui"][0] == 0:
        del scores["webui"]  # webui writes YAML: a JSON file is webui's only by its own keys
    best = max(scores.values())
    winners = [name for name, score in scores.items() if score == best]
    if best[1] == 0:
        raise FormatError(f"{where}: no setting gptterm knows: {EXPECTED}")
    if len(winners) > 1:
        raise FormatError(f"{where}: its keys fit {' and '.join(LABELS[w] for w in winners)}: "
                          "name one with --format hf|webui|llama.cpp")
    return winners[0]


# --- their fields -> gptterm values ----------------------------------------------------


def _note(where: str, key: str, value: Any, why: str) -> str:
    """One line for a field of the file gptterm cannot express (the key shown inert: it
    comes from the file)."""
    return (f"{where}: field {inert(key, single_line=True)} = {show_value(value)}: "
            f"not expressible in gptterm ({why})")


def to_values(fmt: str, data: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """gptterm preset values for another tool's fields, and one note per field lost.

    Fields the file leaves out take the tool's own defaults (llama-server samples with
    top_k 40 unless told otherwise). The values are not validated yet: pass them to
    `presets.from_mapping`, or use `import_preset`.
    """
    table = TABLES[fmt]
    present = {k: v for k, v in data.items() if v is not None}  # null: unset (HF writes them)
    full = {**table.defaults, **present}
    values: dict[str, Any] = {}
    notes: list[str] = []
    for row in table.rows:
        if row.theirs in full:
            values[row.ours] = row.to_ours(full[row.theirs])
    for key, value in present.items():
        if key in table.metadata or key in table.structural or any(
                r.theirs == key for r in table.rows):
            continue
        if key in table.inexpressible:
            neutral, why = table.inexpressible[key]
            switch = table.depends.get(key)
            if value == neutral or (switch and full.get(switch) in (None, 0, False)):
                continue  # changes nothing
            notes.append(_note(where, key, value, why))
        else:
            notes.append(_note(where, key, value, f"not a {TOOLS[fmt]} setting gptterm knows"))
    _STRUCTURE_IN[fmt](full, present, values, notes, where)
    return values, notes


def _hf_in(full: dict, present: dict, values: dict, notes: list[str], where: str) -> None:
    beams = full["num_beams"]
    sampling = full["do_sample"] is True
    if _number(beams) and beams > 1:
        values["method"] = "beam"
        if sampling:
            notes.append(_note(where, "do_sample", True, "beam sampling: imported as beam search"))
        groups = present.get("num_beam_groups", 1)
        if groups != 1:
            notes.append(_note(where, "num_beam_groups", groups, "no group beam search"))
    elif sampling:
        values["method"] = "sample"
    elif _positive(full["penalty_alpha"]) and _number(full["top_k"]) and full["top_k"] > 1:
        values["method"] = "contrastive"
    else:
        values["method"] = "greedy"
    stopping = full["early_stopping"]
    if stopping == "never":
        notes.append(_note(where, "early_stopping", stopping,
                           "beam search stops by transformers' heuristic or early"))
    else:
        values["early_stopping"] = stopping
    for key in ("max_length", "min_length"):
        if key in present and not (key == "min_length" and present[key] == 0):
            ours = "max_new_tokens" if key == "max_length" else "min_new_tokens"
            notes.append(_note(where, key, present[key],
                               f"it counts the prompt too; gptterm's {ours} counts the reply"))
    bias: dict[str, float] = {}
    for key, entries, fixed in (("sequence_bias", present.get("sequence_bias"), None),
                                ("bad_words_ids", present.get("bad_words_ids"), -math.inf),
                                ("suppress_tokens", present.get("suppress_tokens"), -math.inf)):
        if entries is None:
            continue
        if key == "sequence_bias" and isinstance(entries, Mapping):
            entries = list(entries.items())
        if not isinstance(entries, list):
            notes.append(_note(where, key, entries, "expected a list"))
            continue
        for entry in entries:
            if key == "suppress_tokens":
                ids, amount = [entry], fixed
            elif key == "bad_words_ids":
                ids, amount = entry, fixed
            else:
                ids, amount = (entry if isinstance(entry, (list, tuple)) and len(entry) == 2
                               else (None, None))
            ok = (isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], int)
                  and not isinstance(ids[0], bool) and ids[0] >= 0 and _number(amount))
            if ok:
                bias[str(ids[0])] = float(amount)
            else:
                notes.append(_note(where, key, entry,
                                   "gptterm biases single tokens, not sequences"))
    if bias:
        values["logit_bias"] = bias
    values["order"] = list(DEFAULT_ORDER)  # transformers' fixed order, which gptterm follows


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _webui_in(full: dict, present: dict, values: dict, notes: list[str], where: str) -> None:
    if full["do_sample"] is False:
        contrastive = _positive(full["penalty_alpha"]) and _number(full["top_k"]) \
            and full["top_k"] > 1
        values["method"] = "contrastive" if contrastive else "greedy"
    else:
        values["method"] = "sample"
    priority = full["sampler_priority"]
    names = (priority.replace(",", "\n").split("\n") if isinstance(priority, str)
             else list(priority) if isinstance(priority, list) else list(WEBUI_PRIORITY))
    names = [str(n).strip() for n in names if str(n).strip()]
    if full["temperature_last"] is True:  # webui moves the temperatures to the end
        for name in ("temperature", "dynamic_temperature", "quadratic_sampling"):
            names = [n for n in names if n != name] + [name]
    steps = [_WEBUI_STEPS[n] for n in names if n in _WEBUI_STEPS]
    # A step webui knows but sampler_priority leaves out sorts first in webui.
    steps = _dedupe(steps)
    first = [s for s in DEFAULT_ORDER if s in _WEBUI_STEPS.values() and s not in steps]
    values["order"] = _complete_order(first + steps)
    window = full["repetition_penalty_range"]
    if _number(full["dry_multiplier"]) and full["dry_multiplier"] > 0 and _number(window):
        values["dry_penalty_last_n"] = int(window) if window > 0 else -1
    if _number(full["repetition_penalty"]) and full["repetition_penalty"] != 1 \
            and _number(window) and window > 0:
        shown = window if "repetition_penalty_range" in present else f"{window} (webui's default)"
        notes.append(f"{where}: field repetition_penalty_range = {shown}: not expressible in "
                     "gptterm (its repetition penalty looks at the whole context)")


def _llama_in(full: dict, present: dict, values: dict, notes: list[str], where: str) -> None:
    steps = _llama_order(full["samplers"], notes, where)
    temp = full["temperature"]
    greedy = _number(temp) and temp <= 0 and "temperature" in steps
    values["method"] = "greedy" if greedy else "sample"
    if not greedy:
        values["temperature"] = temp
    # A sampler left out of `samplers` never runs, whatever its value.
    for step, ours, off in (("top_k", "top_k", 0), ("top_p", "top_p", 1.0),
                            ("min_p", "min_p", 0.0), ("typical_p", "typical_p", 1.0),
                            ("temperature", "temperature", 1.0),
                            ("top_n_sigma", "top_n_sigma", -1.0),
                            ("xtc", "xtc_probability", 0.0), ("dry", "dry_multiplier", 0.0),
                            ("repetition_penalty", "repetition_penalty", 1.0)):
        if step not in steps and ours in values and values[ours] != off:
            if ours in present or (ours == "repetition_penalty" and "repeat_penalty" in present):
                notes.append(f"{where}: field {_their_name(ours)} = "
                             f"{show_value(values[ours])}: not used (samplers leaves out "
                             f"{step}), imported as off")
            values[ours] = off
    values["order"] = _complete_order(["logit_bias", *steps])
    threshold = full["xtc_threshold"]
    if _number(threshold) and threshold > 0.5:  # llama.cpp: above 0.5 turns XTC off
        values["xtc_probability"] = 0.0
    else:
        values["xtc_threshold"] = threshold
    count = next((present[k] for k in ("n_predict", "max_tokens", "max_completion_tokens")
                  if k in present), None)
    if count is not None:
        if _number(count) and count <= 0:
            why = "no limit: gptterm needs one, kept max_new_tokens = " \
                  f"{NEUTRAL.max_new_tokens}" if count < 0 else "gptterm writes at least a token"
            notes.append(_note(where, "n_predict", count, why))
        else:
            values["max_new_tokens"] = count
    seed = full["seed"]
    if seed in _LLAMA_RANDOM_SEED:
        values["seed"] = None
    else:
        values["seed"] = seed
    rep = values.get("repetition_penalty", 1.0)
    last_n = full["repeat_last_n"]
    if _number(rep) and rep != 1 and last_n != -1:
        shown = last_n if "repeat_last_n" in present else f"{last_n} (llama-server's default)"
        why = ("0 turns the penalty off; imported as off" if last_n == 0
               else "gptterm's repetition penalty looks at the whole context")
        notes.append(f"{where}: field repeat_last_n = {shown}: not expressible in gptterm "
                     f"({why})")
        if last_n == 0:
            values["repetition_penalty"] = 1.0
    if "logit_bias" in present:
        values["logit_bias"] = _llama_bias_in(present["logit_bias"], notes, where)


def _their_name(ours: str) -> str:
    return {"repetition_penalty": "repeat_penalty"}.get(ours, ours)


def _llama_order(samplers: Any, notes: list[str], where: str) -> list[str]:
    """llama.cpp's `samplers` (names, or one character each) as gptterm step names."""
    if isinstance(samplers, str):
        names = [_LLAMA_CHARS.get(c, c) for c in samplers]
    elif isinstance(samplers, list):
        names = [str(n).lower() for n in samplers]
    else:
        notes.append(_note(where, "samplers", samplers, "expected a list of sampler names"))
        names = list(LLAMA_SAMPLERS)
    steps = []
    for name in names:
        canonical = _LLAMA_ALIASES.get(name, name)
        if canonical not in _LLAMA_STEPS:  # kebab-case and no-dash aliases
            canonical = next((c for c in _LLAMA_STEPS
                              if name in (c.replace("_", "-"), c.replace("_", ""))), canonical)
        step = _LLAMA_STEPS.get(canonical)
        if step is None:
            notes.append(_note(where, "samplers", name, "no such step in gptterm"))
        elif step in steps:
            notes.append(_note(where, "samplers", name, "gptterm runs each step once"))
        else:
            steps.append(step)
    return steps


def _llama_bias_in(value: Any, notes: list[str], where: str) -> dict[str, float]:
    """llama.cpp's logit_bias: [[token or string, bias or false], ...] or {key: bias}."""
    pairs = (list(value.items()) if isinstance(value, Mapping)
             else value if isinstance(value, list) else None)
    if pairs is None:
        notes.append(_note(where, "logit_bias", value, "expected a list of pairs or a table"))
        return {}
    out: dict[str, float] = {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            notes.append(_note(where, "logit_bias", pair, "expected [token, bias]"))
            continue
        key, bias = pair
        if bias is False:
            bias = -math.inf
        if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
            key = str(key)
        if not isinstance(key, str) or not _number(bias):
            notes.append(_note(where, "logit_bias", pair, "expected [token, bias]"))
            continue
        out[key] = float(bias)
    return out


def _dedupe(steps: list[str]) -> list[str]:
    return list(dict.fromkeys(steps))


def _complete_order(steps: list[str]) -> list[str]:
    """A full gptterm order keeping `steps` as given, every other step right after the
    step that precedes it in DEFAULT_ORDER."""
    order = list(steps)
    for step in [s for s in DEFAULT_ORDER if s not in steps]:
        before = DEFAULT_ORDER[:DEFAULT_ORDER.index(step)]
        at = max((order.index(s) + 1 for s in before if s in order), default=0)
        order.insert(at, step)
    return order


_STRUCTURE_IN = {"hf": _hf_in, "webui": _webui_in, "llama.cpp": _llama_in}


# --- gptterm preset -> their fields ----------------------------------------------------

# The fields each order step reads: a step that is off leaves them without effect.
_STEP_FIELDS = {
    "logit_bias": ("logit_bias",), "banned_strings": ("banned_strings",),
    "repetition_penalty": ("repetition_penalty",),
    "no_repeat_ngram": ("no_repeat_ngram_size",), "min_new_tokens": ("min_new_tokens",),
    "dry": ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
            "dry_sequence_breakers"),
    "top_n_sigma": ("top_n_sigma",), "temperature": ("temperature",), "top_k": ("top_k",),
    "top_p": ("top_p",), "min_p": ("min_p",), "typical_p": ("typical_p",),
    "xtc": ("xtc_probability", "xtc_threshold"),
}


def effective_values(preset: Preset) -> dict[str, Any]:
    """What a preset does: its values with every setting that changes nothing (a step that
    is off, beam settings outside beam search) at its neutral value, and `order` cut to
    the active steps. Two presets that generate alike have equal effective values."""
    values = preset.values()
    neutral = NEUTRAL.values()
    active = active_steps(preset)
    for step, names in _STEP_FIELDS.items():
        if step not in active:
            for name in names:
                values[name] = neutral[name]
    if preset.method == "contrastive":
        values["top_k"] = preset.top_k  # the candidate count, not a filter
    else:
        values["penalty_alpha"] = neutral["penalty_alpha"]
    if preset.method != "beam":
        for name in ("num_beams", "length_penalty", "early_stopping"):
            values[name] = neutral[name]
    values["order"] = [s for s in preset.order if s in active]
    if preset.method != "sample":
        values["seed"] = None  # only sampling draws
    values["logit_bias"] = {_bias_key(k): b for k, b in values["logit_bias"].items()}
    values.pop("name")
    values.pop("description")
    return values


def _bias_key(key: str) -> str:
    token = logit_bias_token_id(key)
    return key if token is None else str(token)  # "007" and "7" name one token


def from_preset(fmt: str, preset: Preset) -> tuple[dict[str, Any], list[str]]:
    """The preset in another tool's fields, and one note per gptterm field it cannot hold.

    Writes every setting the tool would otherwise default (llama-server's top_k 40,
    transformers' top_k 50), so the file means the same wherever it is read.
    """
    table = TABLES[fmt]
    eff = effective_values(preset)
    neutral = effective_values(NEUTRAL)
    where = preset.name
    notes = [f"{where}: field {name} = {show_value(eff[name])}: not expressible in "
             f"{TOOLS[fmt]} ({why})"
             for name, why in table.unsupported.items() if eff[name] != neutral[name]]
    out: dict[str, Any] = {}
    for row in table.rows:
        if row.ours not in table.unsupported:
            out[row.theirs] = row.to_theirs(eff[row.ours])
    _STRUCTURE_OUT[fmt](preset, eff, out, notes)
    if preset.description:
        notes.append(f"{where}: field description = {show_value(preset.description)}: not "
                     f"expressible in {TOOLS[fmt]} (its files have no place for one)")
    return out, notes


def _order_note(where: str, eff: dict, fixed: list[str], tool: str) -> list[str]:
    """A note when the active steps run in an order the tool cannot follow."""
    if [s for s in eff["order"] if s in fixed] == [s for s in fixed if s in eff["order"]]:
        return []
    return [(f"{where}: field order = {show_value(eff['order'])}: not expressible in {tool} "
            f"(it runs them as {', '.join(s for s in fixed if s in eff['order'])})")]


def _hf_out(preset: Preset, eff: dict, out: dict, notes: list[str]) -> None:
    out["do_sample"] = preset.method == "sample"
    out["early_stopping"] = eff["early_stopping"]
    if preset.method in ("greedy", "beam"):
        out.pop("top_k")  # transformers ignores it there (and warns when it is set)
    if preset.method != "contrastive":
        out.pop("penalty_alpha")
    if not eff["stop"]:
        out.pop("stop_strings")
    if eff["min_p"] == 0:
        out.pop("min_p")
    sequence_bias, bad_words = [], []
    for key, bias in eff["logit_bias"].items():
        token = logit_bias_token_id(key)
        if token is None:
            notes.append(f"{preset.name}: field logit_bias[{show_value(key)}] = {bias:g}: not "
                         "expressible in transformers (a generation config names token ids)")
        elif bias == -math.inf:
            bad_words.append([token])
        else:
            sequence_bias.append([[token], bias])
    if sequence_bias:
        out["sequence_bias"] = sequence_bias
    if bad_words:
        out["bad_words_ids"] = bad_words
    hf_order = ["logit_bias", "repetition_penalty", "no_repeat_ngram", "min_new_tokens",
                "temperature", "top_k", "top_p", "min_p", "typical_p"]
    notes += _order_note(preset.name, eff, hf_order, "transformers")


def _webui_out(preset: Preset, eff: dict, out: dict, notes: list[str]) -> None:
    out["do_sample"] = preset.method == "sample"
    if preset.method == "beam":
        notes.append(f"{preset.name}: field method = 'beam': not expressible in "
                     "text-generation-webui (a webui preset holds no beam search; written "
                     "as greedy)")
    window = 0  # webui's repetition_penalty_range limits the penalty and DRY alike
    if "dry" in eff["order"] and eff["dry_penalty_last_n"] > 0:
        if "repetition_penalty" in eff["order"]:
            notes.append(f"{preset.name}: field dry_penalty_last_n = "
                         f"{eff['dry_penalty_last_n']}: not expressible in "
                         "text-generation-webui (its repetition_penalty_range limits the "
                         "repetition penalty too, which gptterm applies to the whole context)")
        else:
            window = eff["dry_penalty_last_n"]
    out["repetition_penalty_range"] = window
    known = [_webui_name(s) for s in _full_order(preset) if _webui_name(s)]
    out["sampler_priority"] = "\n".join(known + [n for n in WEBUI_PRIORITY if n not in known])
    out["temperature_last"] = False


def _webui_name(step: str) -> str | None:
    return next((theirs for theirs, ours in _WEBUI_STEPS.items() if ours == step), None)


def _llama_out(preset: Preset, eff: dict, out: dict, notes: list[str]) -> None:
    if preset.method in ("beam", "contrastive"):
        notes.append(f"{preset.name}: field method = {preset.method!r}: not expressible in "
                     f"llama-server (it has no {preset.method} search; written as greedy)")
    greedy = preset.method != "sample"
    out["temperature"] = 0.0 if greedy else eff["temperature"]
    out["repeat_last_n"] = -1  # the whole context, as gptterm penalises
    out["xtc_threshold"] = eff["xtc_threshold"]
    out["n_predict"] = eff["max_new_tokens"]
    if eff["seed"] is not None:
        if eff["seed"] < 0xFFFFFFFF:
            out["seed"] = eff["seed"]
        else:
            notes.append(f"{preset.name}: field seed = {eff['seed']}: not expressible in "
                         "llama-server (its seeds are below 2**32 - 1)")
    names = {ours: theirs for theirs, ours in _LLAMA_STEPS.items()}
    out["samplers"] = [names[s] for s in _full_order(preset) if s in names]
    if eff["logit_bias"]:  # JSON has no -inf: llama.cpp reads false as a ban
        out["logit_bias"] = [[int(k) if logit_bias_token_id(k) is not None else k,
                              False if b == -math.inf else b]
                             for k, b in eff["logit_bias"].items()]
    # llama-server applies logit biases first, then `samplers` in the order given.
    chain = [s for s in _full_order(preset) if s in names]
    notes += _order_note(preset.name, eff, ["logit_bias", *chain], "llama-server")


def _full_order(preset: Preset) -> list[str]:
    """The preset's order with the steps it leaves out (all off) at their usual places, so
    a tool that drops an unlisted step (llama-server) still finds, say, temperature."""
    return _complete_order(list(preset.order))


_STRUCTURE_OUT = {"hf": _hf_out, "webui": _webui_out, "llama.cpp": _llama_out}


def dumps(fmt: str, data: Mapping[str, Any]) -> str:
    """The text of a file in the tool's own syntax (YAML for webui, JSON otherwise)."""
    if fmt == "webui":
        import yaml

        class Dumper(yaml.SafeDumper):
            pass

        def block(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
            # sampler_priority holds one name a line, as webui shows it: a literal block.
            lines = text.split("\n")
            plain = len(lines) > 1 and all(ln and ln.strip() == ln and ln.isprintable()
                                           for ln in lines)
            return dumper.represent_scalar("tag:yaml.org,2002:str", text,
                                           style="|" if plain else None)

        Dumper.add_representer(str, block)
        return yaml.dump(dict(data), Dumper=Dumper, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- the whole import ------------------------------------------------------------------


def import_text(text: str, name: str, where: str, fmt: str | None = None
                ) -> tuple[str, Preset, list[str]]:
    """Read another tool's preset: (its format, the validated preset, the notes).

    Raises:
        FormatError / PresetError: one line naming `where` and what was expected.
    """
    from gptterm import presets

    data, is_json = read_text(text, where)
    fmt = fmt or detect(data, is_json, where)
    values, notes = to_values(fmt, data, where)
    source = inert(where.rsplit("/", 1)[-1], single_line=True)
    values["description"] = f"Imported from {source} ({TOOLS[fmt]})"
    try:
        preset = presets.from_mapping(values, name=name, where=where)
    except PresetError as exc:
        raise PresetError(_their_names(str(exc), fmt, where)) from None
    return fmt, preset, notes


def _their_names(message: str, fmt: str, where: str) -> str:
    """Name a field in an error as the file wrote it (repeat_penalty, not gptterm's name)."""
    for row in TABLES[fmt].rows:
        prefix = f"{where}: {row.ours} = "
        if row.theirs != row.ours and message.startswith(prefix):
            return f"{where}: {row.theirs} = " + message[len(prefix):]
    return message


def preset_toml(preset: Preset) -> str:
    """A preset file holding only what differs from the neutral defaults (as the bundled
    ones do), so it reads as what the imported preset changes."""
    import tomli_w

    values = preset.values()
    neutral = NEUTRAL.values()
    body = {k: v for k, v in values.items()
            if k != "name" and v is not None and v != neutral[k]}
    if "description" in body:
        body = {"description": body.pop("description"), **body}
    return tomli_w.dumps(body)
