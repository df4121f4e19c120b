"""The store survives: corrupt files, old schemas, concurrent writers, a killed writer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gptterm.store import Store, schema

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# ---------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("content", [b"this is not a database at all\n" * 50, b"\x00" * 5000],
                         ids=["text", "zeros"])
def test_garbage_file_is_moved_aside_and_a_fresh_db_made(tmp_path, content):
    db = tmp_path / "sessions.db"
    db.write_bytes(content)
    store = Store(db)
    assert store.recovered_from is not None
    assert store.recovered_from.parent == tmp_path
    assert store.recovered_from.name.startswith("sessions.db.corrupt-")
    assert store.recovered_from.read_bytes() == content  # kept, never deleted
    msg = store.recovery_message
    assert "\n" not in msg and str(store.recovered_from) in msg
    s = store.create_session()
    store.add_turn(s.id, "user", "works again")
    assert store.search("works")[0][0].id == s.id
    store.close()
    # A second recovery the same second does not overwrite the first copy.
    db.write_bytes(content)
    again = Store(db)
    assert again.recovered_from != store.recovered_from and again.recovered_from.exists()
    again.close()


def test_damaged_pages_are_detected(tmp_path):
    db = tmp_path / "sessions.db"
    store = Store(db)
    s = store.create_session()
    for i in range(300):
        store.add_turn(s.id, "user", f"line {i} " * 20)
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    raw = bytearray(db.read_bytes())
    page = 4096
    raw[page * 2: page * 6] = os.urandom(page * 4)  # scribble over some pages
    db.write_bytes(bytes(raw))
    fresh = Store(db)
    assert fresh.recovered_from is not None
    assert fresh.list_sessions() == []
    fresh.close()


def test_healthy_file_is_not_moved(tmp_path):
    db = tmp_path / "sessions.db"
    Store(db).close()
    store = Store(db)
    assert store.recovered_from is None and store.recovery_message == ""
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    store.close()


def test_newer_schema_is_refused_not_moved(tmp_path):
    from gptterm.store import StoreError

    db = tmp_path / "sessions.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer gptterm"):
        Store(db)
    assert db.exists()


# ---------------------------------------------------------------- migrations


def _old_db(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    schema.apply(conn, target=version)
    assert schema.version(conn) == version
    return conn


def _fill_v1_columns(conn: sqlite3.Connection, version: int) -> None:
    """Rows as any version from 1 up stores them, with the slips v3 cleans up (before v3)."""
    conn.execute("INSERT INTO sessions(id, title, name, created, updated)"
                 " VALUES ('aaaa1111', 'Lighthouse', 'sea', 1.0, 5.0)")
    slips = version < 3
    conn.execute("INSERT INTO sessions(id, title, name, created, updated)"
                 " VALUES ('bbbb2222', '', ?, 2.0, 3.0)",
                 ("sea" if slips else None,))  # same name
    rows = [
        ("aaaa1111", 0, "user", "The keeper climbed", None, None, None, "[]", "[]"),
        ("aaaa1111", 1, "model", " the spiral stairs", "tiny", '{"method": "greedy"}', 3,
         "[5, 6, 7]", '[[0.1, " the"], [0.2, " spiral stairs"]]'),
        ("aaaa1111", 1 if slips else 2, "user", " again", None, None, None, "[]", "[]"),
    ]
    for r in rows:
        conn.execute("INSERT INTO turns(session_id, idx, role, text, model, preset, seed,"
                     " token_ids, chunks, status, stats, created)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'complete', '{}', 1.5)", r)


@pytest.mark.parametrize("version", range(1, schema.SCHEMA_VERSION))
def test_migrates_from_every_older_version(tmp_path, version):
    db = tmp_path / "sessions.db"
    conn = _old_db(db, version)
    _fill_v1_columns(conn, version)
    conn.close()
    store = Store(db)
    assert store.recovered_from is None
    assert schema.version(store._conn) == schema.SCHEMA_VERSION
    a = store.find_session("sea")
    assert a.id == "aaaa1111" and store.find_session("Lighthouse").id == a.id
    turns = store.turns(a.id)
    assert [t.index for t in turns] == [0, 1, 2]
    assert turns[1].token_ids == [5, 6, 7] and turns[1].chunks[1] == [0.2, " spiral stairs"]
    assert store.context_text(a.id) == "The keeper climbed the spiral stairs again"
    assert [h[1].index for h in store.search("spiral")] == [1]  # index built for old rows
    # New writes work under the new constraints.
    store.add_turn(a.id, "user", " once more")
    assert store.turns(a.id)[-1].index == 3
    store.close()


def test_fresh_file_runs_every_migration(tmp_path):
    conn = _old_db(tmp_path / "x.db", 0)
    conn.close()
    store = Store(tmp_path / "x.db")
    assert schema.version(store._conn) == schema.SCHEMA_VERSION
    store.close()


# ---------------------------------------------------------------- two writers

_WRITER = """
import sys, time
from pathlib import Path
from gptterm.store import Store
db, who, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.005)
store = Store(db)
shared = store.find_session("shared")
mine = store.create_session(name=who)
for i in range(60):
    store.add_turn(shared.id, "user", f"{who} says {i}")
    w = store.begin_turn(mine.id, model="m", seed=i)
    w.append(f"{who} reply {i}", [i])
    w.finish("complete")
