"""The session store: sessions, turns, titles, lookup, search, export/import, autosave."""

from __future__ import annotations

import json
import re
import time

import pytest

from gptterm import paths
from gptterm.store import Store, StoreError, title_from


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "sessions.db")
    yield s
    s.close()


def _model_turn(store, sid, text, **kw):
    w = store.begin_turn(sid, model="tiny", preset={"name": "greedy", "method": "greedy"},
                         seed=kw.pop("seed", 1))
    for i, word in enumerate(re.findall(r"\s*\S+", text)):
        w.append(word, [i], at=0.1 * i)
    return w.finish(kw.pop("status", "complete"), {"n_tokens": len(text.split()), "seconds": 0.5})


def test_default_path_is_in_the_data_dir():
    s = Store()
    assert s.path == paths.data_dir() / "sessions.db"
    assert s.path.exists()
    s.close()


def test_database_uses_wal_and_current_schema(store):
    from gptterm.store import schema

    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema.version(store._conn) == schema.SCHEMA_VERSION


def test_title_comes_from_first_prompt_until_renamed(store):
    s = store.create_session()
    assert s.title == ""
    store.add_turn(s.id, "user", "\n  The old   lighthouse keeper\nsecond line")
    store.add_turn(s.id, "user", "Another prompt")
    assert store.find_session(s.id).title == "The old lighthouse keeper"
    store.rename_session(s.id, "Lighthouse")
    store.add_turn(s.id, "user", "More")
    assert store.find_session(s.id).title == "Lighthouse"
    assert len(title_from("x" * 500)) <= 60


def test_find_by_id_name_title_and_errors(store):
    a = store.create_session(name="poems")
    store.add_turn(a.id, "user", "Roses are red")
    b = store.create_session()
    store.add_turn(b.id, "user", "Roses are red")
    assert store.find_session(a.id).id == a.id
    assert store.find_session("poems").id == a.id
    assert store.find_session(b.id[:5]).id == b.id
    with pytest.raises(StoreError, match="2 sessions are titled"):
        store.find_session("Roses are red")
    store.rename_session(b.id, "Violets")
    assert store.find_session("Roses are red").id == a.id
    assert store.find_session("Violets").id == b.id
    with pytest.raises(StoreError, match="no session"):
        store.find_session("nothing-like-this")
    with pytest.raises(StoreError, match="already exists"):
        store.create_session(name="poems")


def test_list_is_most_recently_updated_first(store):
    a = store.create_session("a")
    b = store.create_session("b")
    time.sleep(0.01)
    store.add_turn(a.id, "user", "hello")
    assert [s.id for s in store.list_sessions()] == [a.id, b.id]


