"""The session store: sessions and turns in SQLite, with autosave of streaming turns.

`Store` opens (or creates, or recovers) `sessions.db`; `TurnWriter` records one
model turn while it streams and writes it to disk at least every `flush_interval`
seconds, so a crash loses at most that much text. Every write is one short
transaction, and the connection waits on a busy database instead of failing, so
several gptterm processes can share one file.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from gptterm.store import schema

ROLES = ("user", "model")
STATUSES = ("complete", "partial", "cancelled", "failed")
FINAL_STATUSES = ("complete", "cancelled", "failed")
BUSY_TIMEOUT_S = 30.0
FLUSH_INTERVAL_S = 0.5
TITLE_CHARS = 60

# SQLite result codes that mean the file itself is bad (not merely busy).
_BAD_FILE = {"SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CANTOPEN", "SQLITE_PERM"}


class StoreError(Exception):
    """A session store problem, as one line for the user."""


@dataclass
class Session:
    id: str
    title: str
    name: str | None
    created: float
    updated: float

    @property
    def label(self) -> str:
        """What to show for this session: its title, else its name, else its id."""
        return self.title or self.name or self.id


@dataclass
class Turn:
    id: int
    session_id: str
    index: int
    role: str
    text: str
    model: str | None = None
    preset: dict | None = None
    seed: int | None = None
    token_ids: list[int] = field(default_factory=list)
    chunks: list[list] = field(default_factory=list)
    status: str = "complete"
    stats: dict = field(default_factory=dict)
    created: float = 0.0


def title_from(text: str) -> str:
    """A session title from a prompt: its first non-empty line, shortened."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
    return ""


def _new_id() -> str:
    return secrets.token_hex(4)


def _session(row: sqlite3.Row) -> Session:
    return Session(row["id"], row["title"], row["name"], row["created"], row["updated"])


def _turn(row: sqlite3.Row) -> Turn:
    return Turn(
        id=row["id"], session_id=row["session_id"], index=row["idx"], role=row["role"],
        text=row["text"], model=row["model"],
        preset=json.loads(row["preset"]) if row["preset"] else None, seed=row["seed"],
        token_ids=json.loads(row["token_ids"]), chunks=json.loads(row["chunks"]),
        status=row["status"], stats=json.loads(row["stats"]), created=row["created"],
    )


class Store:
    """All sessions in one SQLite file (default: `paths.data_dir() / "sessions.db"`).

    Thread-safe: one connection guarded by a lock (the TUI writes from its UI
    thread while a `TurnWriter` may flush from its own timer thread).
    """

    def __init__(self, path: Path | None = None, *, flush_interval: float = FLUSH_INTERVAL_S):
        if path is None:
            from gptterm import paths

            path = paths.data_dir() / "sessions.db"
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.recovered_from: Path | None = None  # where a bad file was moved to
        self.recovery_reason = ""
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot create the data folder: "
                             f"{exc.strerror or exc}") from None
        try:
            self._conn = self._open_when_free()
        except sqlite3.DatabaseError as exc:
            if not self._is_bad_file(exc):
                raise StoreError(f"{self.path}: cannot open the sessions database: {exc}") from None
            self._move_aside(str(exc))
            self._conn = self._open()

    # ------------------------------------------------------------ opening

    def _open_when_free(self) -> sqlite3.Connection:
        """`_open`, retried while another process holds the file: switching a new file to
        WAL takes an exclusive lock that SQLite's busy timeout does not wait for."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                busy = (getattr(exc, "sqlite_errorname", "") or "").startswith(
                    ("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # Reading the header first makes a non-database fail here, as NOTADB.
            found = schema.version(conn)
            if found > schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer gptterm (schema {found}, this one knows "
                    f"{schema.SCHEMA_VERSION}): upgrade gptterm"
                )
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _Corrupt(f"integrity check failed: {check}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable across a process crash
            conn.execute("PRAGMA foreign_keys = ON")
            if found < schema.SCHEMA_VERSION:
                schema.apply(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _is_bad_file(exc: sqlite3.DatabaseError) -> bool:
        if isinstance(exc, _Corrupt):
            return True
        name = getattr(exc, "sqlite_errorname", "") or ""
        return name in _BAD_FILE or name.startswith("SQLITE_IOERR") or (
            not name and not isinstance(exc, sqlite3.OperationalError)
        )

    def _move_aside(self, reason: str) -> None:
        """Rename the bad file (and its WAL files) to a timestamped name; never delete."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            self.path.rename(target)
            for suffix in ("-wal", "-shm"):
                extra = self.path.with_name(self.path.name + suffix)
                if extra.exists():
                    extra.rename(target.with_name(target.name + suffix))
        except OSError as exc:
            raise StoreError(
                f"{self.path}: the sessions database is unreadable ({reason}) and could not "
                f"be moved aside: {exc}"
            ) from None
        self.recovered_from = target
        self.recovery_reason = reason

    @property
    def recovery_message(self) -> str:
        """One line for the user when a bad database was moved aside; else ''."""
        if self.recovered_from is None:
            return ""
        return (f"sessions database {self.path} was unreadable ({self.recovery_reason}); "
                f"moved it to {self.recovered_from} and started a fresh one")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _write(self) -> _Transaction:
        return _Transaction(self)

    # ------------------------------------------------------------ sessions

    def create_session(self, title: str = "", name: str | None = None) -> Session:
        now = time.time()
        with self._write() as conn:
            if name is not None and conn.execute(
                    "SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a session named {name!r} already exists")
            while True:
                sid = _new_id()
                if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone():
                    break
            conn.execute(
                "INSERT INTO sessions(id, title, name, created, updated) VALUES (?, ?, ?, ?, ?)",
                (sid, title, name, now, now),
            )
        return Session(sid, title, name, now, now)

    def get_session(self, session_id: str) -> Session:
        rows = self._read("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise StoreError(f"no session with id {session_id!r}")
        return _session(rows[0])

    def find_session(self, ref: str) -> Session:
        """The session whose id, name or current title is `ref` (in that order).

        A unique id prefix of at least 4 characters also works.
        """
        for column in ("id", "name"):
            rows = self._read(f"SELECT * FROM sessions WHERE {column} = ?", (ref,))
            if rows:
                return _session(rows[0])
        rows = self._read("SELECT * FROM sessions WHERE title = ? ORDER BY updated DESC", (ref,))
        if len(rows) == 1:
            return _session(rows[0])
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise StoreError(f"{len(rows)} sessions are titled {ref!r} ({ids}): use an id")
        if len(ref) >= 4:
            rows = self._read("SELECT * FROM sessions WHERE substr(id, 1, ?) = ?", (len(ref), ref))
            if len(rows) == 1:
                return _session(rows[0])
        raise StoreError(f"no session has the id, name or title {ref!r} "
                         "(see `gptterm sessions list`)")

    def list_sessions(self) -> list[Session]:
        """All sessions, most recently updated first."""
        rows = self._read("SELECT * FROM sessions ORDER BY updated DESC, rowid DESC")
        return [_session(r) for r in rows]

    def turn_counts(self) -> dict[str, int]:
        rows = self._read("SELECT session_id, count(*) AS n FROM turns GROUP BY session_id")
        return {r["session_id"]: r["n"] for r in rows}

    def rename_session(self, session_id: str, title: str) -> None:
        with self._write() as conn:
            cur = conn.execute("UPDATE sessions SET title = ?, updated = ? WHERE id = ?",
                               (title, time.time(), session_id))
            if cur.rowcount == 0:
                raise StoreError(f"no session with id {session_id!r}")

    def delete_session(self, session_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
            cur = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            if cur.rowcount == 0:
                raise StoreError(f"no session with id {session_id!r}")

    # ------------------------------------------------------------ turns

    def turns(self, session_id: str) -> list[Turn]:
        rows = self._read("SELECT * FROM turns WHERE session_id = ? ORDER BY idx", (session_id,))
        return [_turn(r) for r in rows]

    def get_turn(self, turn_id: int) -> Turn:
        rows = self._read("SELECT * FROM turns WHERE id = ?", (turn_id,))
        if not rows:
            raise StoreError(f"no turn with id {turn_id}")
        return _turn(rows[0])

    def context_text(self, session_id: str) -> str:
        """The session's whole text: the prompt prefix for its next `Generate`."""
        rows = self._read("SELECT text FROM turns WHERE session_id = ? ORDER BY idx",
                          (session_id,))
        return "".join(r["text"] for r in rows)

    def add_turn(self, session_id: str, role: str, text: str, **fields: Any) -> Turn:
        """Append a finished turn (typically the user's text).

        `fields` may hold model, preset, seed, token_ids, chunks, status, stats, created.
        The first user turn of an untitled session gives it its title.
        """
        return self._insert_turn(session_id, role, text, fields)

    def begin_turn(self, session_id: str, *, role: str = "model", model: str | None = None,
                   preset: dict | None = None, seed: int | None = None) -> TurnWriter:
        """Start a streaming turn, stored at once with status "partial"."""
        turn = self._insert_turn(session_id, role, "", {
            "model": model, "preset": preset, "seed": seed, "status": "partial"})
        return TurnWriter(self, turn)

    def _insert_turn(self, session_id: str, role: str, text: str, f: dict[str, Any]) -> Turn:
        unknown = set(f) - {"model", "preset", "seed", "token_ids", "chunks", "status", "stats",
                            "created"}
        if unknown:
            raise TypeError(f"add_turn: unknown fields {sorted(unknown)}")
        if role not in ROLES:
            raise StoreError(f"turn role {role!r}: expected one of {', '.join(ROLES)}")
        status = f.get("status") or "complete"
        if status not in STATUSES:
            raise StoreError(f"turn status {status!r}: expected one of {', '.join(STATUSES)}")
        now = time.time()
        created = f.get("created") or now
        turn = Turn(id=0, session_id=session_id, index=0, role=role, text=text,
                    model=f.get("model"), preset=f.get("preset"), seed=f.get("seed"),
                    token_ids=[int(t) for t in f.get("token_ids") or ()],
                    chunks=[list(c) for c in f.get("chunks") or ()], status=status,
                    stats=dict(f.get("stats") or {}), created=created)
        with self._write() as conn:
            row = conn.execute("SELECT title FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise StoreError(f"no session with id {session_id!r}")
            turn.index = conn.execute(
                "SELECT coalesce(max(idx) + 1, 0) FROM turns WHERE session_id = ?",
                (session_id,)).fetchone()[0]
            turn.id = _insert_turn_row(conn, turn)
            if role == "user" and not row["title"] and title_from(text):
                conn.execute("UPDATE sessions SET title = ?, updated = ? WHERE id = ?",
                             (title_from(text), now, session_id))
            else:
                conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
        return turn

    def _save_turn(self, turn: Turn) -> None:
        """Write a turn's streaming fields (text, tokens, chunks, status, stats)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE turns SET text = ?, token_ids = ?, chunks = ?, status = ?, stats = ?"
                " WHERE id = ?",
                (turn.text, json.dumps(turn.token_ids), json.dumps(turn.chunks), turn.status,
                 json.dumps(turn.stats), turn.id),
            )
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?",
                         (time.time(), turn.session_id))

    def delete_turn(self, turn_id: int) -> None:
        """Remove one turn (regenerate replaces the last reply); later turns keep their index."""
        with self._write() as conn:
            row = conn.execute("SELECT session_id FROM turns WHERE id = ?", (turn_id,)).fetchone()
            if row is None:
                raise StoreError(f"no turn with id {turn_id}")
            conn.execute("DELETE FROM turns WHERE id = ?", (turn_id,))
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?",
                         (time.time(), row["session_id"]))

    def set_turn_tokens(self, turn_id: int, token_ids: Sequence[int]) -> None:
        """Overwrite a stored turn's token ids (tests use it to alter a token)."""
        with self._write() as conn:
            conn.execute("UPDATE turns SET token_ids = ? WHERE id = ?",
                         (json.dumps([int(t) for t in token_ids]), turn_id))

    # ------------------------------------------------------------ search

    def search(self, query: str, limit: int = 50) -> list[tuple[Session, Turn, str]]:
        """Turns whose text holds every word of `query`, newest session first.

        Uses the FTS5 index (whole words, prefix with a trailing `*`); adds substring
        matches when that finds nothing or the query is not ASCII, which covers parts
        of words and scripts written without spaces between words.
        """
        from gptterm.store.search import fts_query, like_hits, snippet

        words = query.split()
        if not words:
            return []
        rows = self._read(
            "SELECT t.*, s.title AS s_title, s.name AS s_name, s.created AS s_created,"
            " s.updated AS s_updated, snippet(turns_fts, 0, '[', ']', '…', 12) AS snip"
            " FROM turns_fts JOIN turns AS t ON t.id = turns_fts.rowid"
            " JOIN sessions AS s ON s.id = t.session_id"
            " WHERE turns_fts MATCH ? ORDER BY s.updated DESC, t.idx LIMIT ?",
            (fts_query(words), limit),
        )
        if len(rows) < limit and (not rows or not query.isascii()):
            # Words in scripts without spaces (Chinese) or with particles attached
            # (Korean) hide inside longer FTS tokens: add the substring matches.
            seen = {r["id"] for r in rows}
            rows += [r for r in like_hits(self, words, limit) if r["id"] not in seen]
            rows = rows[:limit]
        out = []
        for r in rows:
            session = Session(r["session_id"], r["s_title"], r["s_name"], r["s_created"],
                              r["s_updated"])
            turn = _turn(r)
            snip = r["snip"] if "snip" in r.keys() else snippet(turn.text, words)  # noqa: SIM118 (a Row)
            out.append((session, turn, " ".join(snip.split())))
        return out

    # ------------------------------------------------------------ export / import

    def export_json(self, session_id: str) -> dict:
        from gptterm.store.exporting import to_json

        return to_json(self.get_session(session_id), self.turns(session_id))

    def import_json(self, data: dict, *, where: str = "import") -> Session:
        """Store an exported session; keeps its id and name unless taken here."""
        from gptterm.store.exporting import parse_json

        session, turns = parse_json(data, where)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session.id,)).fetchone():
                while True:
                    session.id = _new_id()
                    if not conn.execute("SELECT 1 FROM sessions WHERE id = ?",
                                        (session.id,)).fetchone():
                        break
            if session.name is not None and conn.execute(
                    "SELECT 1 FROM sessions WHERE name = ?", (session.name,)).fetchone():
                session.name = None
            conn.execute(
                "INSERT INTO sessions(id, title, name, created, updated) VALUES (?, ?, ?, ?, ?)",
                (session.id, session.title, session.name, session.created, session.updated))
            for t in turns:
                t.session_id = session.id
                _insert_turn_row(conn, t)
        return session

    def export_markdown(self, session_id: str) -> str:
        from gptterm.store.exporting import to_markdown

        return to_markdown(self.get_session(session_id), self.turns(session_id))


def _insert_turn_row(conn: sqlite3.Connection, turn: Turn) -> int:
    """INSERT one turn as it is (JSON for its structured fields); returns the row id."""
    cur = conn.execute(
        "INSERT INTO turns(session_id, idx, role, text, model, preset, seed, token_ids,"
        " chunks, status, stats, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (turn.session_id, turn.index, turn.role, turn.text, turn.model,
         None if turn.preset is None else json.dumps(turn.preset), turn.seed,
         json.dumps(turn.token_ids), json.dumps(turn.chunks), turn.status,
         json.dumps(turn.stats), turn.created),
    )
    return cur.lastrowid


