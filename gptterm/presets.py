"""Sampler presets: the `Preset` dataclass, validation, and loading from TOML files.

A preset file holds only what differs from the neutral defaults below, plus a
`description`. Bundled presets live in `presets/`; a user file of the same name
in the config dir's `presets/` wins. Loading never raises for a bad file: it
returns the presets that loaded and one line per failure.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gptterm.cli_types import INT_MAX, SEED_LIMIT
from gptterm.tomlfiles import load_dirs, read_toml, show_value

METHODS = ("greedy", "sample", "beam", "contrastive")

# Filter steps in the order transformers applies them in `generate`, with the modern
# samplers where llama.cpp's default chain puts them (logit_bias and banned_strings first,
# dry after the penalties, top_n_sigma before the truncations, xtc after them).
DEFAULT_ORDER = (
    "logit_bias",
    "banned_strings",
    "repetition_penalty",
    "no_repeat_ngram",
    "min_new_tokens",
    "dry",
    "top_n_sigma",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "xtc",
)

DRY_BREAKERS = ("\n", ":", "\"", "*")  # llama.cpp's default DRY sequence breakers


class PresetError(ValueError):
    """A preset value or file is invalid; the message is one line for the user."""


@dataclass(frozen=True)
class Preset:
    """Every knob of generation. Defaults are neutral: each step is a no-op."""

    name: str = "custom"
    description: str = ""
    method: str = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    typical_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    penalty_alpha: float = 0.0
    max_new_tokens: int = 80
    min_new_tokens: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # What starts a new prompt after text that does not end in whitespace (None: the
    # model's catalog entry decides, else a newline).
    turn_separator: str | None = None
    order: tuple[str, ...] = DEFAULT_ORDER
    # Modern samplers (each off at its default). logit_bias: (key, bias) pairs, a key being
    # a token id in decimal digits or a string whose every token gets the bias.
    logit_bias: tuple[tuple[str, float], ...] = ()
    banned_strings: tuple[str, ...] = ()
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1  # -1: the whole context
    dry_sequence_breakers: tuple[str, ...] = DRY_BREAKERS
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = -1.0  # <= 0: off
    source: str = field(default="", compare=False)

    def values(self) -> dict[str, Any]:
        """The resolved values as plain JSON-able data (what a stored turn records)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        data["stop"] = list(self.stop)
        data["order"] = list(self.order)
        data["logit_bias"] = dict(self.logit_bias)
        data["banned_strings"] = list(self.banned_strings)
        data["dry_sequence_breakers"] = list(self.dry_sequence_breakers)
        return data

    def replace(self, **changes: Any) -> Preset:
        """A copy with `changes` applied and validated."""
        return from_mapping({**self.values(), **changes}, where=self.source or self.name)

    def summary(self) -> str:
        """One line naming what this preset changes."""
        neutral = Preset()
        parts = [self.method]
        for f in fields(self):
            if f.name in ("name", "description", "method", "source", "order"):
                continue
            value = getattr(self, f.name)
            if value != getattr(neutral, f.name):
                shown = dict(value) if f.name == "logit_bias" else value
                parts.append(f"{f.name}={shown}")
        return " ".join(parts)


_KNOWN = {f.name: f for f in fields(Preset) if f.name != "source"}
FIELD_NAMES = frozenset(_KNOWN)  # the keys a preset file (or a stored turn's preset) may hold
_INT = {"top_k", "no_repeat_ngram_size", "num_beams", "max_new_tokens", "min_new_tokens",
        "dry_allowed_length", "dry_penalty_last_n"}
_FLOAT = {
    "temperature", "top_p", "typical_p", "min_p", "repetition_penalty",
    "length_penalty", "penalty_alpha", "dry_multiplier", "dry_base", "xtc_probability",
    "xtc_threshold", "top_n_sigma",
}
_STRINGS = {"stop", "order", "banned_strings", "dry_sequence_breakers"}
LOGIT_BIAS_LIMIT = 100.0  # |bias| at most this, or -inf (a ban)




def _coerce(key: str, value: Any, where: str) -> Any:
    """Check the type of one field and convert it; raise PresetError with a one-liner."""

    def bad(expected: str) -> PresetError:
        return PresetError(f"{where}: {key} = {show_value(value)}: expected {expected}")

    if value is None and _KNOWN[key].default is None:  # optional fields (seed, ...)
        return None
    if key in _INT or key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if key in _FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        try:
            number = float(value)
        except OverflowError:  # an int too big for a float
            number = math.inf
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if key == "early_stopping":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key == "logit_bias":
        return _coerce_logit_bias(value, bad, where)
    if key in _STRINGS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise bad("a string")
    return value


