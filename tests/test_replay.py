"""Replay: playback timing and order, and --verify by re-running turns on a tiny model."""

from __future__ import annotations

import json
import time

import pytest

from gptterm import replay
from gptterm.cli import main
from gptterm.presets import Preset
from gptterm.store import Store, Turn


def _turn(role, text, chunks=(), **kw) -> Turn:
    return Turn(id=0, session_id="s", index=kw.pop("index", 0), role=role, text=text,
                chunks=[list(c) for c in chunks], **kw)


def _timed_session(store: Store) -> str:
    """Two exchanges whose model turns stream over 0.6 s + 0.5 s."""
    s = store.create_session(name="timed")
    store.add_turn(s.id, "user", "Count:")
    w = store.begin_turn(s.id, model="m", seed=1)
    for i in range(7):
        w.append(f" {i}", [i], at=0.1 * i)
    w.finish("complete")
    store.add_turn(s.id, "user", " More:")
    w = store.begin_turn(s.id, model="m", seed=2)
    for i in range(6):
        w.append(f" {i + 7}", [i], at=0.1 * i)
    w.finish("complete")
    return s.id


def test_schedule_runs_turns_end_to_end():
    turns = [_turn("user", "Hi"), _turn("model", " a b", [[0.2, " a"], [0.5, " b"]]),
             _turn("user", " x"), _turn("model", " c", [[0.3, " c"]])]
    steps = replay.schedule(turns)
    assert [(round(s.at, 3), s.text) for s in steps] == [
        (0.0, "Hi"), (0.2, " a"), (0.5, " b"), (0.5, " x"), (0.8, " c")]
    assert replay.recorded_seconds(turns) == pytest.approx(0.8)


def test_play_writes_text_in_order_at_scaled_times():
    turns = [_turn("user", "Hi"), _turn("model", " a b", [[0.2, " a"], [0.5, " b"]])]
    now = [0.0]
    written = []

    def sleep(seconds):
        now[0] += seconds

    took = replay.play(turns, lambda t: written.append((now[0], t)), speed=2,
                       sleep=sleep, clock=lambda: now[0])
    assert written == [(0.0, "Hi"), (0.1, " a"), (0.25, " b")]
    assert took == pytest.approx(0.25)
    with pytest.raises(ValueError):
        replay.play(turns, print, speed=0)


def test_beam_turn_is_written_once_with_its_final_text():
    beam = _turn("model", "the best", [[0.1, "the", "replace"], [0.3, "the best", "replace"]])
    written = []
    replay.play([_turn("user", "Q:"), beam, _turn("user", " next")], written.append,
                sleep=lambda s: None)
    assert written == ["Q:", "the best", " next"]
    events = replay.turn_events(beam, "r")
    assert [(t, e.text, e.replace) for t, e in events] == [
        (0.1, "the", True), (0.3, "the best", True)]


def test_playback_at_speed_1_takes_the_recorded_time(capsys):
    store = Store()
    sid = _timed_session(store)
    recorded = replay.recorded_seconds(store.turns(sid))
    assert recorded == pytest.approx(1.1)
    store.close()
    # The recorded pauses are kept (never played faster); a busy machine may only add to
    # them, so the upper bounds are generous and only the order of the speeds is compared.
    t0 = time.monotonic()
    assert main(["replay", "timed"]) == 0
    took = time.monotonic() - t0
    assert 0.95 * recorded <= took <= recorded + 5.0, took
    assert capsys.readouterr().out == "Count: 0 1 2 3 4 5 6 More: 7 8 9 10 11 12\n"
    t0 = time.monotonic()
    assert main(["replay", sid, "--speed", "4"]) == 0
    faster = time.monotonic() - t0
    assert 0.95 * recorded / 4 <= faster <= recorded / 4 + 5.0, faster
    assert faster < took