print("ok")
"""


@pytest.mark.slow
def test_two_processes_writing_at_once_both_succeed(tmp_path):
    db = tmp_path / "sessions.db"
    store = Store(db)
    shared = store.create_session(name="shared")
    start = time.time() + 1.0
    procs = [_python(_WRITER, str(db), who, str(start)) for who in ("alpha", "beta")]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    turns = store.turns(shared.id)
    assert [t.index for t in turns] == list(range(120))
    for who in ("alpha", "beta"):
        assert sorted(t.text for t in turns if t.text.startswith(who)) == sorted(
            f"{who} says {i}" for i in range(60))
        mine = store.turns(store.find_session(who).id)
        assert [t.text for t in mine] == [f"{who} reply {i}" for i in range(60)]
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


_OPENER = """
import sys, time
from pathlib import Path
from gptterm.store import Store
db, who, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.002)
store = Store(db)
s = store.create_session(name=who)
store.add_turn(s.id, "user", who)
print(store.recovered_from)
"""


@pytest.mark.slow
def test_processes_creating_a_new_file_at_once_all_succeed(tmp_path):
    db = tmp_path / "new" / "sessions.db"
    start = time.time() + 1.0
    procs = [_python(_OPENER, str(db), f"p{i}", str(start)) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.strip() == "None"  # nobody mistook a busy file for a broken one
    store = Store(db)
    assert sorted(s.name for s in store.list_sessions()) == ["p0", "p1", "p2", "p3"]
    assert schema.version(store._conn) == schema.SCHEMA_VERSION
    store.close()


# ---------------------------------------------------------------- kill -9

_STREAMER = """
import sys, time
from pathlib import Path
from gptterm.store import Store
store = Store(Path(sys.argv[1]))
s = store.create_session(name="crash")
store.add_turn(s.id, "user", "Earlier prompt.")
w = store.begin_turn(s.id, model="m", seed=1)
w.append(" Earlier reply.", [1])
w.finish("complete")
store.add_turn(s.id, "user", " Go on:")
w = store.begin_turn(s.id, model="m", seed=2)
i = 0
while True:
    piece = f" w{i}"
    w.append(piece, [i])
    print(f"{time.monotonic():.4f}{piece}", flush=True)
    i += 1
    time.sleep(0.15 if i % 10 else 1.3)  # sometimes a long pause between tokens
"""


@pytest.mark.slow
def test_killed_writer_loses_at_most_a_second(tmp_path):
    db = tmp_path / "sessions.db"
    proc = _python(_STREAMER, str(db))
    received: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            stamp, _, piece = line.rstrip("\n").partition(" ")
            received.append((float(stamp), " " + piece))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while len(received) < 25 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.7)  # kill somewhere inside a stretch of tokens
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    reader.join(timeout=5)
    assert len(received) >= 25, proc.stderr.read()

    store = Store(db)
    assert store.recovered_from is None
    s = store.find_session("crash")
    turns = store.turns(s.id)
    assert [t.text for t in turns[:3]] == ["Earlier prompt.", " Earlier reply.", " Go on:"]
    assert [t.status for t in turns[:3]] == ["complete", "complete", "complete"]
    partial = turns[3]
    assert partial.status == "interrupted" and store.interrupted == 1  # its writer died
    streamed = "".join(p for _, p in received)
    assert streamed.startswith(partial.text)
    must_have = "".join(p for t, p in received if t <= killed_at - 1.0)
    assert partial.text.startswith(must_have) and len(partial.text) >= len(must_have)
    assert partial.token_ids == list(range(len(partial.chunks)))
    store.close()