class _Corrupt(sqlite3.DatabaseError):
    """Raised when the integrity check fails on an otherwise readable file."""


class _Transaction:
    """`with store._write() as conn`: one short IMMEDIATE transaction under the lock.

    IMMEDIATE takes the write lock up front, so a busy database makes us wait
    (busy timeout) at BEGIN instead of failing halfway through.
    """

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.store._lock.release()
            raise
        return self.store._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.store._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.store._lock.release()


class TurnWriter:
    """One model turn being streamed: collects text and writes it out regularly.

    `append` writes to disk when `flush_interval` has passed since the last write;
    a small timer thread also writes pending text when no new text arrives, so the
    stored turn is never more than about `flush_interval` seconds behind.
    """

    def __init__(self, store: Store, turn: Turn):
        self.store = store
        self.turn = turn
        self._t0 = time.monotonic()
        self._last_flush = self._t0
        self._dirty = False
        self._lock = threading.Lock()  # guards the in-memory turn
        self._save_lock = threading.Lock()  # one flush at a time, so writes stay in order
        self._done = threading.Event()
        self._timer = threading.Thread(target=self._flush_loop, name=f"turn-{turn.id}-flush",
                                       daemon=True)
        self._timer.start()

    @property
    def turn_id(self) -> int:
        return self.turn.id

    @property
    def text(self) -> str:
        return self.turn.text

    def _at(self, at: float | None) -> float:
        return round(time.monotonic() - self._t0 if at is None else float(at), 4)

    def append(self, text: str, token_ids: Sequence[int] = (), at: float | None = None) -> None:
        """Add streamed text; `at` is seconds since the turn began (default: now)."""
        if self._done.is_set():
            raise StoreError(f"turn {self.turn.id} is already finished")
        with self._lock:
            self.turn.text += text
            self.turn.token_ids.extend(int(t) for t in token_ids)
            if text:
                self.turn.chunks.append([self._at(at), text])
            self._dirty = True
        self._maybe_flush()

    def replace_text(self, text: str, token_ids: Sequence[int], at: float | None = None) -> None:
        """Replace the whole reply (beam search's new best); chunk [t, text, "replace"]."""
        if self._done.is_set():
            raise StoreError(f"turn {self.turn.id} is already finished")
        with self._lock:
            self.turn.text = text
            self.turn.token_ids = [int(t) for t in token_ids]
            self.turn.chunks.append([self._at(at), text, "replace"])
            self._dirty = True
        self._maybe_flush()

    def set_stats(self, **stats: Any) -> None:
        """Merge stats (prompt_tokens, reused_tokens, ...) known before the end."""
        with self._lock:
            self.turn.stats.update(stats)
            self._dirty = True

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.store.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write the turn as it is now."""
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                snapshot = Turn(**{**self.turn.__dict__, "token_ids": list(self.turn.token_ids),
                                   "chunks": list(self.turn.chunks),
                                   "stats": dict(self.turn.stats)})
                self._dirty = False
                self._last_flush = time.monotonic()
            try:
                self.store._save_turn(snapshot)
            except BaseException:
                self._dirty = True  # keep it pending for the next try
                raise

    def _flush_loop(self) -> None:
        interval = self.store.flush_interval
        while not self._done.wait(interval / 5):  # worst case: interval + interval / 5
            if self._dirty and time.monotonic() - self._last_flush >= interval:
                try:
                    self.flush()
                except (sqlite3.Error, StoreError):
                    pass  # the next append or finish writes it (and reports errors)

    def finish(self, status: str, stats: dict | None = None) -> Turn:
        """End the turn: complete | cancelled | failed; writes it a last time."""
        if status not in FINAL_STATUSES:
            raise StoreError(f"turn status {status!r}: expected one of {', '.join(FINAL_STATUSES)}")
        self._done.set()
        self._timer.join()
        with self._lock:
            self.turn.status = status
            self.turn.stats.update(stats or {})
            self._dirty = True
        self.flush()
        return self.turn
