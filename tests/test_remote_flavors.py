"""The capability table: every bundled preset, translated for every flavour, field by field
(or refused in one exact line); order, lenient drops, and the README's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptterm import paths, presets
from gptterm.presets import Preset
from gptterm.remote.flavors import FLAVORS, UnsupportedField, markdown_table, translate

# The bundled presets: what each sets (the rest neutral), greedy or sampling.
SAMPLE = {"creative": dict(temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1),
          "min-p": dict(min_p=0.1), "random": {}, "temperature": dict(temperature=0.6),
          "top-k": dict(top_k=10), "top-p": dict(top_p=0.9), "top-p-0.5": dict(top_p=0.5),
          "typical": dict(typical_p=0.95)}
GREEDY = {"greedy": {}, "kogpt2": dict(repetition_penalty=2.0)}
REFUSED = {
    ("beam", f): f"method = 'beam' is not supported by {f}" for f in FLAVORS} | {
    ("contrastive", f): f"method = 'contrastive' is not supported by {f}" for f in FLAVORS} | {
    ("creative", "openai"): "repetition_penalty = 1.1 is not supported by openai",
    ("kogpt2", "openai"): "repetition_penalty = 2.0 is not supported by openai",
    ("min-p", "tgi"): "min_p = 0.1 is not supported by tgi",
    ("min-p", "openai"): "min_p = 0.1 is not supported by openai",
    ("top-k", "openai"): "top_k = 10 is not supported by openai",
    ("typical", "vllm"): "typical_p = 0.95 is not supported by vllm",
    ("typical", "sglang"): "typical_p = 0.95 is not supported by sglang",
    ("typical", "ollama"): "typical_p = 0.95 is not supported by ollama",
    ("typical", "openai"): "typical_p = 0.95 is not supported by openai",
}
SEED = 7


def expected(flavor: str, sampling: bool, values: dict) -> dict:
    """The request fields, spelled out per flavour (neutral values included)."""
    v = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
             repetition_penalty=1.0) | values
    if flavor == "llama.cpp":
        return {"n_predict": 80, "temperature": v["temperature"],
                "top_k": v["top_k"] if sampling else 1, "top_p": v["top_p"],
                "min_p": v["min_p"], "typical_p": v["typical_p"],
                "repeat_penalty": v["repetition_penalty"], "stop": [], "seed": SEED,
                "samplers": ["penalties", "temperature", "top_k", "top_p", "min_p", "typ_p"]
                if sampling else ["penalties", "top_k"],
                "repeat_last_n": 1024, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                "dynatemp_range": 0.0, "mirostat": 0, "min_keep": 0}
    if flavor in ("vllm", "sglang"):
        return {"max_tokens": 80, "temperature": v["temperature"] if sampling else 0.0,
                "top_k": v["top_k"] or -1, "top_p": v["top_p"], "min_p": v["min_p"],
                "repetition_penalty": v["repetition_penalty"], "min_tokens": 0, "stop": [],
                "seed": SEED, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                "include_stop_str_in_output": False, "ignore_eos": False}
    if flavor == "tgi":
        out = {"max_new_tokens": 80, "temperature": v["temperature"]}
        out |= {k: v[k] for k in ("top_k", "top_p", "typical_p")
                if v[k] != Preset().__getattribute__(k)}
        return out | {"repetition_penalty": v["repetition_penalty"], "stop": [], "seed": SEED,
                      "do_sample": sampling}
    if flavor == "ollama":
        return {"num_predict": 80, "temperature": v["temperature"] if sampling else 0.0,
                "top_k": v["top_k"], "top_p": v["top_p"], "min_p": v["min_p"],
                "repeat_penalty": v["repetition_penalty"], "stop": [], "seed": SEED,
                "presence_penalty": 0.0, "frequency_penalty": 0.0, "repeat_last_n": -1}
    return {"max_tokens": 80, "temperature": v["temperature"] if sampling else 0.0,
            "top_p": v["top_p"], "stop": [], "seed": SEED, "presence_penalty": 0.0,
            "frequency_penalty": 0.0}


def bundled() -> dict[str, Preset]:
    loaded, failed = presets.load_all([paths.bundled_presets_dir()])
    assert not failed
    return loaded


def test_the_table_covers_every_bundled_preset():
    modern = {"dry", "xtc"}  # their requests: tests/test_remote_samplers.py
    assert set(bundled()) == set(SAMPLE) | set(GREEDY) | {"beam", "contrastive"} | modern


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name", sorted(set(SAMPLE) | set(GREEDY) | {"beam", "contrastive"}))
def test_every_bundled_preset_for_every_flavor(name, flavor):
    preset = bundled()[name].replace(seed=SEED)
    if (name, flavor) in REFUSED:
        with pytest.raises(UnsupportedField) as caught:
            translate(preset, flavor, n_ctx=1024)
        assert str(caught.value) == REFUSED[name, flavor]
        return
    fields, dropped = translate(preset, flavor, n_ctx=1024)
    sampling = name in SAMPLE
    assert fields == expected(flavor, sampling, (SAMPLE | GREEDY)[name])
    assert list(fields) == list(expected(flavor, sampling, (SAMPLE | GREEDY)[name]))
    assert dropped == []


def test_lenient_drops_what_a_flavor_cannot_honour_and_says_what():
    typical = bundled()["typical"].replace(seed=SEED, min_new_tokens=3)
    fields, dropped = translate(typical, "ollama", lenient=True)
    assert dropped == ["min_new_tokens = 3", "typical_p = 0.95"]
    assert "typical_p" not in fields and fields["temperature"] == 1.0
    fields, dropped = translate(bundled()["beam"], "llama.cpp", lenient=True, n_ctx=1024)
    assert dropped == ["method = 'beam'"]
    assert fields["samplers"] == ["penalties", "top_k"] and fields["top_k"] == 1  # greedy


def test_fields_with_no_effect_are_never_refused():
    # Greedy ignores the warpers, as transformers does: nothing to refuse.
    preset = Preset(method="greedy", typical_p=0.5, min_p=0.3)
    fields, dropped = translate(preset, "openai")
    assert dropped == [] and fields["temperature"] == 0.0


def test_refusals_name_the_field_value_and_flavor():
    cases = [(Preset(no_repeat_ngram_size=3), "llama.cpp",
              "no_repeat_ngram_size = 3 is not supported by llama.cpp"),
             (Preset(min_new_tokens=5), "tgi", "min_new_tokens = 5 is not supported by tgi"),
             (Preset(stop=("\n",)), "llama.cpp", None)]
    for preset, flavor, line in cases:
        if line is None:
            assert translate(preset, flavor)[0]["stop"] == ["\n"]
        else:
            with pytest.raises(UnsupportedField, match=f"^{line}$"):
                translate(preset, flavor)
    fields, _ = translate(Preset(min_new_tokens=5), "vllm")
    assert fields["min_tokens"] == 5


def test_llama_cpp_takes_the_preset_order_and_others_refuse_one_they_cannot_follow():
    order = ("top_p", "temperature", "repetition_penalty", "top_k", "min_p", "typical_p")
    preset = Preset(method="sample", temperature=0.7, top_p=0.9, order=order)
    fields, _ = translate(preset, "llama.cpp")
    assert fields["samplers"] == ["top_p", "temperature", "penalties", "top_k", "min_p",
                                  "typ_p"]
    with pytest.raises(UnsupportedField) as caught:
        translate(preset, "vllm")
    assert str(caught.value) == "order = ['top_p', 'temperature'] is not supported by vllm"
    # Steps that commute (temperature and top-k keep the same tokens) are not an order.
    swapped = Preset(method="sample", temperature=0.7, top_k=5,
                     order=("top_k", "temperature", "repetition_penalty"))
    assert translate(swapped, "vllm")[1] == []


def test_llama_cpp_seeds_fit_its_32_bits_and_the_window_sets_the_penalty_span():
    fields, _ = translate(Preset(seed=2**40 + 5), "llama.cpp", n_ctx=2048)
    assert fields["seed"] == (2**40 + 5) % (2**32 - 1) and fields["repeat_last_n"] == 2048
    assert "seed" not in translate(Preset(), "vllm")[0]  # no seed: none sent


def test_readme_holds_the_generated_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme
