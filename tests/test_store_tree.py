"""A session is a tree of turns (schema v6): alternatives, choices, edits, branches, memory
and undo; migrations from every older version; every write all or nothing; exports that
carry the tree and round-trip exactly."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptterm.store import Store, StoreError, core, paging, schema
from gptterm.store.exporting import to_markdown


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "sessions.db")
    yield s
    s.close()


def _reply(store, sid, text, *, alternative_of=None, seed=1):
    writer = store.begin_turn(sid, model="m", preset={"name": "p", "method": "sample"},
                              seed=seed, alternative_of=alternative_of)
    writer.append(text, [len(text)])
    return writer.finish("complete", {"n_tokens": 1})


def _texts(store, sid):
    return [t.text for t in store.turns(sid)]


def check_tree(store, sid) -> None:
    """The tree's rules hold: one chosen turn after each parent, `on_path` is exactly the
    walk through chosen turns, and positions grow along it."""
    rows = store._conn.execute("SELECT id, parent_id, chosen, on_path, idx FROM turns"
                               " WHERE session_id = ?", (sid,)).fetchall()
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["parent_id"], []).append(r)
    for members in groups.values():
        assert sum(r["chosen"] for r in members) == 1
    walk, at = [], None
    while at in groups or (at is None and None in groups):
        nxt = [r for r in groups.get(at, []) if r["chosen"]]
        if not nxt:
            break
        walk.append(nxt[0]["id"])
        at = nxt[0]["id"]
    assert sorted(walk) == sorted(r["id"] for r in rows if r["on_path"])
    by_id = {r["id"]: r for r in rows}
    assert [by_id[i]["idx"] for i in walk] == sorted({by_id[i]["idx"] for i in walk})
    assert [t.id for t in store.turns(sid)] == walk


# ---------------------------------------------------------------- migrations


def _old_db(path, version):
    conn = sqlite3.connect(path, isolation_level=None)
    schema.apply(conn, target=version)
    conn.execute("INSERT INTO sessions(id, title, name, created, updated)"
                 " VALUES ('aaaa1111', 'Lighthouse', 'sea', 1.0, 5.0)")
    conn.execute("INSERT INTO sessions(id, title, name, created, updated)"
                 " VALUES ('bbbb2222', 'Other', NULL, 1.0, 4.0)")
    # Positions with a gap (a turn deleted once), inserted out of order.
    for sid, idx, role, text in [("aaaa1111", 3, "user", " again"),
                                 ("aaaa1111", 0, "user", "The keeper"),
                                 ("aaaa1111", 1, "model", " climbed"),
                                 ("bbbb2222", 0, "user", "Alone")]:
        conn.execute("INSERT INTO turns(session_id, idx, role, text, model, token_ids, chunks,"
                     " status, stats, created) VALUES (?, ?, ?, ?, 'm', '[]', '[]', 'complete',"
                     " '{}', 1.5)", (sid, idx, role, text))
    conn.close()


@pytest.mark.parametrize("version", range(1, 6))  # v6 files are trees already
def test_every_older_version_migrates_to_one_path(tmp_path, version):
    db = tmp_path / "sessions.db"
    _old_db(db, version)
    with Store(db) as store:
        assert schema.version(store._conn) == schema.SCHEMA_VERSION
        turns = store.turns("aaaa1111")
        last = 3 if version >= 3 else 2  # v3 renumbered older files
        assert [(t.index, t.text) for t in turns] == [(0, "The keeper"), (1, " climbed"),
                                                      (last, " again")]
        assert [t.parent_id for t in turns] == [None, turns[0].id, turns[1].id]
        assert all((t.alternatives, t.alternative) == (1, 1) for t in turns)
        session = store.get_session("aaaa1111")
        assert (session.memory, session.branched_from, session.branched_at) == ("", None, None)
        assert session.updated == 5.0  # the migration changes no times
        with pytest.raises(StoreError, match="nothing to undo"):
            store.undo("aaaa1111")
        # The tree works on a migrated session: a new version of the middle turn.
        edited = store.edit_turn(turns[1].id, " walked")
        assert _texts(store, "aaaa1111") == ["The keeper", " walked"]
        assert (edited.index, edited.alternatives, edited.alternative) == (1, 2, 2)
        store.choose(turns[1].id)
        assert _texts(store, "aaaa1111") == ["The keeper", " climbed", " again"]
        for sid in ("aaaa1111", "bbbb2222"):
            check_tree(store, sid)
        assert store.turns("bbbb2222")[0].parent_id is None


def test_v6_shape_is_what_the_migration_made(tmp_path):
    with Store(tmp_path / "s.db") as store:
        have = schema.shape(store._conn)
    assert {"column turns.parent_id", "column turns.chosen", "column turns.on_path",
            "column sessions.memory", "column sessions.branched_from",
            "column sessions.branched_at", "table undo_steps", "index turns_on_path"} <= have
    assert "index turns_by_session" not in have


# ---------------------------------------------------------------- alternatives and choices


def test_alternatives_of_a_reply_share_its_place_and_context(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    first = _reply(store, s.id, " upon")
    second = _reply(store, s.id, " a time", alternative_of=first.id, seed=2)
    third = _reply(store, s.id, " there", alternative_of=first.id, seed=3)
    turns = store.turns(s.id)
    assert [t.text for t in turns] == ["Once", " there"]
    assert (turns[1].index, turns[1].alternatives, turns[1].alternative) == (1, 3, 3)
    assert (turns[0].alternatives, turns[0].alternative) == (1, 1)
    alts = store.alternatives(second.id)
    assert [(a.text, a.alternative, a.alternatives) for a in alts] == [
        (" upon", 1, 3), (" a time", 2, 3), (" there", 3, 3)]
    assert [t.text for t in store.turns_before_turn(third.id)] == ["Once"]
    assert store.context_text(s.id) == "Once there"
    store.choose(first.id)
    assert store.context_text(s.id) == "Once upon"
    assert store.get_turn(first.id).alternative == 1
    check_tree(store, s.id)


def test_the_path_goes_on_with_the_chosen_branch_s_own_turns(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "A")
    r1 = _reply(store, s.id, " b")
    store.add_turn(s.id, "user", " c")
    _reply(store, s.id, " d")
    r2 = _reply(store, s.id, " B", alternative_of=r1.id)
    assert _texts(store, s.id) == ["A", " B"]
    store.add_turn(s.id, "user", " C")  # continues the new branch
    assert _texts(store, s.id) == ["A", " B", " C"]
    store.choose(r1.id)
    assert _texts(store, s.id) == ["A", " b", " c", " d"]
    store.choose(r2.id)
    assert _texts(store, s.id) == ["A", " B", " C"]
    # Choosing a turn deep in a branch that is not shown chooses the branch too.
    deep = [t for t in store.alternatives(r1.id)]  # r1 and r2
    store.choose(deep[0].id)
    d_turn = store.turns(s.id)[-1]
    store.choose(r2.id)
    store.choose(d_turn.id)
    assert _texts(store, s.id) == ["A", " b", " c", " d"]
    check_tree(store, s.id)
    # Paging reads the chosen path.
    assert [t.text for t in paging.turns_before(store, s.id, 10)] == ["A", " b", " c", " d"]
    assert paging.count_before(store, s.id) == 4
    assert paging.last_reply(store, s.id).text == " d"
    assert store.turn_counts()[s.id] == 4


def test_an_alternative_must_keep_the_role_and_session(store):
    s, other = store.create_session(), store.create_session()
    user = store.add_turn(s.id, "user", "A")
    with pytest.raises(StoreError, match="user turn must be one too"):
        store.begin_turn(s.id, alternative_of=user.id)
    with pytest.raises(StoreError, match="no turn with id"):
        store.begin_turn(other.id, alternative_of=user.id)
    with pytest.raises(StoreError, match="no turn with id"):
        store.choose(10**6)


def test_an_alternative_of_the_first_turn(store):
    s = store.create_session()
    first = _reply(store, s.id, "Start")
    store.add_turn(s.id, "user", " more")
    _reply(store, s.id, "Begin", alternative_of=first.id)
    assert _texts(store, s.id) == ["Begin"]
    store.choose(first.id)
    assert _texts(store, s.id) == ["Start", " more"]
    check_tree(store, s.id)


# ---------------------------------------------------------------- edits


def test_editing_a_turn_keeps_the_old_version_and_what_followed_it(store):
    s = store.create_session()
    user = store.add_turn(s.id, "user", "Once", model="m", token_ids=[1, 2])
    reply = _reply(store, s.id, " upon a fox", seed=9)
    store.add_turn(s.id, "user", " Then")
    edited = store.edit_turn(reply.id, " upon a hare")
    assert _texts(store, s.id) == ["Once", " upon a hare"]
    assert (edited.model, edited.preset, edited.seed) == ("m", reply.preset, 9)
    assert edited.stats == {"edited": True} and edited.token_ids == []
    assert (edited.alternatives, edited.alternative) == (2, 2)
    store.choose(reply.id)
    assert _texts(store, s.id) == ["Once", " upon a fox", " Then"]
    new_user = store.edit_turn(user.id, "Twice")
    assert _texts(store, s.id) == ["Twice"]
    assert new_user.role == "user" and new_user.model == "m"
    store.choose(edited.id)
    md = to_markdown(store.get_session(s.id), store.turns(s.id))
    assert "## m · p · seed 9 · edited · reply 2/2" in md
    check_tree(store, s.id)


def test_a_turn_still_being_written_cannot_be_edited(store):
    s = store.create_session()
    writer = store.begin_turn(s.id, model="m")
    with pytest.raises(StoreError, match="still being written"):
        store.edit_turn(writer.turn_id, "x")
    writer.finish("complete")
    with pytest.raises(StoreError, match="valid Unicode"):
        store.edit_turn(writer.turn_id, "\ud800")


# ---------------------------------------------------------------- undo


def test_undo_reverses_generations_edits_and_choices_newest_first(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    first = _reply(store, s.id, " upon")
    _reply(store, s.id, " a time", alternative_of=first.id)
    store.choose(first.id)
    edited = store.edit_turn(first.id, " upon!")
    store.add_turn(s.id, "user", " And")
    assert _texts(store, s.id) == ["Once", " upon!", " And"]
    assert store.undo(s.id) == "removed the prompt at turn 2"
    assert _texts(store, s.id) == ["Once", " upon!"]
    assert store.undo(s.id) == "removed the edit of turn 1"
    assert _texts(store, s.id) == ["Once", " upon"]  # back to what was chosen before
    with pytest.raises(StoreError):
        store.get_turn(edited.id)
    assert store.undo(s.id) == "chose again what turn 1 replaced"
    assert _texts(store, s.id) == ["Once", " a time"]
    assert store.undo(s.id) == "removed the alternative at turn 1"
    assert _texts(store, s.id) == ["Once", " upon"]
    assert store.undo(s.id) == "removed the reply at turn 1"
    assert store.undo(s.id) == "removed the prompt at turn 0"
    assert store.turns(s.id) == []
    with pytest.raises(StoreError, match="nothing to undo"):
        store.undo(s.id)
    check_tree(store, s.id)


def test_undo_of_an_alternative_goes_back_to_the_previous_sibling(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    first = _reply(store, s.id, " upon")
    store.add_turn(s.id, "user", " later")
    _reply(store, s.id, " a time", alternative_of=first.id)
    assert store.undo(s.id) == "removed the alternative at turn 1"
    assert _texts(store, s.id) == ["Once", " upon", " later"]
    assert store.turns(s.id)[1].alternatives == 1


def test_undo_never_removes_a_reply_still_being_written(store):
    s = store.create_session()
    writer = store.begin_turn(s.id, model="m")
    with pytest.raises(StoreError, match="still being written"):
        store.undo(s.id)
    writer.finish("cancelled")
    assert store.undo(s.id) == "removed the reply at turn 0"


def test_undo_keeps_a_bounded_history(store, monkeypatch):
    monkeypatch.setattr(core, "UNDO_LIMIT", 3)
    s = store.create_session()
    for i in range(6):
        store.add_turn(s.id, "user", f" {i}")
    for _ in range(3):
        store.undo(s.id)
    with pytest.raises(StoreError, match="nothing to undo"):
        store.undo(s.id)
    assert _texts(store, s.id) == [" 0", " 1", " 2"]


def test_delete_turn_in_a_tree(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    a = _reply(store, s.id, " a")
    b = _reply(store, s.id, " b", alternative_of=a.id)
    store.delete_turn(b.id)  # the chosen alternative: the other one is chosen again
    assert _texts(store, s.id) == ["Once", " a"]
    store.add_turn(s.id, "user", " c")
    _reply(store, s.id, " B", alternative_of=a.id)
    store.choose(a.id)
    with pytest.raises(StoreError, match="cannot be removed alone"):
        store.delete_turn(a.id)
    check_tree(store, s.id)


# ---------------------------------------------------------------- branches and memory


def test_branch_copies_the_chosen_path_up_to_a_turn(store):
    s = store.create_session(name="main")
    store.add_turn(s.id, "user", "Once", model="m", token_ids=[1])
    first = _reply(store, s.id, " upon")
    store.add_turn(s.id, "user", " then")
    _reply(store, s.id, " a time", alternative_of=first.id)
    store.choose(first.id)
    store.set_memory(s.id, "The hero is Ann.")
    store.remember_choice(s.id, model="m", preset="p")
    b = store.branch(s.id, 1, name="side")
    assert (b.branched_from, b.branched_at, b.name, b.memory) == (s.id, 1, "side",
                                                                  "The hero is Ann.")
    assert (b.model, b.preset, b.title) == ("m", "p", "Once")
    copied = store.turns(b.id)
    assert [(t.index, t.text) for t in copied] == [(0, "Once"), (1, " upon")]
    assert copied[0].token_ids == [1] and copied[1].alternatives == 1
    assert _texts(store, s.id) == ["Once", " upon", " then"]  # the source is unchanged
    with pytest.raises(StoreError, match="no turn at that position"):
        store.branch(s.id, 9)
    with pytest.raises(StoreError, match="already exists"):
        store.branch(s.id, 0, name="side")
    with pytest.raises(StoreError, match="nothing to undo"):
        store.undo(b.id)  # a branch starts with no history of its own
    check_tree(store, b.id)


def test_memory_is_set_and_cleared(store):
    s = store.create_session()
    assert store.get_session(s.id).memory == ""
    store.set_memory(s.id, "Pinned.")
    assert store.get_session(s.id).memory == "Pinned."
    store.set_memory(s.id, None)
    assert store.get_session(s.id).memory == ""
    with pytest.raises(StoreError, match="no session"):
        store.set_memory("nope", "x")
    with pytest.raises(StoreError, match="valid Unicode"):
        store.set_memory(s.id, "\udc80")


def test_markdown_shows_the_chosen_path_and_the_memory(store):
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    first = _reply(store, s.id, " upon a fox")
    _reply(store, s.id, " upon a hare", alternative_of=first.id)
    store.set_memory(s.id, "Keep it short.")
    md = store.export_markdown(s.id)
    assert "upon a hare" in md and "upon a fox" not in md
    assert "## m · p · seed 1 · reply 2/2" in md
    assert "Keep it short." in md


# ---------------------------------------------------------------- export and import


def _tree_session(store):
    s = store.create_session(name="tree")
    store.add_turn(s.id, "user", "Once", model="m", token_ids=[1])
    first = _reply(store, s.id, " upon")
    store.add_turn(s.id, "user", " then")
    _reply(store, s.id, " more")
    second = _reply(store, s.id, " a time", alternative_of=first.id)
    store.edit_turn(second.id, " a TIME")
    store.choose(first.id)
    store.set_memory(s.id, "Memory\nlines")
    return s


def test_json_round_trips_the_tree_and_the_memory_exactly(store):
    s = _tree_session(store)
    data = store.export_json(s.id)
    assert data["version"] == 2 and data["session"]["memory"] == "Memory\nlines"
    assert [t["parent"] for t in data["turns"]] == [None, 0, 0, 0, 1, 4]
    assert [t["chosen"] for t in data["turns"]] == [True, True, False, False, True, True]
    copy = store.import_json(data)
    assert copy.id != s.id
    again = store.export_json(copy.id)
    assert again["turns"] == data["turns"]
    assert {k: v for k, v in again["session"].items() if k not in ("id", "name")} == \
        {k: v for k, v in data["session"].items() if k not in ("id", "name")}
    assert _texts(store, copy.id) == _texts(store, s.id)
    assert [t.alternatives for t in store.turns(copy.id)] == [1, 3, 1, 1]
    check_tree(store, copy.id)
    with Store(store.path.with_name("other.db")) as other:  # into another file: all kept
        kept = other.import_json(data)
        assert kept.id == s.id and kept.name == "tree"
        assert other.export_json(s.id) == data


def test_a_version_1_export_still_imports_as_one_path(store):
    old = {"format": "gptterm-session", "version": 1,
           "session": {"id": "cccc3333", "title": "Old", "created": 1.7e9, "updated": 1.7e9},
           "turns": [{"role": "user", "text": "Hi", "index": 4},
                     {"role": "model", "text": " there", "model": "m"}]}
    s = store.import_json(old)
    turns = store.turns(s.id)
    assert [(t.index, t.text) for t in turns] == [(0, "Hi"), (1, " there")]
    assert turns[1].parent_id == turns[0].id and store.get_session(s.id).memory == ""
    check_tree(store, s.id)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["turns"][1].update(parent=1), "turns[1].parent: expected null or the place"),
    (lambda d: d["turns"][1].update(parent="0"), "turns[1].parent"),
    (lambda d: d["turns"][2].update(chosen=True),
     "exactly one chosen turn among those following turns[0]"),
    (lambda d: d["turns"][1].update(chosen="yes"), "turns[1].chosen: expected true or false"),
    (lambda d: d["turns"][1].update(index=0), "turns[1].index: expected an integer above"),
    (lambda d: d["session"].update(memory=3), "session.memory: expected a string"),
    (lambda d: d["session"].update(branched_at=-1), "session.branched_at"),
    (lambda d: d.update(version=3), "version: expected 1 or 2"),
])
def test_import_checks_the_tree(store, change, words):
    s = _tree_session(store)
    data = store.export_json(s.id)
    change(data)
    before = len(store.list_sessions())
    with pytest.raises(StoreError, match="^import: .*" + words.replace("[", r"\[").replace(
            "]", r"\]").replace(".", r"\.").replace("(", r"\(")):
        store.import_json(data)
    assert len(store.list_sessions()) == before  # nothing half imported


def test_chosen_left_out_means_the_newest(store):
    s = _tree_session(store)
    data = store.export_json(s.id)
    for t in data["turns"]:
        del t["chosen"]
    copy = store.import_json(data)
    assert _texts(store, copy.id) == ["Once", " a TIME"]
    check_tree(store, copy.id)


# ---------------------------------------------------------------- all or nothing


class FailingConnection:
    """A connection whose `k`-th statement inside a transaction fails, as a full disk or a
    crash would stop it there."""

    def __init__(self, conn, k):
        self.conn, self.k, self.n = conn, k, 0

    def execute(self, sql, params=()):
        if self.conn.in_transaction and sql not in ("COMMIT", "ROLLBACK"):
            self.n += 1
            if self.n == self.k:
                raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def _snapshot(store):
    return [[tuple(r) for r in store._conn.execute(f"SELECT * FROM {t} ORDER BY 1")]
            for t in ("sessions", "turns", "undo_steps")]


WRITES = {
    "alternative": lambda st, s, t: st.add_turn(s.id, "model", " x", alternative_of=t[1].id),
    "edit": lambda st, s, t: st.edit_turn(t[1].id, " edited"),
    "choose": lambda st, s, t: st.choose(st.alternatives(t[1].id)[-1].id),
    "undo a choice": lambda st, s, t: st.undo(s.id),
    "undo an edit": lambda st, s, t: st.undo(s.id),
    "branch": lambda st, s, t: st.branch(s.id, 1, name="b"),
    "memory": lambda st, s, t: st.set_memory(s.id, "m"),
    "import": lambda st, s, t: st.import_json(st.export_json(s.id)),
    "delete": lambda st, s, t: st.delete_turn(st.alternatives(t[1].id)[-1].id),
    "append": lambda st, s, t: st.add_turn(s.id, "user", " y"),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_is_all_or_nothing(tmp_path, write):
    """The write fails at each of its statements in turn: the file is as before each time."""
    for k in range(1, 60):
        db = tmp_path / f"{k}.db"
        store = Store(db)
        s = _tree_session(store)
        store.choose(store.alternatives(store.turns(s.id)[1].id)[1].id)  # so undo has a choice
        if write == "undo an edit":
            store.edit_turn(store.turns(s.id)[1].id, " edited")
        turns = store.turns(s.id)
        before = _snapshot(store)
        real = store.db.conn
        store.db.conn = FailingConnection(real, k)
        try:
            WRITES[write](store, s, turns)
        except StoreError as exc:
            assert "disk I/O error" in str(exc) and "\n" not in str(exc)
            store.db.conn = real
            assert _snapshot(store) == before, f"statement {k} left a half write"
            store.close()
            continue
        store.db.conn = real
        assert _snapshot(store) != before  # it ran whole: every statement was tried
        for session in store.list_sessions():
            check_tree(store, session.id)
        store.close()
        assert k > 1
        return
    pytest.fail("the write never finished")


# ---------------------------------------------------------------- any tree a file may hold

_PARENT = st.one_of(st.none(), st.integers(-2, 8), st.sampled_from(["0", 1.0, True]))
_CHOSEN = st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, "yes"]))
_INDEX = st.one_of(st.none(), st.integers(-1, 12), st.sampled_from([True, 2**40]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_PARENT, _CHOSEN, _INDEX, st.sampled_from(["user", "model"])),
                max_size=8))
def test_any_tree_in_a_file_imports_whole_or_is_one_line(store, shape):
    turns = []
    for i, (parent, chosen, index, role) in enumerate(shape):
        turn = {"role": role, "text": f" t{i}", "parent": parent}
        if chosen is not None:
            turn["chosen"] = chosen
        if index is not None:
            turn["index"] = index
        turns.append(turn)
    data = {"format": "gptterm-session", "version": 2,
            "session": {"id": "dddd4444", "created": 1.7e9, "updated": 1.7e9}, "turns": turns}
    before = len(store.list_sessions())
    try:
        session = store.import_json(data)
    except StoreError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("import: turns[")
        assert len(store.list_sessions()) == before
        return
    check_tree(store, session.id)
    exported = store.export_json(session.id)
    again = store.import_json(exported)
    assert store.export_json(again.id)["turns"] == exported["turns"]
