"""The modern samplers on servers: llama.cpp gets DRY, XTC, top-n-sigma and logit_bias in its
own spelling and chain; OpenAI-style servers get logit_bias by token id; what a server
cannot do is refused in one line; and the request body through the command line."""

from __future__ import annotations

import math

import pytest
from remote_fake import llama_server, llama_stream

from gptterm import paths, presets
from gptterm.cli import main
from gptterm.presets import Preset
from gptterm.remote.flavors import FLAVORS, UnsupportedField, translate

MODERN_KEYS = {"logit_bias", "dry_multiplier", "dry_base", "dry_allowed_length",
               "dry_penalty_last_n", "dry_sequence_breakers", "xtc_probability",
               "xtc_threshold", "top_n_sigma"}


def bundled(name: str) -> Preset:
    loaded, failed = presets.load_all([paths.bundled_presets_dir()])
    assert not failed
    return loaded[name]


def test_llama_cpp_gets_dry_in_its_spelling_and_chain():
    fields, dropped = translate(bundled("dry").replace(seed=1), "llama.cpp", n_ctx=512)
    assert dropped == []
    assert {k: fields[k] for k in MODERN_KEYS & set(fields)} == {
        "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2,
        "dry_penalty_last_n": 512,  # -1 (the whole context): llama.cpp refuses -1
        "dry_sequence_breakers": ["\n", ":", "\"", "*"]}
    assert fields["samplers"] == ["penalties", "dry", "temperature", "top_k", "top_p", "min_p",
                                  "typ_p"]
    # Greedy keeps the processors (DRY included) before the top token.
    greedy = Preset(dry_multiplier=1.0, repetition_penalty=1.2)
    fields, _ = translate(greedy, "llama.cpp")
    assert fields["samplers"] == ["penalties", "dry", "top_k"] and fields["top_k"] == 1
    assert fields["dry_penalty_last_n"] == 4096  # no known window: the usual default


def test_llama_cpp_gets_xtc_and_top_n_sigma_in_the_presets_order():
    preset = Preset(method="sample", xtc_probability=1.0, xtc_threshold=0.2, top_n_sigma=1.5,
                    top_k=1, order=("top_n_sigma", "xtc", "top_k"))
    fields, _ = translate(preset, "llama.cpp")
    assert fields["samplers"] == ["top_n_sigma", "xtc", "top_k"]
    assert (fields["xtc_probability"], fields["xtc_threshold"], fields["top_n_sigma"]) == (
        1.0, 0.2, 1.5)
    assert "dry_multiplier" not in fields  # off: not sent (off is every server's default)
    # Greedy ignores the warpers (as the local engine does): nothing of them is sent.
    fields, dropped = translate(preset.replace(method="greedy"), "llama.cpp")
    assert dropped == [] and not MODERN_KEYS & set(fields)
    assert fields["samplers"] == ["top_k"]  # the preset's order names no penalties


def test_requests_without_modern_samplers_are_unchanged():
    for name in ("creative", "greedy", "top-k"):
        for flavor in FLAVORS:
            try:
                fields, _ = translate(bundled(name), flavor)
            except UnsupportedField:
                continue
            assert not MODERN_KEYS & set(fields)
            assert not {"dry", "xtc", "top_n_sigma"} & set(fields.get("samplers", []))


def test_logit_bias_for_each_flavor():
    preset = Preset().replace(logit_bias={"50256": -math.inf, "13": 2.5, " the": -1.0})
    fields, _ = translate(preset, "llama.cpp")
    # llama.cpp bans with false (JSON has no -inf) and tokenizes string keys itself.
    assert fields["logit_bias"] == {"50256": False, "13": 2.5, " the": -1.0}
    ids = Preset().replace(logit_bias={"50256": -math.inf, "13": 2.5})
    for flavor in ("vllm", "openai"):
        assert translate(ids, flavor)[0]["logit_bias"] == {"50256": -100, "13": 2.5}
        with pytest.raises(UnsupportedField) as caught:
            translate(preset, flavor)
        assert str(caught.value) == (
            "logit_bias = {'50256': -inf, '13': 2.5, ' the': -1.0} is not supported by "
            f"{flavor}")
    with pytest.raises(UnsupportedField, match="^logit_bias = .* is not supported by tgi$"):
        translate(ids, "tgi")


@pytest.mark.parametrize("preset, line", [
    (Preset(banned_strings=("Romeo",)), "banned_strings = ['Romeo'] is not supported by {f}"),
    (Preset(dry_multiplier=0.8), "dry_multiplier = 0.8 is not supported by {f}"),
    (Preset(method="sample", xtc_probability=0.5),
     "xtc_probability = 0.5 is not supported by {f}"),
    (Preset(method="sample", top_n_sigma=1.0), "top_n_sigma = 1.0 is not supported by {f}"),
])
def test_what_a_server_cannot_do_is_refused_in_one_line(preset, line):
    for flavor in FLAVORS:
        if flavor == "llama.cpp" and "banned" not in line:
            assert translate(preset, flavor)[1] == []
            continue
        with pytest.raises(UnsupportedField) as caught:
            translate(preset, flavor)
        assert str(caught.value) == line.format(f=flavor)
        fields, dropped = translate(preset, flavor, lenient=True)
        assert dropped == [line.format(f=flavor).split(" is not")[0]]
        assert not MODERN_KEYS & set(fields)


def test_the_command_line_sends_them(capsys):
    with llama_server([llama_stream(["To", " be"], "eos", prompt=4)]) as server:
        code = main(["generate", "--model", server.url, "--json", "--seed", "3", "--preset",
                     "xtc", "--set", "top_n_sigma=2.0", "--set",
                     "logit_bias={ \"198\" = -inf }", "Hamlet:"])
    out, err = capsys.readouterr()
    assert code == 0, err
    body = server.posted("/completion")[0]
    assert body["samplers"] == ["penalties", "top_n_sigma", "temperature", "top_k", "top_p",
                                "min_p", "typ_p", "xtc"]
    assert (body["xtc_probability"], body["xtc_threshold"], body["top_n_sigma"]) == (
        0.5, 0.1, 2.0)
    assert body["logit_bias"] == {"198": False}
