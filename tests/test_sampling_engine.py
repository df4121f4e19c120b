"""Presets through the real engine: greedy with penalties and beam search give the tokens
`model.generate` gives, seeded sampling draws what transformers draws with that seed,
seeds are reproducible and independent of other sessions, and every bundled preset runs."""

from __future__ import annotations


import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptterm import presets
from gptterm.engine.client import EngineClient
from gptterm.presets import Preset
from gptterm.protocol import Done, Generate, TextDelta

PROMPTS = ["To be, or not to be", "The quick brown fox", "안녕하세요. 오늘은"]

from tiny import sharpened_copy


@pytest.fixture(scope="module")
def sharp_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with larger random weights, saved: peaked, varied predictions (the
    default init is nearly uniform and repeats one token, which proves little)."""
    return sharpened_copy(tiny_model_dir, tmp_path_factory.mktemp("sharp") / "model", 1)


@pytest.fixture(scope="module")
def ref(sharp_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: extra threads only wait on each other
    yield (AutoTokenizer.from_pretrained(sharp_dir),
           AutoModelForCausalLM.from_pretrained(sharp_dir).eval())
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(sharp_dir, ref):
    with EngineClient(device="cpu") as c:
        c.load(str(sharp_dir))
        yield c


_ids = iter(range(10**6))


def run(client, prompt, preset, *, max_new=16, seed=None, session=None):
    events = []
    rid = f"r{next(_ids)}"
    done = client.generate(Generate(rid, session or rid, prompt, preset, max_new, seed),
                           events.append)
    assert isinstance(done, Done), done
    deltas = [e for e in events if isinstance(e, TextDelta)]
    if deltas and deltas[-1].replace:  # beam search: the last replacement is the answer
        return done, list(deltas[-1].token_ids), deltas[-1].text
    return (done, [i for d in deltas for i in d.token_ids], "".join(d.text for d in deltas))


def reference(ref, prompt, max_new, **kwargs):
    tok, model = ref
    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                         pad_token_id=tok.eos_token_id, **kwargs)[0, ids.shape[1]:].tolist()
    if tok.eos_token_id in out:  # the engine does not show end-of-text
        out = out[: out.index(tok.eos_token_id)]
    return out


@pytest.mark.parametrize("settings", [
    {"repetition_penalty": 2.0},  # the kogpt2 preset
    {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2},
    {"no_repeat_ngram_size": 3, "min_new_tokens": 10},
    {"repetition_penalty": 0.7},
])
def test_greedy_with_processors_equals_generate(client, ref, settings):
    preset = Preset(method="greedy", **settings)
    for prompt in PROMPTS:
        _, ids, _ = run(client, prompt, preset, max_new=24)
        assert ids == reference(ref, prompt, 24, do_sample=False, **settings), prompt


def test_kogpt2_preset_equals_generate(client, ref):
    preset = presets.load_presets()[0]["kogpt2"]
    for prompt in PROMPTS:
        _, ids, _ = run(client, prompt, preset, max_new=24)
        assert ids == reference(ref, prompt, 24, do_sample=False, repetition_penalty=2.0)


@pytest.mark.parametrize("num_beams,length_penalty", [(2, 1.0), (5, 1.0), (3, 0.0), (4, 2.0)])
def test_beam_through_engine_equals_generate(client, ref, num_beams, length_penalty):
    preset = Preset(method="beam", num_beams=num_beams, length_penalty=length_penalty,
                    early_stopping=True)
    for prompt in PROMPTS:
        done, ids, text = run(client, prompt, preset, max_new=16)
        expected = reference(ref, prompt, 16, do_sample=False, num_beams=num_beams,
                             length_penalty=length_penalty, early_stopping=True)
        assert ids == expected
        assert done.n_tokens == len(expected)
        assert text == ref[0].decode(expected)


SAMPLERS = [
    {},  # random
    {"top_k": 10}, {"top_p": 0.9}, {"top_p": 0.5}, {"temperature": 0.6},
    {"typical_p": 0.95}, {"min_p": 0.1},
    {"temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1},  # creative
]


@pytest.mark.parametrize("settings", SAMPLERS)
def test_seeded_sampling_draws_what_transformers_draws(client, ref, settings):
    """Same seed, same filters: the engine's per-request generator draws exactly the
    tokens transformers draws from the global generator seeded the same way."""
    preset = Preset(method="sample", **settings)
    hf = {k: v for k, v in settings.items()}
    hf.setdefault("top_k", 0)  # transformers' own default would add top-k 50
    for seed, prompt in zip([3, 17, 12345], PROMPTS):
        _, ids, _ = run(client, prompt, preset, max_new=20, seed=seed)
        torch.manual_seed(seed)
        assert ids == reference(ref, prompt, 20, do_sample=True, **hf), (seed, prompt)


def test_seeded_sampling_reproducible_and_independent_of_other_sessions(client):
    preset = presets.load_presets()[0]["creative"]
    _, alone, _ = run(client, PROMPTS[0], preset, max_new=30, seed=42, session="a1")
    # Other sessions sample in between, and the global generators move.
    run(client, PROMPTS[1], preset, max_new=20, seed=7, session="b")
    run(client, PROMPTS[2], preset, max_new=20, session="c")
    torch.manual_seed(0)
    torch.rand(100)
    _, again, _ = run(client, PROMPTS[0], preset, max_new=30, seed=42, session="a2")
    assert again == alone
    _, other, _ = run(client, PROMPTS[0], preset, max_new=30, seed=43, session="a3")
    assert other != alone
    # A seed in the preset works like the request's seed.
    _, from_preset, _ = run(client, PROMPTS[0], preset.replace(seed=42), max_new=30)
    assert from_preset == alone


def test_every_bundled_preset_runs(client):
    loaded, failed = presets.load_presets()
    assert failed == []
    for name, preset in loaded.items():
        done, ids, _ = run(client, PROMPTS[0], preset, max_new=8, seed=1)
        assert done.reason in ("length", "eos"), name
        assert ids and len(ids) == done.n_tokens <= 8, name


def test_stop_string_ends_with_reason_stop_and_is_not_shown(client, ref):
    greedy = Preset(method="greedy")
    _, all_ids, text = run(client, PROMPTS[1], greedy, max_new=24)
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip() and len(text) > 6
    done, ids, shown = run(client, PROMPTS[1], greedy.replace(stop=[stop]), max_new=24)
    assert done.reason == "stop"
    # The reply keeps the whole tokens before the stop string, and its ids say the same
    # (a token that runs into the stop string goes, so text and ids never disagree).
    assert stop not in shown and text[: text.index(stop)].startswith(shown)
    assert ids == all_ids[: len(ids)] and done.n_tokens == len(ids)
    _, _, whole = run(client, PROMPTS[1], greedy, max_new=len(ids) or 1)
    assert shown == (whole if ids else "")


def test_beam_stop_string_ends_with_reason_stop(client):
    beam = Preset(method="beam", num_beams=3)
    _, _, text = run(client, "The quick brown fox", beam, max_new=12)
    assert len(text) > 4
    stop = text[2:4]
    done, ids, cut = run(client, "The quick brown fox", beam.replace(stop=[stop]), max_new=12)
    assert done.reason == "stop"
    assert cut == text[: text.index(stop)] and stop not in cut
    assert done.n_tokens == len(ids) and ids  # only the tokens of the text before the stop
