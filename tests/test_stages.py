"""Every chain stage of a token (engine.stages and the engine's `TextDelta.inspect`): each
stage is what applying the preset's steps by hand gives, removed tokens have probability 0
and are left out, greedy's chosen token is the first of "final", inspection never changes
what is drawn, and nothing is captured without it; the stages stay aligned with the token
ids through stop strings and replaced text."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptterm.engine import sampling
from gptterm.engine.client import EngineClient
from gptterm.engine.generation import TextSink
from gptterm.engine.stages import capture, top_of
from gptterm.presets import Preset
from gptterm.protocol import Done, Generate, TextDelta, TokenInspect

K = 6

from tiny import sharpened_copy


@pytest.fixture(scope="module")
def sharp_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with larger random weights: peaked, varied predictions."""
    return sharpened_copy(tiny_model_dir, tmp_path_factory.mktemp("sharp-stages") / "model", 2)


@pytest.fixture(scope="module")
def client(sharp_dir):
    with EngineClient(device="cpu") as c:
        c.load(str(sharp_dir))
        yield c


@pytest.fixture(scope="module")
def model(sharp_dir):
    return AutoModelForCausalLM.from_pretrained(sharp_dir).eval()


_ids = iter(range(10**6))


def run(client, prompt, preset, *, k=K, max_new=12, seed=5):
    events = []
    rid = f"st{next(_ids)}"
    done = client.generate(Generate(rid, rid, prompt, preset, max_new, seed, inspect_top_k=k),
                           events.append)
    assert isinstance(done, Done), done
    return done, [e for e in events if isinstance(e, TextDelta)]


def by_hand(scores: torch.Tensor, k: int) -> list[tuple[int, float]]:
    """The top k of softmax(scores), finite scores only, computed the plain way."""
    probs = torch.softmax(scores.float(), dim=-1)
    finite = [i for i in range(scores.shape[-1]) if scores[i] != float("-inf")]
    return sorted(((i, float(probs[i])) for i in finite), key=lambda p: (-p[1], p[0]))[:k]


def same(top, expected) -> None:
    assert [i for i, _ in top] == [i for i, _ in expected]
    assert [p for _, p in top] == pytest.approx([p for _, p in expected], rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------- the pure capture

CHAIN = Preset(method="sample", repetition_penalty=1.4, temperature=0.7, top_k=12, top_p=0.8,
               min_p=0.05)


@pytest.mark.parametrize("seed", range(5))
def test_each_stage_is_the_step_applied_by_hand(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 300, generator=gen) * 3
    history = torch.randint(0, 300, (1, 20), generator=gen)
    named = sampling.named_chain(CHAIN, eos_token_id=0, prompt_len=10)
    final, stages = capture(named, history, logits, K)
    assert [name for name, _ in stages] == ["model", "repetition_penalty", "temperature",
                                            "top_k", "top_p", "min_p", "final"]
    scores = logits
    same(stages[0][1], by_hand(logits[0], K))
    for (name, step), (stage, top) in zip(named, stages[1:-1]):
        scores = step(history, scores)
        assert stage == name
        same(top, by_hand(scores[0], K))
    assert torch.equal(final, scores)  # what the picker draws from: the chain's end
    assert stages[-1][1] == stages[-2][1]
    assert torch.equal(final, sampling.apply_chain([s for _, s in named], history, logits))


def test_removed_tokens_have_probability_zero_and_are_left_out():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.5, 0.1]])
    named = [("top_k", sampling.top_k(2))]
    _, stages = capture(named, torch.zeros(1, 1, dtype=torch.long), logits, 5)
    model, kept, final = (top for _, top in stages)
    assert len(model) == 5
    assert [i for i, _ in kept] == [0, 1] and final == kept
    # The two kept tokens share all the probability: the removed ones have none.
    assert sum(p for _, p in kept) == pytest.approx(1.0)
    assert kept[0][1] == pytest.approx(1 / (1 + math.exp(-1)))


def test_ties_go_to_the_lower_id_as_argmax_picks_them():
    scores = torch.tensor([1.0, 3.0, 3.0, 3.0, 0.0])
    assert [i for i, _ in top_of(scores, 2)] == [1, 2]
    assert int(torch.argmax(scores)) == top_of(scores, 1)[0][0]


# ---------------------------------------------------------------- through the engine


def test_greedy_stages_are_the_models_logits_through_the_chain(client, model):
    preset = Preset(method="greedy", repetition_penalty=1.5, no_repeat_ngram_size=2)
    _, deltas = run(client, "To be, or not", preset, max_new=10)
    ids = [i for d in deltas for i in d.token_ids]
    inspect = [t for d in deltas for t in d.inspect]
    assert len(inspect) == len(ids) >= 5
    tok = AutoTokenizer.from_pretrained(model.name_or_path)
    context = tok("To be, or not").input_ids
    named = sampling.named_chain(preset, eos_token_id=tok.eos_token_id, prompt_len=len(context))
    history = list(context)
    for token, entry in zip(ids, inspect):
        assert isinstance(entry, TokenInspect) and entry.chosen == token
        assert [s.stage for s in entry.stages] == ["model", "repetition_penalty",
                                                   "no_repeat_ngram", "final"]
        final = entry.stages[-1].top
        assert final[0][0] == entry.chosen  # greedy: the first of final
        assert entry.text == tok.decode([token])
        with torch.no_grad():
            logits = model(torch.tensor([history])).logits[:, -1].float()
        scores = logits
        expected = [by_hand(scores[0], K)]
        for _, step in named:
            scores = step(torch.tensor([history]), scores)
            expected.append(by_hand(scores[0], K))
        expected.append(expected[-1])
        for stage, want in zip(entry.stages, expected):
            assert [i for i, _, _ in stage.top] == [i for i, _ in want], stage.stage
            assert [p for _, _, p in stage.top] == pytest.approx([p for _, p in want],
                                                                 rel=1e-3, abs=1e-5)
            assert all(text == tok.decode([i]) for i, text, _ in stage.top)
        history.append(token)


