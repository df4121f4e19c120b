"""A reply's chain stages in the store (schema v7, `turn_inspect`): a v6 file migrates, the
recorder keeps them when a reply ends (cancelled too), a damaged row reads as none, and
exports carry them through an import."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gptterm.presets import Preset
from gptterm.protocol import Done, Started, StageTop, TextDelta, TokenInspect
from gptterm.recorder import TurnRecorder
from gptterm.store import Store, StoreError, schema


def token(chosen: int, text: str, p: float = 0.5) -> TokenInspect:
    return TokenInspect(chosen, (
        StageTop("model", ((chosen, text, p / 2), (7, " the", p / 3))),
        StageTop("temperature", ((chosen, text, p), (7, " the", p / 4))),
        StageTop("final", ((chosen, text, p),))), text)


TOKENS = (token(5, " thee", 0.6), token(9, " to", 0.9), token(11, "\x1b[31m", 0.25))


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "sessions.db")
    yield s
    s.close()


def reply(store, text=" thee to x"):
    s = store.create_session()
    store.add_turn(s.id, "user", "Shall I compare")
    writer = store.begin_turn(s.id, model="tiny", preset={"name": "p"}, seed=1)
    writer.append(text, [5, 9, 11])
    return s, writer.finish("complete")


def test_a_v6_database_migrates_and_keeps_its_turns(tmp_path):
    db = tmp_path / "sessions.db"
    conn = sqlite3.connect(db, isolation_level=None)
    schema.apply(conn, target=6)
    conn.execute("INSERT INTO sessions(id, title, created, updated)"
                 " VALUES ('aaaa1111', 'old', 1.0, 2.0)")
    conn.execute("INSERT INTO turns(session_id, idx, role, text, token_ids, created)"
                 " VALUES ('aaaa1111', 0, 'model', ' an old reply', '[1, 2]', 1.5)")
    conn.close()
    store = Store(db)
    assert store.recovered_from is None
    assert schema.version(store._conn) == schema.SCHEMA_VERSION == 7
    assert "table turn_inspect" in schema.shape(store._conn)
    old = store.turns("aaaa1111")[0]
    assert store.turn_inspect(old.id) is None  # written before stages were kept
    store.save_inspect(old.id, 3, TOKENS[:2])
    assert store.turn_inspect(old.id) == (3, TOKENS[:2])
    store.close()


def test_saved_stages_read_back_and_go_with_their_turn(store):
    s, turn = reply(store)
    store.save_inspect(turn.id, 2, TOKENS)
    assert store.turn_inspect(turn.id) == (2, TOKENS)
    store.save_inspect(turn.id, 2, TOKENS[:1])  # written again: replaced
    assert store.turn_inspect(turn.id) == (2, TOKENS[:1])
    store.delete_turn(turn.id)
    assert store._conn.execute("SELECT count(*) FROM turn_inspect").fetchone()[0] == 0
    _, other = reply(store)
    store.save_inspect(other.id, 2, TOKENS)
    store.delete_session(other.session_id)
    assert store._conn.execute("SELECT count(*) FROM turn_inspect").fetchone()[0] == 0


@pytest.mark.parametrize("top_k, tokens", [(0, TOKENS), (51, TOKENS), (1, TOKENS)])
def test_out_of_range_stages_are_refused_in_one_line(store, top_k, tokens):
    _, turn = reply(store)
    with pytest.raises(StoreError, match="top_k|top") as info:
        store.save_inspect(turn.id, top_k, tokens)
    assert "\n" not in str(info.value)


GOOD = json.dumps([{"chosen": 5, "text": " a", "stages": [
    {"stage": "model", "top": [[5, " a", 0.5]]}, {"stage": "final", "top": [[5, " a", 1.0]]}]}])


@pytest.mark.parametrize("top_k, data", [
    (2, "not json"),
    (2, "{}"),
    (0, GOOD),
    (99, GOOD),
    ("two", GOOD),
    (2.5, GOOD),
    (2, GOOD.replace("0.5", "1.5")),
    (2, GOOD.replace("0.5", "NaN")),
    (2, GOOD.replace('"chosen": 5', '"chosen": -1')),
    (2, GOOD.replace('"chosen": 5', '"chosen": true')),
    (2, GOOD.replace('[[5, " a", 0.5]]', '[[5, " a", 0.5], [6, " b", 0.1], [7, " c", 0.1]]')),
    (2, GOOD.replace('"stage": "model"', '"stage": 3')),
    (2, GOOD.replace('"stages": [', '"stages": 1, "x": [')),
    (2, "[" * 5000 + "]" * 5000),
])
def test_a_damaged_row_reads_as_none_never_a_crash(store, top_k, data):
    s, turn = reply(store)
    store._conn.execute("INSERT INTO turn_inspect(turn_id, top_k, data) VALUES (?, ?, ?)",
                        (turn.id, top_k, data))
    assert store.turn_inspect(turn.id) is None
    exported = store.export_json(s.id)
    assert all("inspect" not in t for t in exported["turns"])


def test_a_good_hand_written_row_reads():
    store = Store()
    s, turn = reply(store)
    store._conn.execute("INSERT INTO turn_inspect(turn_id, top_k, data) VALUES (?, 2, ?)",
                        (turn.id, GOOD))
    k, tokens = store.turn_inspect(turn.id)
    assert k == 2 and tokens[0].chosen == 5 and tokens[0].stages[1].top == ((5, " a", 1.0),)
    store.close()


def test_export_carries_the_stages_through_an_import(tmp_path, store):
    s, turn = reply(store)
    store.save_inspect(turn.id, 2, TOKENS)
    data = json.loads(json.dumps(store.export_json(s.id)))
    assert data["version"] == 2
    model_turn = data["turns"][1]
    assert model_turn["inspect"]["top_k"] == 2
    assert model_turn["inspect"]["tokens"][0] == {
        "chosen": 5, "text": " thee",
        "stages": [{"stage": "model", "top": [[5, " thee", 0.3], [7, " the", 0.6 / 3]]},
                   {"stage": "temperature", "top": [[5, " thee", 0.6], [7, " the", 0.15]]},
                   {"stage": "final", "top": [[5, " thee", 0.6]]}]}
    assert "inspect" not in data["turns"][0]
    fresh = Store(tmp_path / "other.db")
    imported = fresh.import_json(data)
    again = fresh.turns(imported.id)[1]
    assert fresh.turn_inspect(again.id) == (2, TOKENS)
    assert fresh.export_json(imported.id)["turns"] == data["turns"]
    fresh.close()


@pytest.mark.parametrize("change, field", [
    (lambda t: t.update(inspect=[1]), r"turns\[1\]\.inspect"),
    (lambda t: t["inspect"].update(top_k=80), r"turns\[1\]\.inspect\.top_k"),
    (lambda t: t["inspect"]["tokens"][1]["stages"][0]["top"][0].__setitem__(2, 7),
     r"turns\[1\]\.inspect\.tokens\[1\]\.stages\[0\]"),
])
def test_a_bad_inspect_in_a_file_is_one_line_naming_it(store, change, field):
    s, turn = reply(store)
    store.save_inspect(turn.id, 2, TOKENS)
    data = store.export_json(s.id)
    change(data["turns"][1])
    with pytest.raises(StoreError, match=field) as info:
        store.import_json(data, where="f.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("f.json: ")


def test_an_export_without_stages_still_imports(store):
    s, _ = reply(store)
    data = store.export_json(s.id)
    assert all("inspect" not in t for t in data["turns"])
    imported = store.import_json(data)
    assert store.turn_inspect(store.turns(imported.id)[1].id) is None


def _recorder(store, k=2):
    s = store.create_session()
    recorder = TurnRecorder(store, s.id, "tiny", Preset(name="p"), seed=1, inspect_top_k=k)
    command = recorder.start("Shall I")
    assert command.inspect_top_k == k
    rid = recorder.request_id
    recorder.on_event(Started(rid, 3, 0))
    return recorder, rid


def test_the_recorder_keeps_the_stages_when_the_reply_ends(store):
    recorder, rid = _recorder(store)
    recorder.on_event(TextDelta(rid, " thee", (5,), inspect=TOKENS[:1]))
    recorder.on_event(TextDelta(rid, " to", (9,), inspect=TOKENS[1:2]))
    assert store.turn_inspect(recorder.writer.turn_id) is None  # kept once it ends
    recorder.on_event(Done(rid, "eos", 2, 0.1, 0.01))
    assert store.turn_inspect(recorder.writer.turn_id) == (2, TOKENS[:2])


def test_a_replace_redoes_the_kept_stages(store):
    recorder, rid = _recorder(store)
    recorder.on_event(TextDelta(rid, " thee to", (5, 9), inspect=TOKENS[:2]))
    recorder.on_event(TextDelta(rid, " thee", (5,), replace=True, inspect=TOKENS[:1]))
    recorder.on_event(Done(rid, "stop", 1, 0.1, 0.01))
    assert store.turn_inspect(recorder.writer.turn_id) == (2, TOKENS[:1])


def test_a_cancelled_reply_keeps_its_stages(store):
    recorder, rid = _recorder(store)
    recorder.on_event(TextDelta(rid, " thee", (5,), inspect=TOKENS[:1]))
    recorder.stop()
    turn = store.get_turn(recorder.writer.turn_id)
    assert turn.status == "cancelled"
    assert store.turn_inspect(turn.id) == (2, TOKENS[:1])


def test_without_inspection_nothing_is_kept(store):
    recorder, rid = _recorder(store, k=0)
    recorder.on_event(TextDelta(rid, " thee", (5,)))
    recorder.on_event(Done(rid, "eos", 1, 0.1, 0.01))
    assert store._conn.execute("SELECT count(*) FROM turn_inspect").fetchone()[0] == 0


def test_a_branch_keeps_its_replies_stages(store):
    s, turn = reply(store)
    store.save_inspect(turn.id, 2, TOKENS)
    branch = store.branch(s.id, turn.index)
    copied = store.turns(branch.id)[-1]
    assert copied.id != turn.id and store.turn_inspect(copied.id) == (2, TOKENS)
    store.delete_session(s.id)  # the copy is the branch's own
    assert store.turn_inspect(copied.id) == (2, TOKENS)
