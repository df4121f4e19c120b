"""`gptterm generate --json --inspect K`: every text event carries, per token id, the top K
of every chain stage ({"chosen", "stages": [{"stage", "top": [[ID, TEXT, P]]}]}), stage
names as in the preset's order; with --session they are kept with the reply."""

from __future__ import annotations

import json

import pytest

from gptterm.cli import main
from gptterm.commands.generate import INSPECT_MAX
from gptterm.store.inspection import MAX_TOP_K


def generate(capsys, model, *args):
    code = main(["generate", "To be, or not", "--model", str(model), "--json",
                 "--max-new-tokens", "8", "--seed", "3", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return [json.loads(line) for line in out.out.splitlines()]


def test_every_text_event_carries_each_tokens_stages(tiny_model_dir, capsys):
    lines = generate(capsys, tiny_model_dir, "--preset", "greedy", "--inspect", "4",
                     "--set", "repetition_penalty=1.3", "--set", "no_repeat_ngram_size=2")
    texts = [line for line in lines if line["event"] == "text"]
    assert texts
    for event in texts:
        assert set(event) == {"event", "text", "token_ids", "inspect"}
        assert len(event["inspect"]) == len(event["token_ids"])
        for token_id, entry in zip(event["token_ids"], event["inspect"]):
            assert set(entry) == {"chosen", "stages"} and entry["chosen"] == token_id
            assert [s["stage"] for s in entry["stages"]] == [
                "model", "repetition_penalty", "no_repeat_ngram", "final"]
            for stage in entry["stages"]:
                assert set(stage) == {"stage", "top"} and 1 <= len(stage["top"]) <= 4
                for tid, text, p in stage["top"]:
                    assert isinstance(tid, int) and isinstance(text, str)
                    assert isinstance(p, float) and 0 < p <= 1
                probs = [p for _, _, p in stage["top"]]
                assert probs == sorted(probs, reverse=True)
            assert entry["stages"][-1]["top"][0][0] == entry["chosen"]  # greedy


def test_sampling_names_its_stages_in_the_presets_order(tiny_model_dir, capsys):
    lines = generate(capsys, tiny_model_dir, "--preset", "greedy", "--inspect", "3",
                     "--set", "method=sample", "--set", "top_k=5", "--set", "temperature=0.7",
                     "--set", 'order=["top_k", "temperature"]')
    entries = [e for line in lines if line["event"] == "text" for e in line["inspect"]]
    assert entries
    for entry in entries:
        assert [s["stage"] for s in entry["stages"]] == ["model", "top_k", "temperature",
                                                         "final"]
        # top-k kept 5: the 3 shown of the stage after it share no more than all the mass.
        assert sum(p for _, _, p in entry["stages"][1]["top"]) <= 1 + 1e-6
        final_ids = [i for i, _, _ in entry["stages"][-1]["top"]]
        assert final_ids == [i for i, _, _ in entry["stages"][1]["top"]]


def test_without_inspect_the_events_are_as_before(tiny_model_dir, capsys):
    lines = generate(capsys, tiny_model_dir, "--preset", "greedy")
    assert all("inspect" not in line for line in lines)


@pytest.mark.parametrize("value", ["0", "51", "x", "-1", "2.5"])
def test_a_bad_inspect_is_one_line(tiny_model_dir, capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["generate", "x", "--model", str(tiny_model_dir), "--json", "--inspect", value])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--inspect" in err and "from 1 to 50" in err


def test_inspect_needs_json(tiny_model_dir, capsys):
    assert main(["generate", "x", "--model", str(tiny_model_dir), "--inspect", "3"]) == 2
    assert "--inspect: expected --json" in capsys.readouterr().err


def test_the_limit_is_the_stores(tiny_model_dir):
    assert INSPECT_MAX == MAX_TOP_K


def test_with_a_session_the_stages_are_kept_with_the_reply(tiny_model_dir, capsys):
    from gptterm.store import Store

    lines = generate(capsys, tiny_model_dir, "--preset", "greedy", "--inspect", "2",
                     "--session", "kept")
    shown = [e for line in lines if line["event"] == "text" for e in line["inspect"]]
    with Store() as store:
        reply = store.turns(store.find_session("kept").id)[-1]
        top_k, tokens = store.turn_inspect(reply.id)
    assert top_k == 2 and [t.chosen for t in tokens] == reply.token_ids
    assert [[{"stage": s.stage, "top": [list(c) for c in s.top]} for s in t.stages]
            for t in tokens] == [e["stages"] for e in shown]