def test_turns_context_and_delete(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once upon a time")
    t = _model_turn(store, s.id, " there was a fox")
    turns = store.turns(s.id)
    assert [x.index for x in turns] == [0, 1]
    assert [x.role for x in turns] == ["user", "model"]
    assert turns[1] == t
    assert turns[1].token_ids == [0, 1, 2, 3]
    assert turns[1].chunks[1] == [0.1, " was"]
    assert store.context_text(s.id) == "Once upon a time there was a fox"
    store.delete_session(s.id)
    assert store.list_sessions() == []
    assert store.turns(s.id) == []
    assert store.search("fox") == []
    with pytest.raises(StoreError):
        store.delete_session(s.id)


def test_bad_role_and_status_are_store_errors(store):
    s = store.create_session()
    with pytest.raises(StoreError, match="role"):
        store.add_turn(s.id, "assistant", "x")
    w = store.begin_turn(s.id)
    with pytest.raises(StoreError, match="status"):
        w.finish("done")
    w.finish("cancelled")
    with pytest.raises(StoreError, match="no session"):
        store.add_turn("nope", "user", "x")


def test_turn_writer_is_partial_while_streaming_and_flushes(tmp_path):
    store = Store(tmp_path / "s.db", flush_interval=0.2)
    other = Store(tmp_path / "s.db")  # a second connection sees what is on disk
    s = store.create_session()
    w = store.begin_turn(s.id, model="m", preset={"method": "sample"}, seed=7)
    assert other.turns(s.id)[0].status == "partial"
    w.append("Hello", [1, 2])
    time.sleep(0.5)  # no more text arrives: the timer thread writes it anyway
    on_disk = other.turns(s.id)[0]
    assert (on_disk.text, on_disk.token_ids, on_disk.status) == ("Hello", [1, 2], "partial")
    w.replace_text("Goodbye", [9])
    t = w.finish("complete", {"n_tokens": 1})
    on_disk = other.turns(s.id)[0]
    assert on_disk == t
    assert on_disk.text == "Goodbye" and on_disk.token_ids == [9]
    assert on_disk.chunks[-1][1:] == ["Goodbye", "replace"]
    assert on_disk.status == "complete" and on_disk.seed == 7
    with pytest.raises(StoreError, match="finished"):
        w.append("more")
    store.close()
    other.close()


def test_search_finds_words_from_prompts_and_replies(store):
    s = store.create_session(name="sea")
    store.add_turn(s.id, "user", "Tell me about the lighthouse")
    _model_turn(store, s.id, " The keeper polished the great lens every night.")
    other = store.create_session()
    store.add_turn(other.id, "user", "月落乌啼霜满天")
    hits = store.search("lighthouse")
    assert [(h[0].id, h[1].index) for h in hits] == [(s.id, 0)]
    assert "[lighthouse]" in hits[0][2]
    hits = store.search("keeper lens")
    assert [(h[0].id, h[1].role) for h in hits] == [(s.id, "model")]
    assert "[keeper]" in hits[0][2] and "[lens]" in hits[0][2]
    assert store.search("polish*")[0][1].role == "model"
    assert store.search("keeper submarine") == []
    # Chinese has no spaces between words: found by substring.
    hits = store.search("乌啼")
    assert [h[0].id for h in hits] == [other.id] and "[乌啼]" in hits[0][2]
    # Korean attaches particles to words: the stem is found inside the FTS token.
    ko = store.create_session()
    store.add_turn(ko.id, "user", "학교에서 공부했다")
    assert [h[0].id for h in store.search("학교")] == [ko.id]
    # FTS5 syntax characters are plain text.
    assert store.search('"lens" AND -') == []


def test_export_json_then_import_is_equal(tmp_path, store):
    s = store.create_session(name="story")
    store.add_turn(s.id, "user", "Once upon a time")
    _model_turn(store, s.id, " a fox ran", seed=42)
    _model_turn(store, s.id, " away", status="cancelled")
    data = store.export_json(s.id)
    text = json.dumps(data)
    fresh = Store(tmp_path / "other.db")
    imported = fresh.import_json(json.loads(text))
    assert imported == store.find_session(s.id)
    assert fresh.export_json(imported.id) == data
    assert [t.status for t in fresh.turns(s.id)] == ["complete", "complete", "cancelled"]
    assert fresh.search("fox")[0][0].id == s.id
    # Importing again where the id and name are taken makes a copy.
    copy = fresh.import_json(data)
    assert copy.id != s.id and copy.name is None
    exported = fresh.export_json(copy.id)
    assert exported["turns"] == data["turns"]
    fresh.close()


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d["turns"][1].update(role="bot"), r"turns\[1\].role"),
    (lambda d: d["turns"][1].update(token_ids=["a"]), r"turns\[1\].token_ids"),
    (lambda d: d["turns"][1].update(chunks=[[1]]), r"turns\[1\].chunks"),
    (lambda d: d["session"].pop("id"), "session.id"),
])
def test_import_rejects_bad_files_with_one_line(store, change, message):
    s = store.create_session()
    store.add_turn(s.id, "user", "hi")
    _model_turn(store, s.id, " there")
    data = store.export_json(s.id)
    change(data)
    with pytest.raises(StoreError, match=message) as info:
        store.import_json(data, where="f.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("f.json: ")


def test_export_markdown_is_readable(store):
    s = store.create_session(name="md")
    store.add_turn(s.id, "user", "Write a haiku")
    _model_turn(store, s.id, " Autumn moonlight falls", seed=3)
    md = store.export_markdown(s.id)
    assert md.startswith("# Write a haiku\n")
    assert "## You\n\nWrite a haiku" in md
    assert "## tiny · greedy · seed 3" in md
    assert "Autumn moonlight falls" in md


def test_delete_turn_for_regenerate(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    t = _model_turn(store, s.id, " upon a fox")
    store.delete_turn(t.id)
    assert store.context_text(s.id) == "Once" and store.search("fox") == []
    again = _model_turn(store, s.id, " upon a hare")
    assert again.index == 1 and store.context_text(s.id) == "Once upon a hare"
    with pytest.raises(StoreError):
        store.delete_turn(t.id)


def test_context_turns_carry_what_a_context_needs(tmp_path):
    store = Store(tmp_path / "s.db")
    s = store.create_session()
    store.add_turn(s.id, "user", "Once", model="m", token_ids=[1, 2])
    writer = store.begin_turn(s.id, model="m", preset={"name": "p"}, seed=3)
    writer.append(" upon", [7])
    writer.finish("complete", {"n_tokens": 1})
    full, light = store.turns(s.id), store.context_turns(s.id)
    assert [(t.role, t.text, t.model, t.token_ids) for t in light] == \
        [(t.role, t.text, t.model, t.token_ids) for t in full]
    store.close()
