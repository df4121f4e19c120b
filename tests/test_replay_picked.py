"""A reply written in step mode: its versions and hand picks are stored, `replay --verify`
gives the picks to the re-run and finds every version identical, and a tampered one not."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gptterm.cli import main
from gptterm.presets import Preset
from gptterm.protocol import Candidates, Pick
from gptterm.store import Store

SAMPLE = Preset(name="warm", method="sample", temperature=1.3, top_k=40)
PICK_AT = (3, 7)  # reply positions where another token than the draw is picked


@pytest.fixture(scope="module")
def stepped(tiny_model_dir, tmp_path_factory):
    """A session whose one reply was stepped by hand: the exported session."""
    from gptterm.engine.client import EngineClient
    from gptterm.recorder import TurnRecorder, open_session

    store = Store(tmp_path_factory.mktemp("stepped") / "sessions.db")
    with EngineClient(device="cpu") as client:
        loaded = client.load(str(tiny_model_dir), "cpu")
        sid = open_session(store, "stepped")
        rec = TurnRecorder(store, sid, loaded.name, SAMPLE, seed=99, max_new_tokens=16)
        command = dataclasses.replace(rec.start("Once upon a time"), step_mode=True)

        def on_event(event):
            rec.on_event(event)
            if isinstance(event, Candidates):
                token = None
                if event.position in PICK_AT:
                    token = next(i for i, _, _ in event.top if i != event.drawn)
                    drawn_text = next(t for i, t, _ in event.top if i == event.drawn)
                    rec.hand_pick(event.position, event.drawn, drawn_text)
                client.engine.submit(Pick(command.request_id, token))

        client.generate(command, on_event)
    data = store.export_json(sid)
    store.close()
    return data


def _load(data, mutate=None) -> str:
    data = json.loads(json.dumps(data))
    if mutate:
        mutate([t for t in data["turns"] if t["role"] == "model"])
    store = Store()
    sid = store.import_json(data).id
    store.close()
    return sid


def _verify(sid, capsys) -> tuple[int, list[dict]]:
    code = main(["replay", sid, "--verify", "--json"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_each_pick_keeps_the_drawn_version_and_goes_on_in_a_new_one(stepped):
    replies = [t for t in stepped["turns"] if t["role"] == "model"]
    assert [r["status"] for r in replies] == ["cancelled", "cancelled", "complete"]
    assert [len(r["token_ids"]) for r in replies[:2]] == [PICK_AT[0] + 1, PICK_AT[1] + 1]
    assert [r["stats"].get("picked", []) for r in replies] == [[], [3], [3, 7]]
    last = replies[-1]
    # The versions share what came before each pick, and differ at it.
    for version, at in zip(replies[:2], PICK_AT):
        assert version["token_ids"][:at] == last["token_ids"][:at]
        assert version["token_ids"][at] != last["token_ids"][at]
    # Every version keeps what replay needs to redo it.
    assert all(r["stats"]["context_sha"] == last["stats"]["context_sha"] for r in replies)


def test_verify_gives_the_picks_and_finds_every_version_identical(stepped, capsys):
    sid = _load(stepped)
    code, lines = _verify(sid, capsys)
    assert code == 0, lines
    assert [line["outcome"] for line in lines] == ["identical"] * 3
    assert main(["replay", sid, "--verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].endswith("identical (16 tokens, 2 picked by hand)")
    assert out[-1] == "3 of 3 model turns identical"


def test_a_tampered_token_after_a_pick_differs(stepped, capsys):
    def alter(replies):
        ids = replies[-1]["token_ids"]
        ids[9] = (ids[9] + 1) % 300

    code, lines = _verify(_load(stepped, alter), capsys)
    assert code == 1
    assert (lines[-1]["outcome"], lines[-1]["index"]) == ("differs", 9)
    assert [line["outcome"] for line in lines[:2]] == ["identical"] * 2


def test_without_its_picks_a_stepped_reply_differs_at_the_first(stepped, capsys):
    def forget(replies):
        del replies[-1]["stats"]["picked"]

    code, lines = _verify(_load(stepped, forget), capsys)
    assert code == 1 and (lines[-1]["outcome"], lines[-1]["index"]) == ("differs", 3)


def test_a_moved_pick_differs(stepped, capsys):
    def move(replies):
        replies[-1]["stats"]["picked"] = [3, 8]  # 7 was picked, 8 was drawn

    code, lines = _verify(_load(stepped, move), capsys)
    assert code == 1 and (lines[-1]["outcome"], lines[-1]["index"]) == ("differs", 7)
