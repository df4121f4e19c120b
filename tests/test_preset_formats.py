"""Presets of other tools: detection, the mapping of each field both ways, every field
that cannot be expressed named, and round trips (export then import) over valid presets."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptterm import preset_formats as pf
from gptterm.presets import DEFAULT_ORDER, Preset, PresetError, from_mapping


def imported(text: str, fmt: str | None = None, where: str = "f.json"):
    return pf.import_text(text, "x", where, fmt)


def named(notes: list[str]) -> set[str]:
    """The field names the notes name (logit_bias[...] names logit_bias)."""
    return {re.search(r": field (\w+)", line).group(1) for line in notes}


# --- detection -------------------------------------------------------------------------


@pytest.mark.parametrize("text, where, fmt", [
    (('{"_from_model_config": true, "bos_token_id": 50256, "eos_token_id": 50256, '
     '"transformers_version": "4.26.0"}'), "generation_config.json", "hf"),
    ('{"do_sample": true, "num_beams": 1, "temperature": 0.7}', "g.json", "hf"),
    ('{"prompt": "Hi", "n_predict": 64, "temperature": 0.7}', "body.json", "llama.cpp"),
    ('{"repeat_penalty": 1.1}', "body.json", "llama.cpp"),
    ("min_p: 0.02\nxtc_probability: 0.5\n", "Creative.yaml", "webui"),
    ("do_sample: false\ntop_k: 1\n", "Deterministic.yaml", "webui"),
    ('{"temperature_last": true, "temperature": 0.5}', "w.json", "webui"),
])
def test_detect_by_the_keys_only_one_tool_uses(text, where, fmt):
    assert imported(text, where=where)[0] == fmt


@pytest.mark.parametrize("text, expected", [
    ("[1, 2]", "not a table of settings"),
    ("", "not a table of settings"),
    ("{unclosed: [", "neither JSON nor YAML"),
    ('{"colour": "blue"}', "no setting gptterm knows"),
    ("colour: blue\n", "no setting gptterm knows"),
    ('{"temperature": 0.7}', ("its keys fit an HF generation_config.json and a llama.cpp "
                             "server request body (JSON): name one with --format")),
])
def test_unrecognisable_file_is_one_line_naming_file_and_what_was_expected(text, expected):
    with pytest.raises(pf.FormatError) as info:
        imported(text, where="odd.json")
    message = str(info.value)
    assert message.startswith("odd.json: ") and expected in message
    assert "\n" not in message
    if "--format" not in message:
        assert message.endswith(pf.EXPECTED)


def test_format_given_overrides_detection():
    fmt, preset, _ = imported('{"temperature": 0.7}', "llama.cpp")
    # llama-server's own defaults fill what the body leaves out.
    assert (fmt, preset.method, preset.top_k, preset.top_p, preset.min_p) == (
        "llama.cpp", "sample", 40, 0.95, 0.05)
    fmt, preset, _ = imported('{"temperature": 0.7}', "hf")
    assert (fmt, preset.method) == ("hf", "greedy")  # do_sample defaults to false


# --- HF --------------------------------------------------------------------------------


def test_hf_methods():
    def method(data):
        return imported(json.dumps({"transformers_version": "5", **data}))[1]

    assert method({}).method == "greedy"
    sample = method({"do_sample": True})
    assert (sample.method, sample.top_k) == ("sample", 50)  # transformers' default top_k
    beam = method({"num_beams": 4, "length_penalty": 0.5, "early_stopping": True})
    assert (beam.method, beam.num_beams, beam.length_penalty, beam.early_stopping) == (
        "beam", 4, 0.5, True)
    contrastive = method({"penalty_alpha": 0.6, "top_k": 4})
    assert (contrastive.method, contrastive.penalty_alpha, contrastive.top_k) == (
        "contrastive", 0.6, 4)
    assert method({"penalty_alpha": 0.6, "top_k": 1}).method == "greedy"


def test_hf_biases_and_lost_fields_named():
    data = {"transformers_version": "5", "do_sample": True, "sequence_bias": [[[5], 2.5],
            [[1, 2], -1.0]], "bad_words_ids": [[7], [8, 9]], "suppress_tokens": [3],
            "max_length": 40, "num_beams": 1, "epsilon_cutoff": 0.0, "eta_cutoff": 3e-4,
            "eos_token_id": 50256, "stop_strings": "END", "made_up": 1}
    _, preset, notes = imported(json.dumps(data))
    assert dict(preset.logit_bias) == {"5": 2.5, "7": -math.inf, "3": -math.inf}
    assert preset.stop == ("END",)
    # Each lost field once; epsilon_cutoff is at its neutral value: nothing lost.
    assert sorted(named(notes)) == sorted(["sequence_bias", "bad_words_ids", "max_length",
                                           "eta_cutoff", "eos_token_id", "made_up"])
    assert all(line.startswith("f.json: field ") and ": not expressible in gptterm (" in line
               for line in notes)


def test_hf_beam_sampling_is_named():
    _, preset, notes = imported('{"num_beams": 3, "do_sample": true, "num_beam_groups": 1}')
    assert preset.method == "beam"
    assert named(notes) == {"do_sample"}


# --- webui -----------------------------------------------------------------------------


def test_webui_defaults_sample_and_order():
    _, preset, notes = imported("temperature: 0.7\ntemperature_last: true\n", where="w.yaml")
    assert preset.method == "sample" and notes == []
    active = [s for s in preset.order if s in ("temperature", "top_k", "top_p")]
    assert active == ["top_k", "top_p", "temperature"]  # temperature_last moves it
    _, preset, _ = imported("top_k: 5\nsampler_priority: [top_k, temperature]\n",
                            where="w.yaml")
    assert preset.order[-2:] == ("top_k", "temperature")
    _, preset, _ = imported('sampler_priority: "min_p\\ntop_p"\nmin_p: 0.1\n', where="w.yaml")
    assert preset.order.index("min_p") < preset.order.index("top_p")


def test_webui_greedy_contrastive_and_modern_fields():
    _, preset, _ = imported("do_sample: false\ntop_k: 1\n", where="w.yaml")
    assert preset.method == "greedy"
    _, preset, _ = imported("do_sample: false\ntop_k: 4\npenalty_alpha: 0.6\n", where="w.yaml")
    assert preset.method == "contrastive"
    text = ("dry_multiplier: 0.8\ndry_base: 2\ndry_allowed_length: 3\n"
            "dry_sequence_breakers: '\"\\n\", \"x\"'\nrepetition_penalty_range: 256\n"
            "xtc_probability: 0.5\nxtc_threshold: 0.2\ntop_n_sigma: 1.5\n")
    _, preset, notes = imported(text, where="w.yaml")
    assert (preset.dry_multiplier, preset.dry_base, preset.dry_allowed_length,
            preset.dry_penalty_last_n, preset.dry_sequence_breakers) == (0.8, 2.0, 3, 256,
                                                                         ("\n", "x"))
    assert (preset.xtc_probability, preset.xtc_threshold, preset.top_n_sigma) == (
        0.5, 0.2, 1.5)
    assert notes == []


def test_webui_lost_fields_named_once_and_switched_off_ones_not():
    text = ("tfs: 0.9\nmirostat_mode: 0\nmirostat_tau: 8\nrepetition_penalty: 1.2\n"
            "presence_penalty: 0.3\nsmoothing_factor: 0\n")
    _, preset, notes = imported(text, where="w.yaml")
    assert preset.repetition_penalty == 1.2
    # mirostat_tau does nothing with Mirostat off; the 1024-token window of the penalty
    # (webui's default) is named though the file does not hold it.
    assert sorted(named(notes)) == ["presence_penalty", "repetition_penalty_range", "tfs"]
    assert any("1024 (webui's default)" in line for line in notes)


# --- llama.cpp -------------------------------------------------------------------------


def test_llama_fields():
    body = {"prompt": "Hi", "n_predict": 32, "temperature": 0, "repeat_penalty": 1.3,
            "repeat_last_n": -1, "stop": ["\n\n"], "seed": 7, "min_p": 0.1, "typical_p": 0.9,
            "top_k": 0, "logit_bias": [[15, False], ["Hello", -2], [9, 1.5]],
            "dry_multiplier": 0.8, "dry_penalty_last_n": 64, "top_n_sigma": 2}
    _, preset, notes = imported(json.dumps(body))
    assert (preset.method, preset.max_new_tokens, preset.repetition_penalty, preset.stop,
            preset.seed, preset.top_k) == ("greedy", 32, 1.3, ("\n\n",), 7, 0)
    assert dict(preset.logit_bias) == {"15": -math.inf, "Hello": -2.0, "9": 1.5}
    assert (preset.dry_multiplier, preset.dry_penalty_last_n, preset.top_n_sigma) == (
        0.8, 64, 2.0)
    assert preset.order[0] == "logit_bias"  # llama-server applies biases first
    assert named(notes) == {"prompt"}


def test_llama_samplers_give_the_order_and_leave_others_out():
    body = {"samplers": ["top_k", "temp", "min-p"], "top_k": 10, "min_p": 0.1,
            "top_p": 0.5, "temperature": 0.7}
    _, preset, notes = imported(json.dumps(body))
    active = [s for s in preset.order if s in ("top_k", "temperature", "min_p")]
    assert active == ["top_k", "temperature", "min_p"]
    assert preset.top_p == 1.0  # llama-server would not run it
    assert named(notes) == {"top_p"} and "not used (samplers leaves out top_p)" in notes[0]
    _, preset, _ = imported('{"samplers": "kt", "n_predict": 5, "top_k": 3, "min_p": 0.2}')
    assert preset.min_p == 0.0 and [s for s in preset.order if s in ("top_k", "temperature")
                                    ] == ["top_k", "temperature"]


def test_llama_window_seed_and_limits():
    _, preset, notes = imported('{"repeat_penalty": 1.2, "seed": -1, "n_predict": -1}')
    assert preset.seed is None and preset.max_new_tokens == Preset().max_new_tokens
    assert named(notes) == {"repeat_last_n", "n_predict"}  # 64 (the default): not whole
    _, preset, notes = imported('{"repeat_penalty": 1.2, "repeat_last_n": 0, '
                                '"xtc_probability": 0.5, "xtc_threshold": 0.9}')
    assert preset.repetition_penalty == 1.0 and preset.xtc_probability == 0.0


def test_errors_name_the_field_as_the_file_writes_it():
    with pytest.raises(PresetError) as info:
        imported('{"repeat_penalty": -1, "n_predict": 5}')
    assert str(info.value).startswith("f.json: repeat_penalty = -1")
    with pytest.raises(PresetError, match=r"^f.json: temperature = 0.0: expected > 0"):
        imported('{"do_sample": true, "temperature": 0.0, "num_beams": 1}')


def test_key_from_the_file_reaches_the_notes_inert():
    _, _, notes = imported('{"n_predict": 5, "\\u001b]0;x\\u0007": 1}')
    assert notes and "\x1b" not in notes[0] and "\x07" not in notes[0]


# --- export ----------------------------------------------------------------------------


def test_export_writes_what_the_tool_would_otherwise_default():
    preset = from_mapping({"method": "sample", "temperature": 0.7}, name="p")
    data, notes = pf.from_preset("llama.cpp", preset)
    assert (data["top_k"], data["top_p"], data["min_p"], data["repeat_last_n"]) == (
        0, 1.0, 0.0, -1)
    assert notes == []
    data, _ = pf.from_preset("hf", preset)
    assert data["do_sample"] is True and data["top_k"] == 0


@pytest.mark.parametrize("fmt, fields", [
    ("hf", {"seed", "banned_strings", "dry_multiplier", "turn_separator", "logit_bias",
            "order"}),
    ("webui", {"seed", "banned_strings", "stop", "max_new_tokens", "logit_bias",
               "turn_separator", "min_new_tokens"}),
    ("llama.cpp", {"banned_strings", "no_repeat_ngram_size", "min_new_tokens",
                   "turn_separator"}),
])
def test_export_names_each_field_the_tool_cannot_hold(fmt, fields):
    order = list(DEFAULT_ORDER)
    order.remove("top_k")
    order.insert(0, "top_k")  # top_k before the penalties: transformers cannot
    preset = from_mapping({
        "method": "sample", "seed": 3, "banned_strings": ["xyz"], "dry_multiplier": 0.5,
        "turn_separator": "\n", "logit_bias": {"Hello": 1.0, "5": -math.inf}, "stop": ["."],
        "max_new_tokens": 20, "min_new_tokens": 2, "no_repeat_ngram_size": 3, "top_k": 5,
        "repetition_penalty": 1.1, "order": order}, name="p")
    _, notes = pf.from_preset(fmt, preset)
    assert named(notes) >= fields
    assert all(line.startswith("p: field ") and f"not expressible in {pf.TOOLS[fmt]} (" in line
               for line in notes)


def test_dumps_reads_back_in_each_syntax():
    preset = from_mapping({"method": "sample", "top_p": 0.9}, name="p")
    for fmt in pf.FORMATS:
        text = pf.dumps(fmt, pf.from_preset(fmt, preset)[0])
        data, is_json = pf.read_text(text, "t")
        assert is_json == (fmt != "webui")
        assert pf.detect(data, is_json, "t") == fmt


# --- round trips -----------------------------------------------------------------------

_ids = st.integers(0, 60000).map(str)
_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                 max_size=6).filter(lambda s: not s.isdigit())


@st.composite
def presets(draw) -> Preset:
    method = draw(st.sampled_from(["greedy", "sample", "beam", "contrastive"]))
    values: dict = {"method": method}
    maybe = lambda s: draw(st.none() | s)
    probability = st.floats(0.01, 1.0)
    for key, strategy in {
        "temperature": st.floats(0.05, 5.0), "top_k": st.integers(0, 200),
        "top_p": probability, "typical_p": probability, "min_p": st.floats(0.0, 1.0),
        "repetition_penalty": st.floats(0.5, 3.0), "no_repeat_ngram_size": st.integers(0, 5),
        "max_new_tokens": st.integers(1, 2000), "min_new_tokens": st.integers(0, 20),
        "stop": st.lists(_words, max_size=2), "seed": st.integers(0, 2**40),
        "dry_multiplier": st.floats(0.0, 3.0), "dry_base": st.floats(1.0, 4.0),
        "dry_allowed_length": st.integers(0, 8), "dry_penalty_last_n": st.integers(-1, 512),
        "dry_sequence_breakers": st.lists(_words, min_size=1, max_size=3),
        "xtc_probability": st.floats(0.0, 1.0), "xtc_threshold": st.floats(0.0, 0.5),
        "top_n_sigma": st.floats(-1.0, 5.0), "banned_strings": st.lists(_words, max_size=1),
        "logit_bias": st.dictionaries(_ids | _words, st.floats(-100, 100) | st.just(-math.inf),
                                      max_size=3),
        "turn_separator": st.sampled_from(["\n", " "]),
    }.items():
        value = maybe(strategy)
        if value is not None:
            values[key] = value
    if method == "beam":
        values.update(num_beams=draw(st.integers(2, 8)),
                      length_penalty=draw(st.floats(-2.0, 2.0)),
                      early_stopping=draw(st.booleans()))
    if method == "contrastive":
        values.update(penalty_alpha=draw(st.floats(0.05, 1.0)), top_k=draw(st.integers(2, 20)))
    values["order"] = draw(st.permutations(DEFAULT_ORDER))
    return from_mapping(values, name="p")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preset=presets(), fmt=st.sampled_from(pf.FORMATS))
def test_round_trip_keeps_every_field_the_format_expresses(preset, fmt):
    data, export_notes = pf.from_preset(fmt, preset)
    text = pf.dumps(fmt, data)
    got_fmt, again, import_notes = pf.import_text(text, "p", "t", fmt)
    assert got_fmt == fmt
    assert import_notes == []  # what gptterm writes, gptterm reads whole
    before, after = pf.effective_values(preset), pf.effective_values(again)
    lost = named(export_notes)
    if "method" in lost:  # written as greedy: the beam and contrastive settings go with it
        lost |= {"num_beams", "length_penalty", "early_stopping", "penalty_alpha", "top_k"}
    for key in before:
        if key == "order":
            # Steps whose settings were lost leave the order too.
            gone = {s for s, names in pf._STEP_FIELDS.items() if set(names) & lost}
            keep = [s for s in before["order"] if s not in gone]
            if "order" not in lost:
                assert [s for s in after["order"] if s not in gone] == keep
        elif key not in lost:
            assert after[key] == before[key], key


def test_round_trip_of_every_bundled_preset_names_only_what_is_lost():
    from gptterm.presets import load_presets

    loaded, _ = load_presets()
    for preset in loaded.values():
        for fmt in pf.FORMATS:
            data, notes = pf.from_preset(fmt, preset)
            again = pf.import_text(pf.dumps(fmt, data), preset.name, "t", fmt)[1]
            if named(notes) <= {"description"}:
                assert pf.effective_values(again) == pf.effective_values(preset), (preset, fmt)


def test_preset_toml_holds_only_what_differs_and_loads_back(tmp_path):
    from gptterm.presets import load_file

    _, preset, _ = imported('{"n_predict": 32, "temperature": 0.5, "logit_bias": [[3, false]]}')
    text = pf.preset_toml(preset)
    assert "dry_base" not in text and "order" in text  # logit_bias moved first
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    assert load_file(path) == preset