def _coerce_logit_bias(value: Any, bad: Callable[[str], PresetError],
                       where: str) -> tuple[tuple[str, float], ...]:
    """A table of key -> bias (or the stored pairs) as (key, float) pairs."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = [tuple(p) for p in value]
    else:
        raise bad("a table of token id or string = bias")
    out: dict[str, float] = {}
    for key, bias in pairs:
        shown = f"{where}: logit_bias[{show_value(key)}] = {show_value(bias)}"
        if not isinstance(key, str) or not key:
            raise PresetError(f"{shown}: expected a non-empty string or token id as the key")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise PresetError(f"{shown}: expected a number or -inf")
        try:
            number = float(bias)
        except OverflowError:
            number = math.inf
        if not (number == -math.inf or abs(number) <= LOGIT_BIAS_LIMIT):
            raise PresetError(f"{shown}: expected a number in [-{LOGIT_BIAS_LIMIT:g}, "
                              f"{LOGIT_BIAS_LIMIT:g}] or -inf (a ban)")
        out[key] = number
    return tuple(out.items())


def logit_bias_token_id(key: str) -> int | None:
    """The token id a logit_bias key names (decimal digits), or None for a string key."""
    return int(key) if key.isascii() and key.isdigit() else None


def _check_ranges(p: Preset, where: str) -> None:
    """Raise PresetError for the first out-of-range value."""
    checks = [
        (p.method in METHODS, "method", p.method, " | ".join(METHODS)),
        (p.temperature > 0 or p.method != "sample", "temperature", p.temperature,
         "> 0 when sampling"),
        (0 <= p.temperature <= 100, "temperature", p.temperature, "in [0, 100]"),
        (0 <= p.top_k <= INT_MAX, "top_k", p.top_k, f"in [0, {INT_MAX}] (0 turns it off)"),
        (0 < p.top_p <= 1, "top_p", p.top_p, "in (0, 1]"),
        (0 < p.typical_p <= 1, "typical_p", p.typical_p, "in (0, 1]"),
        (0 <= p.min_p <= 1, "min_p", p.min_p, "in [0, 1]"),
        (0 < p.repetition_penalty <= 100, "repetition_penalty", p.repetition_penalty,
         "in (0, 100]"),
        (0 <= p.no_repeat_ngram_size <= INT_MAX, "no_repeat_ngram_size",
         p.no_repeat_ngram_size, f"in [0, {INT_MAX}]"),
        (1 <= p.num_beams <= 64, "num_beams", p.num_beams, "in [1, 64]"),
        (-100 <= p.length_penalty <= 100, "length_penalty", p.length_penalty,
         "in [-100, 100]"),
        (p.penalty_alpha >= 0 and p.penalty_alpha <= 1, "penalty_alpha", p.penalty_alpha,
         "in [0, 1]"),
        (p.method != "contrastive" or (p.penalty_alpha > 0 and p.top_k > 1), "penalty_alpha",
         p.penalty_alpha, "> 0 with top_k > 1 for contrastive search"),
        (1 <= p.max_new_tokens <= INT_MAX, "max_new_tokens", p.max_new_tokens,
         f"in [1, {INT_MAX}]"),
        (0 <= p.min_new_tokens <= INT_MAX, "min_new_tokens", p.min_new_tokens,
         f"in [0, {INT_MAX}]"),
        (p.seed is None or 0 <= p.seed < SEED_LIMIT, "seed", p.seed,
         "an integer with 0 <= seed < 2**63"),
        (p.turn_separator is None or len(p.turn_separator) <= 16, "turn_separator",
         p.turn_separator, "a string of at most 16 characters"),
        (0 <= p.dry_multiplier <= 100, "dry_multiplier", p.dry_multiplier,
         "in [0, 100] (0 turns DRY off)"),
        (1 <= p.dry_base <= 100, "dry_base", p.dry_base, "in [1, 100]"),
        (0 <= p.dry_allowed_length <= INT_MAX, "dry_allowed_length", p.dry_allowed_length,
         f"in [0, {INT_MAX}]"),
        (-1 <= p.dry_penalty_last_n <= INT_MAX, "dry_penalty_last_n", p.dry_penalty_last_n,
         f"in [-1, {INT_MAX}] (-1: the whole context, 0 turns DRY off)"),
        (all(0 < len(s) <= 40 for s in p.dry_sequence_breakers), "dry_sequence_breakers",
         list(p.dry_sequence_breakers), "strings of 1 to 40 characters"),
        (0 <= p.xtc_probability <= 1, "xtc_probability", p.xtc_probability,
         "in [0, 1] (0 turns XTC off)"),
        (0 <= p.xtc_threshold <= 0.5, "xtc_threshold", p.xtc_threshold, "in [0, 0.5]"),
        (p.top_n_sigma <= 100, "top_n_sigma", p.top_n_sigma, "at most 100 (<= 0 turns it off)"),
    ]
    for ok, key, value, expected in checks:
        if not ok:
            raise PresetError(f"{where}: {key} = {show_value(value)}: expected {expected}")
    for step in p.order:
        if step not in DEFAULT_ORDER:
            raise PresetError(
                f"{where}: order has {show_value(step)}: expected steps from {', '.join(DEFAULT_ORDER)}"
            )
    repeated = sorted({s for s in p.order if p.order.count(s) > 1})
    if repeated:
        raise PresetError(f"{where}: order lists {show_value(repeated[0])} twice: expected each step once")
    missing = [s for s in active_steps(p) if s not in p.order]
    if missing:
        raise PresetError(
            f"{where}: order lacks {missing[0]!r}, which this preset sets: expected it in order"
        )
    if any(s == "" for s in p.stop):
        raise PresetError(f"{where}: stop has an empty string: expected non-empty strings")
    if any(s == "" for s in p.banned_strings):
        raise PresetError(f"{where}: banned_strings has an empty string: expected non-empty strings")


def active_steps(p: Preset) -> list[str]:
    """The filter steps that change anything for `p` (in DEFAULT_ORDER).

    Temperature, top-k, top-p, min-p and typical only act when sampling, as in
    transformers; top_k is the candidate count of contrastive search, not a filter.
    The modern samplers follow the same rule: logit_bias, banned_strings and DRY change
    scores (processors, every method), top-n-sigma and XTC cut the distribution drawn
    from (warpers, sampling only: top-n-sigma never drops the top token, and XTC is a
    random cut).
    """
    sampling = p.method == "sample"
    on = {
        "logit_bias": bool(p.logit_bias),
        "banned_strings": bool(p.banned_strings),
        "dry": p.dry_multiplier > 0 and p.dry_penalty_last_n != 0,
        "top_n_sigma": sampling and p.top_n_sigma > 0,
        "xtc": sampling and p.xtc_probability > 0,
        "repetition_penalty": p.repetition_penalty != 1.0,
        "no_repeat_ngram": p.no_repeat_ngram_size > 0,
        "min_new_tokens": p.min_new_tokens > 0,
        "temperature": sampling and p.temperature != 1.0,
        "top_k": sampling and p.top_k > 0,
        "top_p": sampling and p.top_p < 1.0,
        "min_p": sampling and p.min_p > 0.0,
        "typical_p": sampling and p.typical_p < 1.0,
    }
    return [step for step in DEFAULT_ORDER if on[step]]


def from_mapping(data: Mapping[str, Any], *, name: str | None = None, where: str = "preset",
                 source: str = "") -> Preset:
    """Build and validate a Preset from a mapping of field values.

    Raises:
        PresetError: an unknown key, a wrong type or an out-of-range value.
    """
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KNOWN:
            raise PresetError(
                f"{where}: unknown key {show_value(key)}: expected one of "
                f"{', '.join(sorted(_KNOWN))}"
            )
        values[key] = _coerce(key, value, where)
    if name is not None:
        values["name"] = name
    preset = Preset(**values, source=source)
    _check_ranges(preset, where)
    return preset


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a CLI `key=value` using TOML value syntax, falling back to a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise PresetError(f"--set {show_value(text)}: expected key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except ValueError:  # TOMLDecodeError, or an integer too long to convert
        value = raw.strip()
    return key, value


def apply_assignments(preset: Preset, assignments: Iterable[str]) -> Preset:
    """Apply `--set key=value` overrides, validated like a preset file."""
    changes = dict(parse_assignment(a) for a in assignments)
    if not changes:
        return preset
    for key in changes:
        if key not in _KNOWN or key in ("name", "source"):
            raise PresetError(
                f"--set: unknown key {show_value(key)}: expected one of "
                f"{', '.join(k for k in sorted(_KNOWN) if k != 'name')}"
            )
    return from_mapping({**preset.values(), **changes}, where="--set", source=preset.source)


def load_file(path: Path) -> Preset:
    """Load one preset file; its name is the file stem."""
    data = read_toml(path, PresetError)
    if "name" in data:
        raise PresetError(f"{path}: unknown key 'name': the file name is the preset name")
    return from_mapping(data, name=path.stem, where=str(path), source=str(path))


def load_all(dirs: Iterable[Path]) -> tuple[dict[str, Preset], list[str]]:
    """Load every `*.toml` in `dirs`; later dirs override earlier ones by name.

    Returns:
        (presets by name, one error line per file that failed).
    """
    return load_dirs(dirs, load_file, PresetError)


def load_presets() -> tuple[dict[str, Preset], list[str]]:
    """Bundled presets, then the user's (which win by name)."""
    from gptterm import paths

    return load_all([paths.bundled_presets_dir(), paths.user_presets_dir()])


DEFAULT_PRESET = "creative"

# The fields a stored session may override on top of its preset (store and UI share them).
SESSION_KEYS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
