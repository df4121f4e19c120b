"""Every sampling step equals the matching transformers LogitsProcessor, bit for bit,
on random logits and histories (ties, -inf, huge magnitudes, ids past the vocab)."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.generation import logits_process as lp

from gptterm.engine import sampling
from gptterm.presets import Preset

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# A few repeated values make ties common; -inf is what earlier filters leave behind.
SPECIAL = [0.0, 1.0, -1.0, 2.5, -math.inf, 1e30, -1e30, 3e38, -3e38]
VALUE = st.one_of(st.sampled_from(SPECIAL), st.floats(-60, 60, width=32))


@st.composite
def batches(draw, min_vocab=1):
    """(history [B, T], logits [B, V]); every row keeps at least one finite score."""
    rows = draw(st.integers(1, 3))
    vocab = draw(st.integers(min_vocab, 24))
    length = draw(st.integers(0, 14))
    scores = []
    for _ in range(rows):
        row = draw(st.lists(VALUE, min_size=vocab, max_size=vocab))
        if all(v == -math.inf for v in row):
            row[draw(st.integers(0, vocab - 1))] = draw(st.floats(-5, 5, width=32))
        scores.append(row)
    # Ids up to vocab + 2: embeddings may be larger than the output layer.
    ids = st.integers(0, vocab + 2) if draw(st.booleans()) else st.integers(0, min(vocab, 3))
    history = [draw(st.lists(ids, min_size=length, max_size=length)) for _ in range(rows)]
    return (torch.tensor(history, dtype=torch.long).reshape(rows, length),
            torch.tensor(scores, dtype=torch.float32))


def same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True)


def check(step, processor, history, logits):
    before = logits.clone()
    expected = processor(history, logits.clone())
    same(step(history, logits), expected)
    same(logits, before)  # steps are pure


@SETTINGS
@given(batches(), st.floats(0.05, 5.0))
def test_temperature(batch, value):
    check(sampling.temperature(value), lp.TemperatureLogitsWarper(value), *batch)


@SETTINGS
@given(batches(), st.integers(1, 30), st.integers(1, 3))
def test_top_k(batch, k, keep):
    check(sampling.top_k(k, keep), lp.TopKLogitsWarper(k, min_tokens_to_keep=keep), *batch)


@SETTINGS
@given(batches(), st.one_of(st.sampled_from([0.5, 0.9, 1.0, 1e-6]), st.floats(0.01, 1.0)),
       st.integers(1, 3))
def test_top_p(batch, p, keep):
    check(sampling.top_p(p, keep), lp.TopPLogitsWarper(p, min_tokens_to_keep=keep), *batch)


@SETTINGS
@given(batches(), st.one_of(st.sampled_from([0.0, 0.05, 1.0]), st.floats(0.0, 1.0)),
       st.integers(1, 3))
def test_min_p(batch, p, keep):
    check(sampling.min_p(p, keep), lp.MinPLogitsWarper(p, min_tokens_to_keep=keep), *batch)


@SETTINGS
@given(batches(), st.one_of(st.sampled_from([0.2, 0.9, 0.95]), st.floats(0.01, 0.99)),
       st.integers(1, 3))
def test_typical_p(batch, mass, keep):
    check(sampling.typical_p(mass, keep), lp.TypicalLogitsWarper(mass, min_tokens_to_keep=keep),
          *batch)


@SETTINGS
@given(batches(), st.one_of(st.sampled_from([2.0, 1.2, 0.5]), st.floats(0.1, 10.0)))
def test_repetition_penalty(batch, penalty):
    check(sampling.repetition_penalty(penalty), lp.RepetitionPenaltyLogitsProcessor(penalty),
          *batch)


@SETTINGS
@given(batches(), st.integers(1, 5))
def test_no_repeat_ngram(batch, size):
    check(sampling.no_repeat_ngram(size), lp.NoRepeatNGramLogitsProcessor(size), *batch)


@SETTINGS
@given(batches(min_vocab=2), st.integers(1, 10), st.integers(0, 14), st.data())
def test_min_new_tokens(batch, count, prompt_len, data):
    history, logits = batch
    prompt_len = min(prompt_len, history.shape[1])
    eos = data.draw(st.integers(0, logits.shape[1] - 1))
    check(sampling.min_new_tokens(count, eos, prompt_len),
          lp.MinNewTokensLengthLogitsProcessor(prompt_len, count, eos), history, logits)


def test_typical_matches_reference_example():
    """Sanity check on a readable case: a peaked distribution keeps only its peak."""
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    out = sampling.typical_p(0.5)(torch.zeros((1, 0), dtype=torch.long), logits)
    assert out[0, 0] == 10.0 and torch.isinf(out[0, 1:]).all()


def test_top_k_keeps_ties():
    logits = torch.tensor([[3.0, 1.0, 3.0, 3.0, 0.0]])
    out = sampling.top_k(2)(torch.zeros((1, 0), dtype=torch.long), logits)
    assert out.tolist() == [[3.0, -math.inf, 3.0, 3.0, -math.inf]]


# --- build_chain -----------------------------------------------------------------------


def _names(chain):
    return [step.__qualname__.split(".")[0] for step in chain]


def test_neutral_preset_has_empty_chain():
    assert sampling.build_chain(Preset(), eos_token_id=0, prompt_len=3) == []
    assert sampling.build_chain(Preset(method="sample"), eos_token_id=0, prompt_len=3) == []


def test_chain_follows_order_and_drops_no_ops():
    preset = Preset(method="sample", temperature=0.7, top_k=40, top_p=0.9, min_p=0.05,
                    repetition_penalty=1.2, no_repeat_ngram_size=3, min_new_tokens=2)
    chain = sampling.build_chain(preset, eos_token_id=0, prompt_len=3)
    assert _names(chain) == ["repetition_penalty", "no_repeat_ngram", "min_new_tokens",
                             "temperature", "top_k", "top_p", "min_p"]
    reordered = preset.replace(order=["top_k", "temperature", "typical_p", "min_p", "top_p",
                                      "no_repeat_ngram", "repetition_penalty",
                                      "min_new_tokens"])
    assert _names(sampling.build_chain(reordered, eos_token_id=0, prompt_len=3)) == [
        "top_k", "temperature", "min_p", "top_p", "no_repeat_ngram", "repetition_penalty",
        "min_new_tokens"]
    # No end-of-sequence token: min_new_tokens has nothing to forbid.
    assert "min_new_tokens" not in _names(
        sampling.build_chain(preset, eos_token_id=None, prompt_len=3))


def test_warpers_only_when_sampling():
    """As in transformers: greedy/beam/contrastive ignore temperature, top-k, top-p, ..."""
    preset = Preset(method="greedy", temperature=0.5, top_k=3, top_p=0.5, typical_p=0.5,
                    min_p=0.2, repetition_penalty=1.5)
    assert _names(sampling.build_chain(preset, eos_token_id=0, prompt_len=1)) == [
        "repetition_penalty"]


def test_chain_equals_transformers_processor_list():
    """The full chain equals transformers' processors applied in generate's order."""
    torch.manual_seed(0)
    history = torch.randint(0, 50, (2, 20))
    logits = torch.randn(2, 50) * 4
    preset = Preset(method="sample", temperature=0.8, top_k=20, top_p=0.9, min_p=0.02,
                    typical_p=0.95, repetition_penalty=1.3, no_repeat_ngram_size=2,
                    min_new_tokens=5)
    expected = lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.3), lp.NoRepeatNGramLogitsProcessor(2),
        lp.MinNewTokensLengthLogitsProcessor(18, 5, 7), lp.TemperatureLogitsWarper(0.8),
        lp.TopKLogitsWarper(20), lp.TopPLogitsWarper(0.9), lp.MinPLogitsWarper(0.02),
        lp.TypicalLogitsWarper(0.95),
    ])(history, logits.clone())
    chain = sampling.build_chain(preset, eos_token_id=7, prompt_len=18)
    same(sampling.apply_chain(chain, history, logits), expected)


# --- pick and generators ---------------------------------------------------------------


def test_greedy_pick_is_argmax():
    logits = torch.tensor([[0.0, 5.0, 1.0], [9.0, -1.0, 9.5]])
    assert sampling.pick(logits, Preset(), None).tolist() == [1, 2]


def test_sample_pick_reproducible_and_never_filtered():
    logits = torch.tensor([[0.0, 1.0, -math.inf, 2.0]])
    preset = Preset(method="sample")
    draws = [sampling.pick(logits, preset, g).item()
             for g in [sampling.make_generator(7, "cpu")] for _ in range(200)]
    again = [sampling.pick(logits, preset, g).item()
             for g in [sampling.make_generator(7, "cpu")] for _ in range(200)]
    assert draws == again
    assert 2 not in draws and {0, 1, 3} <= set(draws)


def test_generators_are_independent():
    """Drawing from one request's generator does not move another's stream."""
    logits = torch.zeros((1, 1000))
    preset = Preset(method="sample")
    alone = [sampling.pick(logits, preset, g).item()
             for g in [sampling.make_generator(3, "cpu")] for _ in range(20)]
    a, b = sampling.make_generator(3, "cpu"), sampling.make_generator(3, "cpu")
    interleaved = []
    for _ in range(20):
        interleaved.append(sampling.pick(logits, preset, a).item())
        sampling.pick(logits, preset, b)
        torch.rand(5)  # the global generator moves too
    assert interleaved == alone


def test_unseeded_generators_differ():
    logits = torch.zeros((1, 10_000))
    preset = Preset(method="sample")
    firsts = {sampling.pick(logits, preset, sampling.make_generator(None, "cpu")).item()
              for _ in range(5)}
    assert len(firsts) > 1


def test_seeded_draws_reproducible_across_processes():
    """A seed means the same draws in a new process too (what replaying a turn needs)."""
    import subprocess
    import sys

    code = ("import torch; from gptterm.engine import sampling; from gptterm.presets import "
            "Preset; g = sampling.make_generator(42, 'cpu'); logits = torch.linspace(-3, 3, 50)"
            "[None]; print([sampling.pick(logits, Preset(method='sample'), g).item() "
            "for _ in range(40)])")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    g = sampling.make_generator(42, "cpu")
    here = [sampling.pick(torch.linspace(-3, 3, 50)[None], Preset(method="sample"), g).item()
            for _ in range(40)]
    assert runs[0] == runs[1] == str(here)
