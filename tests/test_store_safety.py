"""The store keeps the user's data safe: what opening moves aside, what it refuses, how
write failures and hostile imports end (one line, nothing lost), file modes, search."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gptterm import paths
from gptterm.cli import main
from gptterm.store import Store, StoreError, schema

ROOT = Path(__file__).resolve().parent.parent
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # never on stdout (\t, \n are fine)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("gptterm: ") and err.count("\n") == 1, err
    return err


def _made_db(path: Path) -> bytes:
    store = Store(path)
    s = store.create_session(name="keep")
    store.add_turn(s.id, "user", "precious words")
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path.read_bytes()


# ---------------------------------------------------------------- 1. opening errors


def _failing_connect(name: str, message: str):
    def connect(*args, **kwargs):
        exc = sqlite3.OperationalError(message)
        exc.sqlite_errorname = name
        exc.sqlite_errorcode = 0
        raise exc
    return connect


@pytest.mark.parametrize("name, message, words", [
    ("SQLITE_IOERR_SHMSIZE", "disk I/O error", "disk is full"),
    ("SQLITE_FULL", "database or disk is full", "disk is full"),
    ("SQLITE_CANTOPEN", "unable to open database file", "unable to open"),
    ("SQLITE_PERM", "access permission denied", "permission denied"),
    ("SQLITE_READONLY", "attempt to write a readonly database", "read-only"),
    ("SQLITE_IOERR_READ", "disk I/O error", "disk I/O error"),
])
def test_open_failure_that_is_not_damage_moves_nothing(tmp_path, monkeypatch, name, message,
                                                       words):
    db = tmp_path / "sessions.db"
    before = _made_db(db)
    monkeypatch.setattr(sqlite3, "connect", _failing_connect(name, message))
    with pytest.raises(StoreError) as caught:
        Store(db)
    line = str(caught.value)
    assert "\n" not in line and str(db) in line and words in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions.db"]
    assert db.read_bytes() == before


def test_cli_says_one_line_when_the_disk_is_full_at_open(monkeypatch, capsys):
    db = paths.data_dir() / "sessions.db"
    before = _made_db(db)
    monkeypatch.setattr(sqlite3, "connect", _failing_connect("SQLITE_FULL", "disk full"))
    assert main(["sessions", "list"]) == 2
    assert "disk is full" in _one_line_error(capsys)
    assert db.read_bytes() == before and not list(db.parent.glob("*corrupt*"))


# ---------------------------------------------------------------- 9. files that do not fit


def test_data_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "data-file"
    blocker.write_text("mine")
    monkeypatch.setenv("GPTTERM_DATA_DIR", str(blocker))
    assert main(["sessions", "list"]) == 2
    assert "is a file, not a folder" in _one_line_error(capsys)
    assert blocker.read_text() == "mine"
    with pytest.raises(StoreError, match="is a file"):
        Store(blocker / "sessions.db")


@pytest.mark.parametrize("version, keep", [
    (schema.SCHEMA_VERSION, ["sessions"]),  # says it is current, lacks turns
    (1, ["sessions"]),  # an old version that lacks a table its migrations need
    (0, ["sessions", "turns"]),  # tables, but no version at all
])
def test_tables_that_do_not_match_the_version_are_refused_untouched(capsys, version, keep):
    db = paths.data_dir() / "sessions.db"
    conn = sqlite3.connect(db, isolation_level=None)
    schema.apply(conn, target=1)
    for table in ("turns", "sessions"):
        if table not in keep:
            conn.execute(f"DROP TABLE {table}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    before = db.read_bytes()
    assert main(["sessions", "list"]) == 2
    err = _one_line_error(capsys)
    assert "tables do not match" in err and str(db) in err
    assert db.read_bytes() == before and not list(db.parent.glob("*corrupt*"))


# ---------------------------------------------------------------- 8. failures after open


def test_disk_full_while_streaming_is_one_line_and_nothing_is_lost(tmp_path):
    store = Store(tmp_path / "sessions.db", flush_interval=0.01)
    s = store.create_session()
    writer = store.begin_turn(s.id, model="m")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
    for i in range(200):
        writer.append(f" word{i}" * 50, [i])  # keeps streaming while writes fail
        time.sleep(0.001)
    deadline = time.monotonic() + 10
    while writer.error is None and time.monotonic() < deadline:
        writer.append(" more")
        time.sleep(0.02)
    assert writer.error and "\n" not in writer.error and "disk is full" in writer.error
    with pytest.raises(StoreError, match="disk is full") as caught:
        writer.finish("complete")
    assert "\n" not in str(caught.value)
    assert store.turns(s.id)[-1].status == "partial"  # the last good write stands
    store._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    writer.flush()
    turn = store.turns(s.id)[-1]
    assert turn.status == "complete" and turn.text == writer.text and "word199" in turn.text
    store.close()


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def _short_busy_timeout(monkeypatch) -> None:
    import gptterm.store.core as core

    monkeypatch.setattr(core, "BUSY_TIMEOUT_S", 0.2, raising=False)
    try:
        import gptterm.store.opening as opening
    except ImportError:
        return
    monkeypatch.setattr(opening, "BUSY_TIMEOUT_S", 0.2)


def test_lock_held_past_the_busy_timeout_is_one_line(tmp_path, monkeypatch, capsys):
    _short_busy_timeout(monkeypatch)
    db = paths.data_dir() / "sessions.db"
    store = Store(db)
    s = store.create_session(name="busy")
    other = _hold_write_lock(db)
    with pytest.raises(StoreError, match="locked") as caught:
        store.add_turn(s.id, "user", "waits")
    assert "\n" not in str(caught.value)
    assert main(["sessions", "rename", "busy", "New title"]) == 2
    assert "locked" in _one_line_error(capsys)
    other.execute("ROLLBACK")
    other.close()
    store.add_turn(s.id, "user", "goes through now")
    assert [t.text for t in store.turns(s.id)] == ["goes through now"]
    store.close()


def test_read_only_database_is_one_line(tmp_path):
    store = Store(tmp_path / "sessions.db")
    s = store.create_session()
    store._conn.execute("PRAGMA query_only = ON")  # SQLite now refuses writes: SQLITE_READONLY
    with pytest.raises(StoreError, match="read-only") as caught:
        store.add_turn(s.id, "user", "x")
    assert "\n" not in str(caught.value)
    writer_error = None
    store._conn.execute("PRAGMA query_only = OFF")
    writer = store.begin_turn(s.id)
    store._conn.execute("PRAGMA query_only = ON")
    try:
        writer.append("text")
        writer.finish("complete")
    except StoreError as exc:
        writer_error = str(exc)
    assert writer_error and "read-only" in writer_error
    store.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partial_turn_of_a_dead_writer_becomes_interrupted_on_open(tmp_path):
    import socket

    db = tmp_path / "sessions.db"
    store = Store(db)
    s = store.create_session()
    live = store.begin_turn(s.id)  # this process: still alive, stays partial
    live.append("still going")
    live.flush()
    ids = {}
    host = socket.gethostname()
    old = time.time() - 7200
    for key, writer, created in [("dead", f"{host}:{_dead_pid()}", time.time()),
                                 ("unknown_old", None, old),
                                 ("unknown_new", None, time.time()),
                                 ("other_host_old", "elsewhere:1", old)]:
        turn = store.add_turn(s.id, "model", key, status="partial", created=created)
        store._conn.execute("UPDATE turns SET writer = ? WHERE id = ?", (writer, turn.id))
        ids[key] = turn.id
    again = Store(db)  # while this process still streams `live`
    status = {t.text: t.status for t in again.turns(s.id)}
    assert status == {"still going": "partial", "dead": "interrupted",
                      "unknown_old": "interrupted", "unknown_new": "partial",
                      "other_host_old": "interrupted"}
    assert again.interrupted == 3
    live.finish("complete")
    assert again.get_turn(live.turn_id).status == "complete"
    again.close()
    store.close()


def _gptterm(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "gptterm", *args], env=env,
                            stderr=subprocess.PIPE, **kw)


def _big_session() -> str:
    store = Store()
    s = store.create_session(name="big")
    store.add_turn(s.id, "user", "lorem ipsum dolor\n" * 40000)  # 720 kB: more than a pipe holds
    store.close()
    return s.id


@pytest.mark.parametrize("argv", [["sessions", "show", "big"], ["sessions", "export", "big"],
                                  ["replay", "big", "--speed", "1000"]])
def test_closed_pipe_ends_quietly(argv):
    _big_session()
    proc = _gptterm(*argv, stdout=subprocess.PIPE)
    assert proc.stdout.read(100)
    proc.stdout.close()  # like `| head -c 100`
    _, err = proc.communicate(timeout=60)
    # Quiet. (One big write cut short by the reader is a partial write CPython does not
    # report, so `export` may also end 0.)
    assert err == b"" and proc.returncode in (0, 141)
    if argv[1] == "show":
        assert proc.returncode == 141


@pytest.mark.parametrize("argv", [["sessions", "show", "big"], ["sessions", "list"],
                                  ["sessions", "export", "big", "--format", "json"]])
def test_full_stdout_is_one_line(argv):
    _big_session()
    with open("/dev/full", "w") as full:
        proc = _gptterm(*argv, stdout=full)
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 2 and text.count("\n") == 1, text
    assert text.startswith("gptterm: stdout: cannot write: No space left on device")


# ---------------------------------------------------------------- 4. export -o


class _FullFile:
    """A file whose writes fail as on a full disk."""

    def __init__(self, real):
        self._real = real

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()


def test_export_to_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    store = Store()
    s = store.create_session(name="sea")
    store.add_turn(s.id, "user", "new text")
    store.close()
    target = tmp_path / "out.md"
    target.write_text("the previous export\n")
    target.chmod(0o640)
    real_open = io.open

    def full_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return _FullFile(f) if "w" in mode and Path(str(file)).name != "sessions.db" else f

    monkeypatch.setattr(io, "open", full_open)
    assert main(["sessions", "export", "sea", "-o", str(target)]) == 2
    assert "No space left on device" in _one_line_error(capsys)
    monkeypatch.undo()
    assert target.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data" and p.name != "config") \
        == ["out.md"]  # no temporary file left behind
    monkeypatch.setenv("GPTTERM_DATA_DIR", str(tmp_path / "data"))
    assert main(["sessions", "export", "sea", "-o", str(target)]) == 0
    assert "new text" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the old file's mode is kept


# ---------------------------------------------------------------- 5. ids and names


def _export(session_id="aaaa1111", name=None, title="Imported", turns=None, **session):
    return {"format": "gptterm-session", "version": 1,
            "session": {"id": session_id, "title": title, "name": name, "created": 1.7e9,
                        "updated": 1.7e9, **session},
            "turns": turns if turns is not None else [{"role": "user", "text": "hello"}]}


def test_import_cannot_take_over_a_name_or_id(tmp_path):
    store = Store(tmp_path / "s.db")
    sea = store.create_session(name="sea")
    store.add_turn(sea.id, "user", "mine")
    taken_by_id = store.import_json(_export(session_id="sea"))
    assert taken_by_id.id != "sea" and store.find_session("sea").id == sea.id
    by_name = store.import_json(_export(name=sea.id))  # a name that is another session's id
    assert by_name.name is None and store.find_session(sea.id).id == sea.id
    same_id = store.import_json(_export(session_id=sea.id))
    assert same_id.id != sea.id and store.find_session(sea.id).id == sea.id
    for odd in ("x", "AAAA1111", "aaaa11111", "../../etc"):
        assert re.fullmatch("[0-9a-f]{8}", store.import_json(_export(session_id=odd)).id)
    assert [t.text for t in store.turns(sea.id)] == ["mine"]
    store.close()


def test_names_that_look_like_ids_are_refused(tmp_path, capsys):
    store = Store(tmp_path / "s.db")
    s = store.create_session(name="sea")
    for bad in ("deadbeef", "", "  "):
        with pytest.raises(StoreError):
            store.create_session(name=bad)
    with pytest.raises(StoreError, match="form of a session id"):
        store.rename_session(s.id, "0123abcd")
    store.close()
    Store().create_session(name="sea").id  # noqa: B018 (the CLI's store)
    assert main(["sessions", "rename", "sea", "cafebabe"]) == 2
    assert "form of a session id" in _one_line_error(capsys)


# ---------------------------------------------------------------- 6. hostile text


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\x9d52;c;aGk=\x07\u202e\x85end"


def _hostile_file(tmp_path: Path) -> Path:
    data = _export(
        session_id="ab\x1b[31mcd", name="n" + HOSTILE, title="lighthouse " + HOSTILE,
        turns=[{"role": "user", "text": "lighthouse keeper " + HOSTILE},
               {"role": "model", "text": " reply " + HOSTILE, "model": "m" + HOSTILE,
                "preset": {"name": "p" + HOSTILE, "method": "sample" + HOSTILE},
                "seed": 3, "status": "cancelled", "stats": {"reason": HOSTILE, "n_tokens": 2},
                "chunks": [[0.0, " reply "], [0.01, HOSTILE]]}])
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    return path


def _clean(out: str) -> None:
    bad = RAW_CONTROL.findall(out)
    assert not bad, f"raw control characters reached stdout: {bad!r}"


def test_hostile_imported_session_never_reaches_the_terminal_raw(tmp_path, capsys):
    path = _hostile_file(tmp_path)
    assert main(["sessions", "import", str(path)]) == 0
    out = capsys.readouterr().out
    _clean(out)
    new_id = out.split()[1].rstrip(":")
    outputs = {}
    for argv in (["sessions", "list"], ["sessions", "list", "--json"],
                 ["sessions", "show", new_id], ["sessions", "search", "lighthouse"],
                 ["sessions", "search", "lighthouse", "--json"],
                 ["sessions", "export", new_id], ["sessions", "export", new_id, "--format", "json"],
                 ["replay", new_id, "--speed", "1000"],
                 ["sessions", "rename", new_id, "t" + HOSTILE],
                 ["sessions", "delete", new_id]):
        assert main(argv) == 0, argv
        outputs[" ".join(argv[:3])] = out = capsys.readouterr().out
        _clean(out)
    assert "␛]0;owned␇" in outputs["sessions show " + new_id]  # shown, visibly
    exported = json.loads(outputs["sessions export " + new_id])
    assert exported["turns"][0]["text"].endswith(HOSTILE)  # stored as it was: round-trips


def test_markdown_export_file_is_inert(tmp_path, capsys):
    main(["sessions", "import", str(_hostile_file(tmp_path))])
    new_id = capsys.readouterr().out.split()[1].rstrip(":")
    out = tmp_path / "h.md"
    assert main(["sessions", "export", new_id, "-o", str(out)]) == 0
    md = out.read_text()
    _clean(md)
    assert "-->" not in md.split("<!-- preset:")[1].split("\n")[0][:-3]


# ---------------------------------------------------------------- 7. import validation


@pytest.mark.parametrize("change, field", [
    ({"session": {"id": "aaaa1111", "created": float("inf")}}, "session.created"),
    ({"session": {"id": "aaaa1111", "updated": 1e300}}, "session.updated"),
    ({"session": {"id": "aaaa1111", "created": float("nan")}}, "session.created"),
    ({"session": {"id": "aaaa1111", "title": "x\ud800"}}, "session.title"),
    ({"turns": [{"role": "user", "text": "x", "stats": {"seconds": "fast"}}]}, None),
    ({"turns": [{"role": "user", "text": "x", "stats": {"seconds": float("inf")}}]},
     "turns[0].stats"),
    ({"turns": [{"role": "user", "text": "x", "stats": {"nested": {"a": 1}}}]}, "turns[0].stats"),
    ({"turns": [{"role": "model", "text": "x", "chunks": [[1e9, "x"]]}]}, "turns[0].chunks"),
    ({"turns": [{"role": "model", "text": "x", "chunks": [[0.5, "x"], [0.1, "y"]]}]},
     "turns[0].chunks"),
    ({"turns": [{"role": "model", "text": "x", "chunks": [[float("nan"), "x"]]}]},
     "turns[0].chunks"),
    ({"turns": [{"role": "model", "text": "x", "seed": 2**64}]}, "turns[0].seed"),
    ({"turns": [{"role": "model", "text": "x", "seed": -1}]}, "turns[0].seed"),
    ({"turns": [{"role": "model", "text": "x", "token_ids": [2**70]}]}, "turns[0].token_ids"),
    ({"turns": [{"role": "user", "text": "a\udc80b"}]}, "turns[0].text"),
    ({"turns": [{"role": "user", "text": "x", "created": -5}]}, "turns[0].created"),
    ({"turns": [{"role": "model", "text": "x", "preset": {"top_k": [[1]]}}]}, "turns[0].preset"),
])
def test_import_checks_every_field_with_ranges(tmp_path, change, field):
    store = Store(tmp_path / "s.db")
    keep = store.create_session(name="keep")
    store.add_turn(keep.id, "user", "untouched")
    before = store.export_json(keep.id)
    data = _export()
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    if field is None:  # a string where a number is usual is still a JSON scalar: kept
        session = store.import_json(data)
        assert store.turns(session.id)[0].stats == {"seconds": "fast"}
    else:
        with pytest.raises(StoreError) as caught:
            store.import_json(data)
        line = str(caught.value)
        assert "\n" not in line and f"import: {field}: expected" in line
    assert store.export_json(keep.id) == before
    assert len(store.list_sessions()) == (2 if field is None else 1)
    store.close()


@pytest.mark.parametrize("raw, words", [
    ('{"format": "gptterm-session", "version": 1, "session": {"id": "a", "created": NaN}}',
     "NaN is not a number"),
    ('{"session": {"created": Infinity}}', "Infinity is not a number"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"seed": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"format": "gptterm-session", "version": 1, "session": {"id": "aaaa1111"}, "turns": '
     '[{"role": "model", "text": "x", "seed": ' + "9" * 40 + "}]}", "turns[0].seed"),
    ('{"format": "gptterm-session", "version": 1, "session": {"id": "aaaa1111", '
     '"title": "\\ud800"}}', "session.title"),
], ids=["nan", "infinity", "deep", "long-int", "huge-seed", "surrogate"])
def test_cli_import_of_hostile_json_is_one_line(tmp_path, capsys, raw, words):
    path = tmp_path / "x.json"
    path.write_text(raw)
    assert main(["sessions", "import", str(path)]) == 2
    assert words in _one_line_error(capsys)


def _damage_rows(db: Path) -> None:
    """Values no import lets in, written straight into the file (an older gptterm, a bug)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE sessions SET updated = 1e308 * 10, created = 'soon', title = 7")
    conn.execute("UPDATE turns SET stats = '{\"seconds\": \"x\", \"n_tokens\": \"many\"}',"
                 " chunks = '[[1e9, \"slow\"], [\"bad\"]]', token_ids = 'nonsense',"
                 " preset = '[1, 2]', status = 'weird', seed = 'abc'")
    conn.close()


