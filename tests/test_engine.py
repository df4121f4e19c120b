"""The engine against transformers on a tiny model: greedy parity, cache reuse, seeds, cancel."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptterm.engine.client import EngineClient
from gptterm.presets import Preset
from gptterm.protocol import (
    Cancel, Done, Generate, ModelFailed, ModelLoaded, Started, TextDelta, LoadModel,
)

GREEDY = Preset(name="greedy", method="greedy")
SAMPLE = Preset(name="sample", method="sample", top_k=50)


@pytest.fixture()
def client(tiny_model_dir):
    with EngineClient(device="cpu") as c:
        c.load(str(tiny_model_dir))
        yield c


def run(client, prompt, preset=GREEDY, session="s", max_new=12, seed=None, rid="r"):
    events = []
    done = client.generate(Generate(rid, session, prompt, preset, max_new, seed), events.append)
    ids = [i for e in events if isinstance(e, TextDelta) for i in e.token_ids]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    started = next(e for e in events if isinstance(e, Started))
    return done, ids, text, started


def test_greedy_matches_transformers_generate(client, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for prompt in ["To be, or not to be", "The quick brown", "안녕하세요"]:
        done, ids, _, _ = run(client, prompt, max_new=20, session=prompt)
        input_ids = tok(prompt, return_tensors="pt").input_ids
        ref = model.generate(input_ids, do_sample=False, max_new_tokens=20,
                             pad_token_id=tok.eos_token_id)[0, input_ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:  # the engine does not emit the end-of-text token
            ref = ref[: ref.index(tok.eos_token_id)]
        assert ids == ref
        assert done.n_tokens == len(ref)


def test_second_turn_reuses_cache_and_matches_full_recompute(tiny_model_dir):
    from gptterm.engine.cache import CacheEntry
    from gptterm.engine.decode import Decoder

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    first = tok("Once upon a time there was").input_ids
    second = first + tok(" a little model that wrote").input_ids
    entry = CacheEntry()
    dec = Decoder(model, entry, "cpu")
    dec.prefill(first)
    logits, reused = dec.prefill(second)
    assert reused == len(first)
    with torch.no_grad():
        full = model(torch.tensor([second])).logits[0, -1]
    torch.testing.assert_close(logits, full, atol=1e-4, rtol=0)
    # and one more step on top of the reused cache
    step = dec.advance(7)
    with torch.no_grad():
        full = model(torch.tensor([second + [7]])).logits[0, -1]
    torch.testing.assert_close(step, full, atol=1e-4, rtol=0)


def test_engine_reports_reused_tokens_on_next_turn(client):
    done, _, text, started = run(client, "To be, or not to be", session="a")
    assert started.reused_tokens == 0
    _, _, _, again = run(client, "To be, or not to be" + text + " that is", session="a")
    # Everything up to (at least) the prompt is reused; only the new text is prefilled.
    assert again.reused_tokens >= started.prompt_tokens
    assert again.prompt_tokens > again.reused_tokens
    _, _, _, other = run(client, "To be, or not to be", session="b")
    assert other.reused_tokens == 0  # caches are per session


def test_same_seed_same_tokens_independent_of_other_requests(client):
    _, a, _, _ = run(client, "The sea", SAMPLE, session="x", seed=123, max_new=15)
    run(client, "Something else", SAMPLE, session="y", seed=9, max_new=7)
    _, b, _, _ = run(client, "The sea", SAMPLE, session="z", seed=123, max_new=15)
    _, c, _, _ = run(client, "The sea", SAMPLE, session="w", seed=124, max_new=15)
    assert a == b
    assert a != c


def test_cancel_stops_within_one_token(tiny_model_dir):
    from gptterm.engine.engine import Engine

    events = []
    first = threading.Event()
    cancel_sent = threading.Event()

    def emit(event):  # runs on the worker thread
        events.append(event)
        if isinstance(event, TextDelta) and not first.is_set():
            first.set()
            cancel_sent.wait(10)  # hold the worker until the cancel is in

    engine = Engine(emit, device="cpu").start()
    engine.submit(LoadModel(str(tiny_model_dir)))
    engine.submit(Generate("g", "s", "To be", SAMPLE, 100, 1))
    assert first.wait(30)
    engine.submit(Cancel("g"))
    cancel_sent.set()
    engine.close()
    done = next(e for e in events if isinstance(e, Done))
    assert done.reason == "cancelled"
    assert done.n_tokens == 1


def test_cancel_before_start_is_done_cancelled(client):
    client.engine.submit(Cancel("later"))
    done, ids, _, _ = run_no_started(client, "later")
    assert done.reason == "cancelled" and ids == []


def run_no_started(client, rid):
    events = []
    done = client.generate(Generate(rid, "s", "x", GREEDY, 5), events.append)
    return done, [i for e in events if isinstance(e, TextDelta) for i in e.token_ids], None, None


def test_context_overflow_drops_oldest_text_and_rebuilds(client, tiny_model_dir):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 40  # >> 128 positions
    done, ids, _, started = run(client, long_prompt, max_new=30, session="long")
    assert isinstance(done, Done) and done.reason in ("length", "eos")
    assert started.prompt_tokens + 30 <= 128
    # The next turn keeps the same window start, so its prefix is reused.
    _, _, _, again = run(client, long_prompt + " and", max_new=10, session="long")
    assert again.reused_tokens > 0


def test_failed_load_keeps_previous_model(client, tmp_path):
    client.engine.submit(LoadModel(str(tmp_path / "missing")))
    failed = client._events.get(timeout=10)
    while not isinstance(failed, ModelFailed):
        failed = client._events.get(timeout=10)
    assert "does not exist" in failed.error
    done, ids, _, _ = run(client, "Still here", session="after")
    assert done.reason in ("length", "eos")


def test_model_loaded_reports_context(tiny_model_dir):
    with EngineClient(device="cpu") as c:
        loaded = c.load(str(tiny_model_dir))
    assert isinstance(loaded, ModelLoaded) and loaded.n_ctx == 128 and loaded.device == "cpu"


def test_stop_string_ends_with_reason_stop_and_is_hidden(client):
    _, _, text, _ = run(client, "To be, or", max_new=30, session="free")
    assert len(text) > 4
    stop = text[2:4]
    preset = GREEDY.replace(stop=[stop])
    done, _, cut, _ = run(client, "To be, or", preset, max_new=30, session="stopped")
    assert done.reason == "stop"
    assert stop not in cut and cut == text[: text.index(stop)]


@pytest.mark.parametrize("preset", [GREEDY, Preset(name="beam", method="beam", num_beams=3)])
def test_done_counts_the_window_with_the_reply(client, preset):
    """Done.context_tokens is what the window holds after the reply (the status bar's ctx):
    the prompt and the reply, for beam search (which decodes on copies of the cache) too."""
    done, _, _, started = run(client, "To be, or not to be", preset=preset, max_new=8,
                              session=preset.name)
    assert done.n_tokens > 0
    assert done.context_tokens == started.prompt_tokens + done.n_tokens
