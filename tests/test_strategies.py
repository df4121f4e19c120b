"""Beam search equals transformers `generate(num_beams=...)`; contrastive search equals a
plain reference written from the published rule; both respect the session cache."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptterm.engine.cache import CacheEntry
from gptterm.engine.decode import Decoder
from gptterm.engine.strategies import beam_search, contrastive_search
from gptterm.presets import Preset

PROMPTS = ["To be, or not to be", "The quick brown fox", "안녕하세요. 오늘은"]
# End-of-sequence ids to test with: tokens this model produces often, so beams finish
# early and compete (it never picks the real one); None: beams only stop at max length.
CASES = [(PROMPTS[0], 82), (PROMPTS[1], 209), (PROMPTS[2], 159), (PROMPTS[0], None)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny model with larger random weights: peaked, varied next-token distributions
    (the default init is nearly uniform and repeats one token forever)."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.4)
    # One thread: on a tiny model, extra threads only wait on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tok, model
    torch.set_num_threads(threads)


def prefilled(model, ids):
    dec = Decoder(model, CacheEntry(), "cpu")
    logits, _ = dec.prefill(list(ids))
    return dec, logits


def run_beam(model, ids, preset, max_new, eos, cancel=None):
    dec, logits = prefilled(model, ids)
    steps = list(beam_search(dec, logits, preset=preset, max_new_tokens=max_new,
                             eos_token_id=eos, cancel=cancel or threading.Event()))
    return dec, steps


def reference_beam(model, ids, preset, max_new, eos):
    out = model.generate(
        torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
        do_sample=False, num_beams=preset.num_beams, length_penalty=preset.length_penalty,
        early_stopping=preset.early_stopping, max_new_tokens=max_new, eos_token_id=eos,
        pad_token_id=0, repetition_penalty=preset.repetition_penalty,
        no_repeat_ngram_size=preset.no_repeat_ngram_size or None,
    )
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("num_beams", [1, 2, 3, 5])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 0.5, 2.0, -1.0])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_beam_search_equals_generate(tiny, num_beams, length_penalty, early_stopping):
    tok, model = tiny
    preset = Preset(method="beam", num_beams=num_beams, length_penalty=length_penalty,
                    early_stopping=early_stopping)
    for prompt, eos in CASES:
        ids = tok(prompt).input_ids
        _, steps = run_beam(model, ids, preset, 16, eos)
        expected = reference_beam(model, ids, preset, 16, eos)
        best, final = steps[-1]
        assert final and not any(f for _, f in steps[:-1])
        assert best == expected, (prompt, eos)


def test_beam_cases_finish_on_end_of_sequence(tiny):
    """The CASES above do exercise hypotheses that end on end-of-sequence."""
    tok, model = tiny
    preset = Preset(method="beam", num_beams=3)
    ended = [run_beam(model, tok(p).input_ids, preset, 16, eos)[1][-1][0][-1] == eos
             for p, eos in CASES if eos is not None]
    assert any(ended)


@pytest.mark.parametrize("settings", [
    {"repetition_penalty": 2.0}, {"no_repeat_ngram_size": 2},
    {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "length_penalty": 0.5},
])
def test_beam_search_with_processors_equals_generate(tiny, settings):
    tok, model = tiny
    preset = Preset(method="beam", num_beams=4, **settings)
    for prompt, eos in CASES:
        ids = tok(prompt).input_ids
        _, steps = run_beam(model, ids, preset, 20, eos)
        assert steps[-1][0] == reference_beam(model, ids, preset, 20, eos)


def test_beam_search_streams_and_leaves_session_cache_alone(tiny):
    tok, model = tiny
    ids = tok(PROMPTS[0]).input_ids
    dec, logits = prefilled(model, ids)
    keys = [layer.keys.clone() for layer in dec.entry.past.layers]
    hidden = dec.entry.hidden.clone()
    steps = list(beam_search(dec, logits, preset=Preset(method="beam", num_beams=5),
                             max_new_tokens=10, eos_token_id=None, cancel=threading.Event()))
    # One running best per step (growing by one), then the final best.
    assert [len(h) for h, _ in steps[:-1]] == list(range(1, len(steps)))
    assert len(steps[-1][0]) == 10
    assert dec.entry.ids == ids
    assert all(torch.equal(a, layer.keys) for a, layer in zip(keys, dec.entry.past.layers))
    assert torch.equal(hidden, dec.entry.hidden)
    # The untouched cache still continues the prompt correctly.
    step = dec.advance(5)
    with torch.no_grad():
        full = model(torch.tensor([ids + [5]])).logits[0, -1]
    torch.testing.assert_close(step, full, atol=1e-4, rtol=0)


def test_beam_search_stops_on_cancel(tiny):
    tok, model = tiny
    cancel = threading.Event()
    dec, logits = prefilled(model, tok(PROMPTS[1]).input_ids)
    steps = []
    for best, final in beam_search(dec, logits, preset=Preset(method="beam", num_beams=3),
                                   max_new_tokens=50, eos_token_id=None, cancel=cancel):
        steps.append((best, final))
        if len(steps) == 3:
            cancel.set()
    assert len(steps) == 4 and steps[-1][1] and len(steps[-1][0]) == 4


# --- contrastive search ---------------------------------------------------------------


def reference_contrastive(model, ids, *, k, alpha, max_new, repetition_penalty=1.0):
    """The published rule, recomputed from scratch every step (no cache, no batching)."""
    ids = list(ids)
    chosen = []
    with torch.no_grad():
        for _ in range(max_new):
            out = model(torch.tensor([ids]), output_hidden_states=True)
            logits = out.logits[0, -1].clone()
            context = out.hidden_states[-1][0]  # every earlier token
            if repetition_penalty != 1.0:
                seen = torch.tensor(sorted(set(ids)))
                s = logits[seen]
                logits[seen] = torch.where(s < 0, s * repetition_penalty, s / repetition_penalty)
            probs = torch.softmax(logits, dim=-1)
            top_p, top_v = torch.topk(probs, k)
            best, best_score = None, -float("inf")
            for p, v in zip(top_p.tolist(), top_v.tolist()):
                h = model(torch.tensor([ids + [v]]), output_hidden_states=True).hidden_states[-1][0, -1]
                similarity = max(torch.nn.functional.cosine_similarity(h, c, dim=0).item()
                                 for c in context)
                score = (1 - alpha) * p - alpha * similarity
                if score > best_score:
                    best, best_score = v, score
            ids.append(best)
            chosen.append(best)
    return chosen


def run_contrastive(model, ids, preset, max_new, cancel=None):
    dec, logits = prefilled(model, ids)
    tokens = list(contrastive_search(dec, logits, preset=preset, max_new_tokens=max_new,
                                     eos_token_id=None, cancel=cancel or threading.Event()))
    return dec, tokens


@pytest.mark.parametrize("k,alpha", [(4, 0.6), (2, 0.3), (6, 0.9)])
def test_contrastive_equals_reference(tiny, k, alpha):
    tok, model = tiny
    preset = Preset(method="contrastive", top_k=k, penalty_alpha=alpha)
    for prompt in PROMPTS:
        ids = tok(prompt).input_ids
        dec, tokens = run_contrastive(model, ids, preset, 12)
        assert tokens == reference_contrastive(model, ids, k=k, alpha=alpha, max_new=12)
        # The session cache holds prompt + chosen tokens, and continues correctly.
        assert dec.entry.ids == ids + tokens
        assert dec.entry.hidden.shape[0] == len(ids) + len(tokens)
        step = dec.advance(3)
        with torch.no_grad():
            full = model(torch.tensor([ids + tokens + [3]])).logits[0, -1]
        torch.testing.assert_close(step, full, atol=1e-4, rtol=0)


def test_contrastive_with_repetition_penalty(tiny):
    tok, model = tiny
    preset = Preset(method="contrastive", top_k=4, penalty_alpha=0.6, repetition_penalty=1.5)
    ids = tok(PROMPTS[0]).input_ids
    _, tokens = run_contrastive(model, ids, preset, 10)
    assert tokens == reference_contrastive(model, ids, k=4, alpha=0.6, max_new=10,
                                           repetition_penalty=1.5)


def test_contrastive_continues_on_reused_cache(tiny):
    """Second turn: the prefix comes from the cache (hidden states included)."""
    tok, model = tiny
    preset = Preset(method="contrastive", top_k=4, penalty_alpha=0.6)
    first = tok(PROMPTS[0]).input_ids
    dec, tokens = run_contrastive(model, first, preset, 5)
    second = first + tokens + tok(" that is").input_ids
    logits, reused = dec.prefill(second)
    assert reused == len(first) + len(tokens)
    more = list(contrastive_search(dec, logits, preset=preset, max_new_tokens=8,
                                   eos_token_id=None, cancel=threading.Event()))
    assert more == reference_contrastive(model, second, k=4, alpha=0.6, max_new=8)


def test_contrastive_stops_on_cancel(tiny):
    tok, model = tiny
    cancel = threading.Event()
    preset = Preset(method="contrastive", top_k=4, penalty_alpha=0.6)
    dec, logits = prefilled(model, tok(PROMPTS[0]).input_ids)
    got = []
    for token in contrastive_search(dec, logits, preset=preset, max_new_tokens=50,
                                    eos_token_id=None, cancel=cancel):
        got.append(token)
        if len(got) == 2:
            cancel.set()
    assert len(got) == 2
