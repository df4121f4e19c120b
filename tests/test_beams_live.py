"""Live beams: beam search reports every hypothesis with transformers' length-penalised
score while it runs, the engine sends them as `TextDelta.beams`, and `generate --json`
writes them; the scores at the end are transformers' `sequences_scores`."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from test_strategies import CASES, PROMPTS, prefilled, tiny  # noqa: F401 - tiny: a fixture
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptterm.cli import main
from gptterm.commands.generate import resolve_preset
from gptterm.engine.strategies import beam_search
from gptterm.presets import Preset


def live_search(model, ids, preset, max_new, eos, cancel_after=None):
    """(yields, reports) of one beam search: `reports[i]` is what `on_beams` got before
    yield i."""
    dec, logits = prefilled(model, ids)
    cancel = threading.Event()
    reports: list = []
    steps = []
    for step in beam_search(dec, logits, preset=preset, max_new_tokens=max_new,
                            eos_token_id=eos, cancel=cancel, on_beams=reports.append):
        steps.append(step)
        if cancel_after is not None and len(steps) == cancel_after:
            cancel.set()
    return steps, reports


def reference(model, ids, preset, max_new, eos):
    """transformers' finished beams: [(generated ids, sequences_scores entry)], best first."""
    out = model.generate(
        torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
        do_sample=False, num_beams=preset.num_beams, num_return_sequences=preset.num_beams,
        length_penalty=preset.length_penalty, early_stopping=preset.early_stopping,
        max_new_tokens=max_new, eos_token_id=eos, pad_token_id=0, output_scores=True,
        return_dict_in_generate=True, repetition_penalty=preset.repetition_penalty,
        no_repeat_ngram_size=preset.no_repeat_ngram_size or None)
    # beam_indices is -1 past a sequence's end: it gives each one's generated length.
    lengths = (out.beam_indices >= 0).sum(dim=1).tolist()
    return [(row[len(ids): len(ids) + n].tolist(), float(score))
            for row, n, score in zip(out.sequences, lengths, out.sequences_scores)]


def summed_log_probs(model, ids, reply):
    """The model's summed log-probability of `reply` after `ids`, from one plain forward."""
    with torch.no_grad():
        logits = model(torch.tensor([ids + reply])).logits[0]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(log_probs[len(ids) - 1 + i, t]) for i, t in enumerate(reply))


@pytest.mark.parametrize("num_beams", [2, 4])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0, -1.0])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_final_beams_are_transformers_sequences_and_scores(tiny, num_beams, length_penalty,
                                                            early_stopping):
    tok, model = tiny
    preset = Preset(method="beam", num_beams=num_beams, length_penalty=length_penalty,
                    early_stopping=early_stopping)
    for prompt, eos in CASES:
        ids = tok(prompt).input_ids
        steps, reports = live_search(model, ids, preset, 16, eos)
        final = reports[-1]
        expected = reference(model, ids, preset, 16, eos)
        assert [h for h, _, _ in final] == [h for h, _ in expected], (prompt, eos)
        assert all(done for _, _, done in final)
        torch.testing.assert_close([s for _, s, _ in final], [s for _, s in expected],
                                   atol=1e-5, rtol=1e-5)
        assert steps[-1][0] == final[0][0]  # the reply is the best of them


def test_cases_finish_some_beams_on_end_of_sequence_while_others_run(tiny):
    """The cases above do report finished beams mid-search, not only at max length."""
    tok, model = tiny
    preset = Preset(method="beam", num_beams=4)
    mixed = []
    for prompt, eos in CASES[:3]:
        _, reports = live_search(model, tok(prompt).input_ids, preset, 16, eos)
        mixed += [r for r in reports[:-1] if {done for _, _, done in r} == {True, False}]
    assert mixed
    assert any(h[-1] in {eos for _, eos in CASES} for r in mixed for h, _, done in r if done)


@pytest.mark.parametrize("length_penalty", [1.0, 0.5, -1.0])
def test_every_live_score_is_the_summed_log_prob_over_length_penalty(tiny, length_penalty):
    tok, model = tiny
    preset = Preset(method="beam", num_beams=3, length_penalty=length_penalty)
    prompt, eos = CASES[0]
    ids = tok(prompt).input_ids
    steps, reports = live_search(model, ids, preset, 12, eos)
    for (best, final), report in zip(steps[:-1], reports[:-1]):
        running = [h for h in report if not h[2]]
        assert len(running) == preset.num_beams
        assert [s for _, s, _ in report] == sorted((s for _, s, _ in report), reverse=True)
        assert best in [h for h, _, _ in running]  # the reply shown is one of them
        for reply, score, _ in report:  # a finished one ends on eos and counts it
            expected = summed_log_probs(model, ids, reply) / len(reply) ** length_penalty
            assert score == pytest.approx(expected, abs=1e-4, rel=1e-4)


def test_a_cancelled_search_reports_its_running_beams(tiny):
    tok, model = tiny
    steps, reports = live_search(model, tok(PROMPTS[1]).input_ids,
                                 Preset(method="beam", num_beams=3), 50, None, cancel_after=3)
    assert len(steps) == len(reports) == 4 and steps[-1][1]
    assert [len(h) for h, _, done in reports[-1] if not done] == [4, 4, 4]


# ---------------------------------------------------------------- the --json contract

def test_json_text_events_carry_every_beam_best_first(tiny_model_dir, capsys):
    settings = ["num_beams=3", "length_penalty=0.5", "early_stopping=false"]
    code = main(["generate", "To be, or not", "--model", str(tiny_model_dir), "--json",
                 "--max-new-tokens", "6", "--preset", "beam",
                 *(arg for s in settings for arg in ("--set", s))])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    texts = [line for line in lines if line["event"] == "text"]
    assert len(texts) == 6  # one per step
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for event in texts:
        beams = event["beams"]
        assert beams and all(set(b) == {"text", "token_ids", "score", "finished"} for b in beams)
        assert [b["score"] for b in beams] == sorted((b["score"] for b in beams), reverse=True)
        assert all(b["text"] == tok.decode(b["token_ids"]) for b in beams)
    assert [len(t["beams"]) for t in texts[:-1]] == [3] * 5
    assert not any(b["finished"] for t in texts[:-1] for b in t["beams"])

    # The last event: the finished beams, which are transformers' sequences and scores.
    last = texts[-1]["beams"]
    assert all(b["finished"] for b in last)
    assert texts[-1]["token_ids"] == last[0]["token_ids"] and texts[-1]["text"] == last[0]["text"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = tok("To be, or not", add_special_tokens=False).input_ids
    preset = resolve_preset("beam", settings)
    expected = reference(model, ids, preset, 6, model.config.eos_token_id)
    assert [b["token_ids"] for b in last] == [h for h, _ in expected]
    torch.testing.assert_close([b["score"] for b in last], [s for _, s in expected],
                               atol=1e-5, rtol=1e-5)


def test_json_events_of_other_methods_have_no_beams(tiny_model_dir, capsys):
    code = main(["generate", "To be", "--model", str(tiny_model_dir), "--json",
                 "--max-new-tokens", "3", "--preset", "greedy"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all("beams" not in line for line in lines)