def test_replay_bad_input_is_one_line(capsys):
    assert main(["replay", "no-such-session"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    store = Store()
    store.create_session(name="x")
    store.close()
    assert main(["replay", "x", "--speed", "0"]) == 2
    assert "--speed" in capsys.readouterr().err


# ------------------------------------------------------------------ compare


@pytest.mark.parametrize("stored, produced, status, outcome, index", [
    ([1, 2, 3], [1, 2, 3], "complete", "identical", None),
    ([1, 2, 3], [1, 9, 3], "complete", "differs", 1),
    ([1, 2, 3], [1, 2], "complete", "differs", 2),
    ([1, 2], [1, 2, 3], "complete", "differs", 2),
    ([1, 2], [1, 2, 3], "cancelled", "identical", None),  # stopped early: a prefix is enough
    ([1, 5], [1, 2, 3], "partial", "differs", 1),
])
def test_compare(stored, produced, status, outcome, index):
    check = replay.compare(_turn("model", "", token_ids=stored, status=status), produced)
    assert (check.outcome, check.index) == (outcome, index)


# ------------------------------------------------------------------ verify on a real engine


@pytest.fixture(scope="module")
def recorded(tiny_model_dir, tmp_path_factory):
    """A session recorded through the engine: a seeded sampled turn, then a greedy one."""
    from gptterm.engine.client import EngineClient
    from gptterm.recorder import TurnRecorder, open_session

    db = tmp_path_factory.mktemp("verify") / "sessions.db"
    store = Store(db)
    sample = Preset(name="warm", method="sample", temperature=1.3, top_k=40)
    greedy = Preset(name="greedy", method="greedy", repetition_penalty=1.2)
    with EngineClient(device="cpu") as client:
        loaded = client.load(str(tiny_model_dir), "cpu")
        sid = open_session(store, "verify-me")
        for prompt, preset, seed in [("Once upon a time", sample, 1234), (" Then", greedy, None)]:
            rec = TurnRecorder(store, sid, loaded.name, preset, seed=seed, max_new_tokens=24)
            client.generate(rec.start(prompt), rec.on_event)
    data = store.export_json(store.find_session("verify-me").id)
    store.close()
    return data


def _load(data, mutate=None) -> str:
    data = json.loads(json.dumps(data))
    if mutate:
        mutate(data["turns"])
    store = Store()
    sid = store.import_json(data).id
    store.close()
    return sid


def test_verify_reports_identical_for_sampled_and_greedy_turns(recorded, capsys):
    turns = recorded["turns"]
    assert [t["preset"]["method"] for t in turns if t["role"] == "model"] == ["sample", "greedy"]
    assert all(len(t["token_ids"]) == 24 for t in turns if t["role"] == "model")
    sid = _load(recorded)
    assert main(["replay", sid, "--verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("turn 1 (") and out[0].endswith(": identical (24 tokens)")
    assert out[1].startswith("turn 3 (") and out[1].endswith(": identical (24 tokens)")
    assert out[2] == "2 of 2 model turns identical"


@pytest.mark.parametrize("turn, index", [(1, 3), (3, 0), (3, 23)])
def test_verify_reports_the_first_altered_token(recorded, capsys, turn, index):
    def alter(turns):
        ids = turns[turn]["token_ids"]
        ids[index] = (ids[index] + 1) % 300

    sid = _load(recorded, alter)
    assert main(["replay", sid, "--verify", "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_turn = {line["turn"]: line for line in lines}
    assert by_turn[turn]["outcome"] == "differs" and by_turn[turn]["index"] == index
    if turn == 3:
        assert by_turn[1]["outcome"] == "identical"
    else:  # turn 3 was written after the unaltered tokens: its context no longer matches
        assert by_turn[3]["outcome"] == "differs" and by_turn[3]["index"] is None
        assert "another context" in by_turn[3]["detail"]


def test_verify_cancelled_turn_compares_what_was_stored(recorded, capsys):
    def cancel(turns):
        turns[3]["token_ids"] = turns[3]["token_ids"][:7]
        turns[3]["status"] = "cancelled"

    assert main(["replay", _load(recorded, cancel), "--verify"]) == 0
    assert "turn 3 (" in capsys.readouterr().out


def test_verify_says_when_a_model_is_not_available(recorded, capsys, tmp_path):
    def elsewhere(turns):
        turns[1]["model"] = str(tmp_path / "no-such-model")

    assert main(["replay", _load(recorded, elsewhere), "--verify"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"model '{tmp_path / 'no-such-model'}' is not available" in out[0]
    # Turn 3 was written after turn 1's tokens from the tiny model; with turn 1 now
    # claiming another model, its tokens are not the ones turn 3 saw, and verify says so.
    assert "another context" in out[1]


def test_verify_needs_a_seed_for_sampled_turns(recorded, capsys):
    def unseeded(turns):
        turns[1]["seed"] = None

    assert main(["replay", _load(recorded, unseeded), "--verify"]) == 1
    assert "no recorded seed" in capsys.readouterr().out


def test_verify_catches_a_different_seed(recorded, capsys):
    def reseed(turns):
        turns[1]["seed"] = 4321

    assert main(["replay", _load(recorded, reseed), "--verify", "--json"]) == 1
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["turn"] == 1 and first["outcome"] == "differs"