def test_bad_stored_rows_show_placeholders_not_tracebacks(capsys):
    store = Store()
    s = store.create_session(name="bad")
    store.add_turn(s.id, "user", "Once upon")
    w = store.begin_turn(s.id, model="m", preset={"name": "warm"}, seed=2)
    w.append(" a time", [1])
    w.finish("complete", {"n_tokens": 1, "seconds": 0.5})
    store.close()
    _damage_rows(paths.data_dir() / "sessions.db")
    for argv, needle in ((["sessions", "list"], "bad"), (["sessions", "list", "--json"], "bad"),
                         (["sessions", "show", "bad"], "a time"),
                         (["sessions", "export", "bad"], "a time"),
                         (["sessions", "export", "bad", "--format", "json"], "a time"),
                         (["sessions", "search", "upon"], "Once [upon]"),
                         (["replay", "bad", "--speed", "1000"], "Once upon a time")):
        assert main(argv) == 0, argv
        assert needle in capsys.readouterr().out, argv
    assert main(["sessions", "list"]) == 0
    assert " ? " in capsys.readouterr().out  # the unreadable time


def test_replay_never_waits_long_whatever_is_stored(monkeypatch, capsys):
    store = Store()
    s = store.create_session(name="slow")
    w = store.begin_turn(s.id, model="m")
    w.append("a", at=0.0)
    w.append("b", at=1e9)  # a stored gap of 30 years
    w.append("c", at=1e9 + 0.5)
    w.finish("complete")
    store.close()
    waits: list[float] = []
    now = [time.monotonic()]

    def sleep(seconds: float) -> None:  # a clock that moves only when playback sleeps
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    result = []
    runner = threading.Thread(target=lambda: result.append(main(["replay", "slow"])),
                              daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert result == [0] and "abc" in capsys.readouterr().out
    assert waits and max(waits) <= 5.0 and sum(waits) <= 6.0  # 5 s, then the 0.5 s gap


# ---------------------------------------------------------------- 11. search


def test_search_with_a_thousand_words(tmp_path):
    store = Store(tmp_path / "s.db")
    s = store.create_session()
    words = [f"w{i}" for i in range(1200)]
    store.add_turn(s.id, "user", " ".join(words))
    store.add_turn(s.id, "user", " ".join(words[:600]))
    assert [h[1].index for h in store.search(" ".join(words))] == [0]
    assert [h[1].index for h in store.search(" ".join(["w1"] * 1500))] == [0, 1]
    assert store.search(" ".join(f"x{i}" for i in range(1200))) == []
    assert store.search(" ".join(f"한{i}" for i in range(1200))) == []
    store.close()


def test_damaged_search_index_is_rebuilt(tmp_path):
    db = tmp_path / "s.db"
    store = Store(db)
    s = store.create_session()
    for i in range(50):
        store.add_turn(s.id, "user", f"harbour lights number {i} " * 30)
    store._conn.execute("UPDATE turns_fts_data SET block = randomblob(length(block))"
                        " WHERE id > 10")
    assert len(store.search("harbour")) == 50
    assert store._conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    store.close()
    reopened = Store(db)
    assert reopened.recovered_from is None and len(reopened.search("lights")) == 50
    reopened.close()


# ---------------------------------------------------------------- 12. file modes


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_data_dir_and_database_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTTERM_DATA_DIR", str(tmp_path / "fresh" / "gptterm"))
    old = os.umask(0o022)
    try:
        store = Store()
        s = store.create_session()
        store.add_turn(s.id, "user", "secret")
        folder = store.path.parent
        assert _mode(folder) == 0o700 and _mode(store.path) == 0o600
        for suffix in ("-wal", "-shm"):
            side = store.path.with_name(store.path.name + suffix)
            assert side.exists() and _mode(side) == 0o600
        store.close()
    finally:
        os.umask(old)


def test_existing_files_are_tightened_but_a_chosen_folder_is_not(tmp_path, monkeypatch):
    chosen = tmp_path / "shared"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    db = chosen / "sessions.db"
    _made_db(db)
    db.chmod(0o644)
    monkeypatch.setenv("GPTTERM_DATA_DIR", str(chosen))
    Store().close()
    assert _mode(chosen) == 0o755 and _mode(db) == 0o600


def test_our_own_default_data_dir_is_tightened(tmp_path, monkeypatch):
    own = tmp_path / "platform" / "gptterm"
    own.mkdir(parents=True)
    own.chmod(0o755)
    monkeypatch.delenv("GPTTERM_DATA_DIR")
    monkeypatch.setattr(paths.platformdirs, "user_data_dir", lambda app: str(own))
    Store().close()
    assert _mode(own) == 0o700


# ---------------------------------------------------------------- the shared helper


def test_first_line():
    from gptterm.errors import first_line

    assert first_line(RuntimeError("\n  first\nsecond")) == "first"
    assert first_line(KeyError()) == "KeyError"


def test_arguments_that_are_not_valid_unicode_are_one_line(capsys):
    store = Store()
    store.create_session(name="sea")
    store.close()
    bad = b"\xff".decode("utf-8", "surrogateescape")  # what a non-UTF-8 argv byte becomes
    for argv in (["sessions", "show", bad], ["sessions", "search", bad],
                 ["sessions", "rename", "sea", bad]):
        assert main(argv) == 2, argv
        _one_line_error(capsys)