def test_inspection_never_changes_what_is_drawn(client):
    preset = Preset(method="sample", temperature=0.9, top_k=30, top_p=0.9)
    _, plain = run(client, "The quick brown", preset, k=0, max_new=16, seed=11)
    _, seen = run(client, "The quick brown", preset, k=K, max_new=16, seed=11)
    ids = [i for d in seen for i in d.token_ids]
    assert [i for d in plain for i in d.token_ids] == ids
    inspect = [t for d in seen for t in d.inspect]
    assert [t.chosen for t in inspect] == ids
    for entry in inspect:
        assert [s.stage for s in entry.stages] == ["model", "temperature", "top_k", "top_p",
                                                   "final"]
        final = entry.stages[-1].top
        assert 1 <= len(final) <= K
        assert all(p > 0 for _, _, p in final)
        assert all(a[2] >= b[2] for a, b in zip(final, final[1:]))


def test_no_inspection_captures_nothing(client):
    _, deltas = run(client, "Once upon a time", Preset(method="greedy", repetition_penalty=1.2),
                    k=0)
    assert deltas and all(d.inspect == () and d.alternatives == () for d in deltas)


def test_no_stages_are_computed_without_a_top_k(monkeypatch):
    """K = 0 leaves the decode loop as it was: the stage capture is never called."""
    from gptterm.engine import generation, stages

    def fail(*args, **kwargs):
        raise AssertionError("capture ran without inspection")

    monkeypatch.setattr(stages, "capture", fail)
    monkeypatch.setattr(generation, "capture", fail)

    class Dec:
        device = "cpu"

        def advance(self, token):
            return torch.randn(50)

    called = []
    tokens = list(generation.sample_tokens(
        Dec(), torch.randn(50), preset=Preset(method="greedy", repetition_penalty=1.3),
        prompt_ids=[1, 2, 3], max_new_tokens=4, eos_token_id=None, seed=1, inspect_top_k=0,
        on_stages=called.append))
    assert len(tokens) == 4 and called == []


def test_contrastive_final_is_the_candidates_it_chooses_among(client):
    preset = Preset(method="contrastive", top_k=4, penalty_alpha=0.6, repetition_penalty=1.2)
    _, deltas = run(client, "Once upon a time", preset, k=K, max_new=8)
    ids = [i for d in deltas for i in d.token_ids]
    inspect = [t for d in deltas for t in d.inspect]
    assert [t.chosen for t in inspect] == ids and ids
    for entry in inspect:
        assert [s.stage for s in entry.stages] == ["model", "repetition_penalty", "final"]
        final = entry.stages[-1].top
        assert len(final) == 4  # exactly the top_k candidates
        assert [i for i, _, _ in final] == [i for i, _, _ in entry.stages[1].top][:4]
        assert entry.chosen in [i for i, _, _ in final]
        assert sum(p for _, _, p in final) == pytest.approx(1.0, abs=1e-4)


def test_beam_search_gives_no_stages(client):
    _, deltas = run(client, "To be", Preset(method="beam", num_beams=2), max_new=6)
    assert deltas and all(d.inspect == () for d in deltas)


def test_stages_stay_aligned_after_a_stop_string(client):
    preset = Preset(method="greedy", repetition_penalty=1.3)
    _, free = run(client, "To be, or", preset, max_new=30)
    text = "".join(d.text for d in free)
    stop = text[len(text) // 2: len(text) // 2 + 2]
    done, deltas = run(client, "To be, or", preset.replace(stop=[stop]), max_new=30)
    assert done.reason == "stop"
    ids: list[int] = []
    inspect: list = []
    for d in deltas:
        assert len(d.inspect) == len(d.token_ids)
        if d.replace:
            ids, inspect = list(d.token_ids), list(d.inspect)
        else:
            ids += d.token_ids
            inspect += d.inspect
    assert [t.chosen for t in inspect] == ids
    assert len(ids) == done.n_tokens


class _Detok:
    """Each token id stands for one character of `text`."""

    def __init__(self, text: str):
        self.text = text

    def push(self, ids):
        return "".join(self.text[i] for i in ids)

    def flush(self):
        return ""


def test_a_replace_at_a_stop_string_keeps_the_stages_of_the_kept_tokens():
    """The stop string arrives after its first half was shown: the replace event redoes
    the reply, with the stages of exactly the tokens kept."""
    events: list = []
    sink = TextSink("r", _Detok("abXYc"), ("bX",), events.append, frame=0.0)  # each at once
    marks = [TokenInspect(i, ()) for i in range(5)]
    for token in range(4):
        sink.push(token, inspect=marks[token])
        if sink.stopped:
            break
    text, ids, inspect = "", [], []
    for e in events:
        assert len(e.inspect) == len(e.token_ids)
        if e.replace:
            text, ids, inspect = e.text, list(e.token_ids), list(e.inspect)
        else:
            text, ids, inspect = text + e.text, ids + list(e.token_ids), inspect + list(e.inspect)
    assert any(e.replace for e in events)
    assert text == "a" and ids == [0] and inspect == [marks[0]]
