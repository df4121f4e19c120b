"""A session remembers its model, preset and sampling overrides (schema v5), and the
user's prompts can be read back for recall."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gptterm.presets import SESSION_KEYS
from gptterm.store import Store, StoreError, schema
from gptterm.store.records import session_from_row


def _v4_db(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    schema.apply(conn, target=4)
    return conn


def _turn(conn, sid, idx, role, model=None, preset=None) -> None:
    conn.execute("INSERT INTO turns(session_id, idx, role, text, model, preset, created)"
                 " VALUES (?, ?, ?, ?, ?, ?, 1.5)", (sid, idx, role, f"t{idx}", model, preset))


def test_a_v4_database_migrates_with_model_and_preset_from_the_last_model_turn(tmp_path):
    db = tmp_path / "sessions.db"
    conn = _v4_db(db)
    for sid in ("aaaa0001", "aaaa0002", "aaaa0003", "aaaa0004"):
        conn.execute("INSERT INTO sessions VALUES (?, '', NULL, 1.0, 2.0)", (sid,))
    # The last model turn wins; a user turn after it does not count.
    _turn(conn, "aaaa0001", 0, "user", model="tiny")
    _turn(conn, "aaaa0001", 1, "model", "old-model", json.dumps({"name": "greedy"}))
    _turn(conn, "aaaa0001", 2, "user", model="other")
    _turn(conn, "aaaa0001", 3, "model", "new-model", json.dumps({"name": "creative",
                                                                  "temperature": 0.9}))
    _turn(conn, "aaaa0001", 4, "user", model="user-side-model")
    # Damaged presets are skipped (the migration must not fail on them).
    _turn(conn, "aaaa0002", 0, "model", "m2", json.dumps({"name": "warm"}))
    _turn(conn, "aaaa0002", 1, "model", "m2", "{not json")
    _turn(conn, "aaaa0002", 2, "model", "m2", json.dumps([1, 2]))
    _turn(conn, "aaaa0002", 3, "model", "m2", json.dumps({"name": 7}))
    # A session with only a user turn has no choice yet.
    _turn(conn, "aaaa0003", 0, "user", model="tiny")
    conn.close()

    store = Store(db)
    assert store.recovered_from is None
    assert schema.version(store._conn) == schema.SCHEMA_VERSION
    one, two, three, four = (store.get_session(s) for s in
                             ("aaaa0001", "aaaa0002", "aaaa0003", "aaaa0004"))
    assert (one.model, one.preset, one.sampling) == ("new-model", "creative", {})
    assert (two.model, two.preset) == ("m2", "warm")
    assert (three.model, three.preset, three.sampling) == (None, None, {})
    assert (four.model, four.preset) == (None, None)
    assert one.updated == 2.0  # the migration changes no times
    store.close()


def test_remember_choice_sets_what_is_given_and_keeps_the_list_order(tmp_path):
    store = Store(tmp_path / "s.db")
    older = store.create_session(name="older")
    newer = store.create_session(name="newer")
    store.add_turn(newer.id, "user", "hello")
    before = [s.id for s in store.list_sessions()]
    updated = store.get_session(older.id).updated

    store.remember_choice(older.id, model="tiny", preset="greedy")
    store.remember_choice(older.id, preset="creative")  # model stays
    s = store.get_session(older.id)
    assert (s.model, s.preset, s.updated) == ("tiny", "creative", updated)
    assert [s.id for s in store.list_sessions()] == before
    with pytest.raises(StoreError, match="no session"):
        store.remember_choice("ffff0000", model="x")
    with pytest.raises(StoreError, match="session model: expected text"):
        store.remember_choice(older.id, model="\ud800")
    store.close()


def test_sampling_overrides_are_checked_by_the_preset_rules(tmp_path):
    store = Store(tmp_path / "s.db")
    s = store.create_session()
    updated = store.get_session(s.id).updated
    store.set_session_sampling(s.id, {"temperature": 1, "top_k": 40, "seed": 7})
    got = store.get_session(s.id)
    assert got.sampling == {"temperature": 1.0, "top_k": 40, "seed": 7}
    assert isinstance(got.sampling["temperature"], float) and got.updated == updated
    store.set_session_sampling(s.id, {"max_new_tokens": 20})  # replaces, not merges
    assert store.get_session(s.id).sampling == {"max_new_tokens": 20}

    bad = [({"top_p": 1.5}, "top_p = 1.5: expected in (0, 1]"),
           ({"top_k": True}, "top_k = True: expected an integer"),
           ({"max_new_tokens": 0}, "max_new_tokens = 0: expected in [1, "),
           ({"seed": -1}, "seed = -1: expected an integer with 0 <= seed < 2**63"),
           ({"method": "sample"}, "unknown key 'method': expected one of " +
            ", ".join(SESSION_KEYS)),
           (["top_p"], "expected an object")]
    for value, message in bad:
        with pytest.raises(StoreError) as info:
            store.set_session_sampling(s.id, value)
        line = str(info.value)
        assert line.startswith("session sampling: ") and message in line
        assert "\n" not in line
    assert store.get_session(s.id).sampling == {"max_new_tokens": 20}  # unchanged
    with pytest.raises(StoreError, match="no session"):
        store.set_session_sampling("ffff0000", {})
    store.close()


def test_damaged_stored_choices_read_as_none(tmp_path):
    store = Store(tmp_path / "s.db")
    s = store.create_session()
    store._conn.execute("UPDATE sessions SET model = x'41', preset = x'00', sampling = '{bad'"
                        " WHERE id = ?", (s.id,))
    got = store.get_session(s.id)
    assert (got.model, got.preset, got.sampling) == (None, None, {})
    store._conn.execute("UPDATE sessions SET sampling = '[1]' WHERE id = ?", (s.id,))
    assert store.get_session(s.id).sampling == {}
    # A row without the columns (a search hit) reads too.
    row = {"id": "abcd0123", "title": "t", "name": None, "created": 1.0, "updated": 2.0}
    assert session_from_row(row).sampling == {}
    store.close()


def test_user_prompts_oldest_first_without_the_joining_newline(tmp_path):
    store = Store(tmp_path / "s.db")
    a = store.create_session()
    b = store.create_session()
    store.add_turn(a.id, "user", "first")
    store.add_turn(a.id, "model", " reply")
    store.add_turn(b.id, "user", "in b")
    store.add_turn(a.id, "user", "\nsecond\n")
    store.add_turn(a.id, "user", "\n")  # nothing typed: skipped
    store.add_turn(b.id, "user", "  indented")
    assert store.user_prompts(a.id) == ["first", "second\n"]
    assert store.user_prompts(b.id) == ["in b", "  indented"]
    assert store.user_prompts(None) == ["first", "in b", "second\n", "  indented"]
    assert store.user_prompts(None, limit=2) == ["second\n", "  indented"]
    assert store.user_prompts(a.id, limit=1) == ["second\n"]
    store.close()


def test_export_carries_the_choices_and_old_exports_still_import(tmp_path):
    store = Store(tmp_path / "s.db")
    s = store.create_session(name="keep")
    store.remember_choice(s.id, model="tiny", preset="greedy")
    store.set_session_sampling(s.id, {"top_p": 0.9})
    data = store.export_json(s.id)
    assert data["session"]["model"] == "tiny" and data["session"]["sampling"] == {"top_p": 0.9}
    store.delete_session(s.id)
    again = store.get_session(store.import_json(data).id)
    assert (again.model, again.preset, again.sampling) == ("tiny", "greedy", {"top_p": 0.9})

    old = json.loads(json.dumps(data))
    for key in ("model", "preset", "sampling"):
        del old["session"][key]
    old["session"]["id"] = "abcd0001"
    imported = store.get_session(store.import_json(old).id)
    assert (imported.model, imported.preset, imported.sampling) == (None, None, {})

    for key, value, message in [("sampling", {"top_k": -1}, "session.sampling: top_k = -1"),
                                ("sampling", {"nope": 1}, "session.sampling: unknown key"),
                                ("sampling", "x", "session.sampling: expected an object"),
                                ("model", 3, "session.model: expected a string or null"),
                                ("preset", ["a"], "session.preset: expected a string")]:
        broken = json.loads(json.dumps(data))
        broken["session"][key] = value
        with pytest.raises(StoreError) as info:
            store.import_json(broken, where="f.json")
        assert str(info.value).startswith("f.json: ") and message in str(info.value)
    store.close()


# ---------------------------------------------------------------- the recorder


def test_a_recorded_request_remembers_its_model_and_preset(tmp_path):
    from gptterm.presets import Preset
    from gptterm.recorder import TurnRecorder, open_session

    store = Store(tmp_path / "s.db")
    sid = open_session(store, "tale")
    other = store.create_session(name="other")
    store.add_turn(other.id, "user", "newest")  # the list order must not move
    order = [s.id for s in store.list_sessions()]
    TurnRecorder(store, sid, "tiny", Preset(name="warm")).start(None)  # nothing stored...
    s = store.get_session(sid)
    assert (s.model, s.preset) == ("tiny", "warm")  # ...but the choice is
    assert [x.id for x in store.list_sessions()] == order
    TurnRecorder(store, sid, "/models/mine", Preset(name="greedy")).start("Hi")
    s = store.get_session(sid)
    assert (s.model, s.preset) == ("/models/mine", "greedy")
    store.close()


def test_session_preset_applies_the_overrides_and_drops_bad_ones():
    from gptterm.presets import Preset
    from gptterm.recorder import session_preset
    from gptterm.store import Session

    presets = {"creative": Preset(name="creative", method="sample", temperature=0.9),
               "greedy": Preset(name="greedy")}

    def session(preset, sampling):
        return Session("abcd0001", "", None, 1.0, 1.0, model=None, preset=preset,
                       sampling=sampling)

    p = session_preset(presets, session("greedy", {"max_new_tokens": 12, "seed": 3}), "creative")
    assert (p.name, p.method, p.max_new_tokens, p.seed) == ("greedy", "greedy", 12, 3)
    # A preset that is gone: the fallback; one that is not there either: neutral values.
    p = session_preset(presets, session("deleted", {}), "creative")
    assert p == presets["creative"]
    assert session_preset({}, session(None, {}), "creative") == Preset(name="creative")
    # Bad overrides are dropped one by one; the good ones stay.
    p = session_preset(presets, session("creative", {
        "temperature": 0, "top_p": 7, "top_k": 40, "method": "beam", "seed": "x"}), "greedy")
    assert (p.temperature, p.top_p, p.top_k, p.method, p.seed) == (0.9, 1.0, 40, "sample", None)
