"""The session store: sessions and turns in SQLite (`Store`), read and written safely.

`Store` opens (or creates, or recovers) `sessions.db` through `opening.Database`,
which turns every SQLite failure into one `StoreError` line. Every write is one
short transaction, and the connection waits on a busy database instead of failing,
so several gptterm processes can share one file. Streaming turns are recorded by
`writer.TurnWriter`; search and the file formats are plain functions in `search`
and `exporting`, over the records of `records`.

Names and ids never shadow each other: `find_session` tries an exact id first, then
a name, then a title, then an id prefix; a name that has the form of an id is refused
(and dropped on import), and an imported id that is not gptterm's form or is taken
gets a fresh one.

A turn left "partial" by a writer that died is marked "interrupted" when a store
opens (`writer.writer_gone` holds the rule).

A session is a tree of turns (schema v6): each turn follows its parent, turns with the
same parent are alternatives (a regenerated reply, an edited version), and each parent
has one chosen child. `turns` reads the chosen path, oldest first, so every reader of a
session sees one plain list; `alternatives`, `choose`, `edit_turn`, `branch` and `undo`
work on the tree. Every write keeps `on_path` (the chosen path's flag) in step within
its own transaction, and records in `undo_steps` what it did, so `undo` can reverse it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from gptterm.protocol import TokenInspect
from gptterm.store import exporting, inspection, search
from gptterm.store.opening import BUSY_TIMEOUT_S, Database, make_private_dir
from gptterm.store.records import (
    FINAL_STATUSES,
    ROLES,
    STATUSES,
    Session,
    StoreError,
    Turn,
    check_sampling,
    is_seed,
    is_text,
    looks_like_id,
    new_id,
    session_from_row,
    title_from,
    turn_from_row,
)
from gptterm.store.writer import WRITER_ID, TurnWriter, writer_gone

__all__ = ["BUSY_TIMEOUT_S", "FINAL_STATUSES", "FLUSH_INTERVAL_S", "ROLES", "STATUSES",
           "Session", "Store", "StoreError", "Turn", "TurnWriter", "title_from"]

FLUSH_INTERVAL_S = 0.5
UNDO_LIMIT = 100  # undo steps kept per session (older ones are forgotten)
_TURN_FIELDS = {"model", "preset", "seed", "token_ids", "chunks", "status", "stats", "created"}


class Store:
    """All sessions in one SQLite file (default: `paths.data_dir() / "sessions.db"`).

    Thread-safe: one connection guarded by a lock (the TUI writes from its UI
    thread while a `TurnWriter` may flush from its own timer thread).
    """

    def __init__(self, path: Path | None = None, *, flush_interval: float = FLUSH_INTERVAL_S):
        own_dir = path is None and not os.environ.get("GPTTERM_DATA_DIR")
        self.path = _default_path() if path is None else Path(path)
        self.flush_interval = flush_interval
        make_private_dir(self.path.parent, tighten=own_dir)
        self.db = Database(self.path)
        self.interrupted = self._mark_interrupted()

    @property
    def recovered_from(self) -> Path | None:
        """Where a damaged database was moved to on open (None: it was not)."""
        return self.db.recovered_from

    @property
    def recovery_reason(self) -> str:
        return self.db.recovery_reason

    @property
    def recovery_message(self) -> str:
        """One line for the user when a damaged database was moved aside; else ''."""
        if self.recovered_from is None:
            return ""
        return (f"sessions database {self.path} was damaged ({self.recovery_reason}); "
                f"moved it to {self.recovered_from} and started a fresh one")

    @property
    def _conn(self) -> sqlite3.Connection:  # for tests that inspect the file
        return self.db.conn

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mark_interrupted(self) -> int:
        """Mark partial turns whose writer is gone as interrupted; returns how many.

        A read-only database keeps them partial (the next writable open marks them).
        """
        rows = self.db.read("SELECT id, writer, created FROM turns WHERE status = 'partial'")
        gone = [(r["id"],) for r in rows if writer_gone(r["writer"], r["created"])]
        if not gone:
            return 0
        try:
            with self.db.write() as conn:
                conn.executemany("UPDATE turns SET status = 'interrupted'"
                                 " WHERE id = ? AND status = 'partial'", gone)
        except StoreError:
            return 0
        return len(gone)

    # ------------------------------------------------------------ sessions

    def create_session(self, title: str = "", name: str | None = None) -> Session:
        _check_label(title, "title")
        if name is not None:
            check_name(name)
        now = time.time()
        with self.db.write() as conn:
            if name is not None and conn.execute(
                    "SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a session named {name!r} already exists")
            sid = _free_id(conn)
            conn.execute(
                "INSERT INTO sessions(id, title, name, created, updated) VALUES (?, ?, ?, ?, ?)",
                (sid, title, name, now, now),
            )
        return Session(sid, title, name, now, now)

    def get_session(self, session_id: str) -> Session:
        rows = self.db.read("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise StoreError(f"no session with id {session_id!r}")
        return session_from_row(rows[0])

    def find_session(self, ref: str) -> Session:
        """The session whose id, name or current title is `ref` (tried in that order).

        A unique id prefix of at least 4 characters also works.
        """
        if not is_text(ref):
            raise StoreError(f"no session has the id, name or title {ref!r} (not valid Unicode)")
        for column in ("id", "name"):
            rows = self.db.read(f"SELECT * FROM sessions WHERE {column} = ?", (ref,))
            if rows:
                return session_from_row(rows[0])
        rows = self.db.read("SELECT * FROM sessions WHERE title = ? ORDER BY updated DESC",
                            (ref,))
        if len(rows) == 1:
            return session_from_row(rows[0])
        if len(rows) > 1:
            ids = ", ".join(str(r["id"]) for r in rows[:5])
            raise StoreError(f"{len(rows)} sessions are titled {ref!r} ({ids}): use an id")
        if len(ref) >= 4:
            rows = self.db.read("SELECT * FROM sessions WHERE substr(id, 1, ?) = ?",
                                (len(ref), ref))
            if len(rows) == 1:
                return session_from_row(rows[0])
        raise StoreError(f"no session has the id, name or title {ref!r} "
                         "(see `gptterm sessions list`)")

    def list_sessions(self) -> list[Session]:
        """All sessions, most recently updated first."""
        rows = self.db.read("SELECT * FROM sessions ORDER BY updated DESC, rowid DESC")
        return [session_from_row(r) for r in rows]

    def turn_counts(self) -> dict[str, int]:
        """Turns on each session's chosen path (what `turns` gives)."""
        rows = self.db.read("SELECT session_id, count(*) AS n FROM turns WHERE on_path = 1"
                            " GROUP BY session_id")
        return {r["session_id"]: r["n"] for r in rows}

    def rename_session(self, session_id: str, title: str) -> None:
        _check_label(title, "title")
        if looks_like_id(title):
            raise StoreError(f"title {title!r}: has the form of a session id; choose another")
        with self.db.write() as conn:
            cur = conn.execute("UPDATE sessions SET title = ?, updated = ? WHERE id = ?",
                               (title, time.time(), session_id))
            if cur.rowcount == 0:
                raise StoreError(f"no session with id {session_id!r}")

    def remember_choice(self, session_id: str, *, model: str | None = None,
                        preset: str | None = None) -> None:
        """Record the model and/or preset name the session now runs on (None: unchanged).

        Leaves `updated` alone: choosing is not writing, so the session list keeps its order.
        """
        changes = {k: v for k, v in (("model", model), ("preset", preset)) if v is not None}
        for key, value in changes.items():
            if not is_text(value):
                raise StoreError(f"session {key}: expected text (valid Unicode)")
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?",
                            (session_id,)).fetchone() is None:
                raise StoreError(f"no session with id {session_id!r}")
            for key, value in changes.items():  # keys from the fixed pair above
                conn.execute(f"UPDATE sessions SET {key} = ? WHERE id = ?", (value, session_id))

    def set_session_sampling(self, session_id: str, sampling: dict) -> None:
        """Replace the session's sampling overrides (keys from presets.SESSION_KEYS, values
        by the preset rules; see records.check_sampling). Leaves `updated` alone."""
        checked = check_sampling(sampling)
        cur = self.db.execute_write("UPDATE sessions SET sampling = ? WHERE id = ?",
                                    (json.dumps(checked), session_id))
        if cur == 0:
            raise StoreError(f"no session with id {session_id!r}")

    def set_memory(self, session_id: str, text: str | None) -> None:
        """Set the session's pinned memory, the text that always opens its context
        (None or "": none)."""
        text = text or ""
        if not is_text(text):
            raise StoreError("session memory: expected text (valid Unicode)")
        cur = self.db.execute_write("UPDATE sessions SET memory = ?, updated = ? WHERE id = ?",
                                    (text, time.time(), session_id))
        if cur == 0:
            raise StoreError(f"no session with id {session_id!r}")

    def delete_session(self, session_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM undo_steps WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
            cur = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            if cur.rowcount == 0:
                raise StoreError(f"no session with id {session_id!r}")

    # ------------------------------------------------------------ turns

    def turns(self, session_id: str) -> list[Turn]:
        """The session's chosen path, oldest first, each turn with its alternatives figures."""
        rows = self.db.read(f"SELECT t.*{ALT_FIGURES} FROM turns t"
                            " WHERE t.session_id = ? AND t.on_path = 1 ORDER BY t.idx",
                            (session_id,))
        return [turn_from_row(r) for r in rows]

    def tree_turns(self, session_id: str) -> list[Turn]:
        """Every turn of the session, alternatives and the turns after them too, in the
        order they were written (each after the turns it follows)."""
        rows = self.db.read(f"SELECT t.*{ALT_FIGURES} FROM turns t WHERE t.session_id = ?"
                            " ORDER BY t.id", (session_id,))
        return [turn_from_row(r) for r in rows]

    def alternatives(self, turn_id: int) -> list[Turn]:
        """The turn and its alternatives (same parent, same role), oldest first."""
        turn = self.get_turn(turn_id)
        rows = self.db.read(f"SELECT t.*{ALT_FIGURES} FROM turns t WHERE t.session_id = ?"
                            " AND t.parent_id IS ? AND t.role = ? ORDER BY t.id",
                            (turn.session_id, turn.parent_id, turn.role))
        return [turn_from_row(r) for r in rows]

    def context_turns(self, session_id: str) -> list[Turn]:
        """The turns with only what a model's context needs (role, text, model, token ids):
        several times faster than `turns` on a long session, for every prompt sent."""
        rows = self.db.read(
            "SELECT id, session_id, idx, role, text, model, token_ids, status, NULL AS preset,"
            " NULL AS seed, '[]' AS chunks, '{}' AS stats, 0 AS created, parent_id"
            " FROM turns WHERE session_id = ? AND on_path = 1 ORDER BY idx", (session_id,))
        return [turn_from_row(r) for r in rows]

    def turns_before_turn(self, turn_id: int) -> list[Turn]:
        """The turns `turn_id` follows, oldest first (its context: for an alternative of a
        reply, the same as the reply's), light as `context_turns`."""
        rows = self.db.read(
            "WITH RECURSIVE up(id) AS (SELECT parent_id FROM turns WHERE id = ?"
            " UNION ALL SELECT t.parent_id FROM turns t JOIN up ON t.id = up.id)"
            " SELECT id, session_id, idx, role, text, model, token_ids, status, NULL AS preset,"
            " NULL AS seed, '[]' AS chunks, '{}' AS stats, 0 AS created, parent_id"
            " FROM turns WHERE id IN (SELECT id FROM up) ORDER BY idx", (turn_id,))
        return [turn_from_row(r) for r in rows]

    def user_prompts(self, session_id: str | None, limit: int = 200) -> list[str]:
        """What the user typed, oldest first: the newest `limit` prompts of the session, or
        (None) of all sessions.

        A stored user turn begins with the separator that joined it to the text before
        (usually a newline, see recorder.separator_for): leading newlines are stripped,
        and turns left empty are skipped.
        """
        typed = "role = 'user' AND typeof(text) = 'text' AND ltrim(text, char(10)) != ''"
        if session_id is None:
            rows = self.db.read(f"SELECT text FROM turns WHERE {typed}"
                                " ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        else:
            rows = self.db.read(f"SELECT text FROM turns WHERE {typed} AND session_id = ?"
                                " ORDER BY idx DESC LIMIT ?", (session_id, limit))
        return [r["text"].lstrip("\n") for r in reversed(rows)]

    def get_turn(self, turn_id: int) -> Turn:
        rows = self.db.read(f"SELECT t.*{ALT_FIGURES} FROM turns t WHERE t.id = ?", (turn_id,))
        if not rows:
            raise StoreError(f"no turn with id {turn_id}")
        return turn_from_row(rows[0])

    def context_text(self, session_id: str) -> str:
        """The session's whole text: the prompt prefix for its next `Generate`."""
        rows = self.db.read("SELECT text FROM turns WHERE session_id = ? AND on_path = 1"
                            " ORDER BY idx", (session_id,))
        return "".join(r["text"] for r in rows if isinstance(r["text"], str))

    def add_turn(self, session_id: str, role: str, text: str, *,
                 alternative_of: int | None = None, **fields: Any) -> Turn:
        """Append a finished turn (typically the user's text) to the chosen path, or with
        `alternative_of` (a turn id) add it as that turn's alternative, chosen.

        `fields` may hold model, preset, seed, token_ids, chunks, status, stats, created.
        The first user turn of an untitled session gives it its title.
        """
        return self._insert_turn(session_id, role, text, fields, alternative_of=alternative_of)

    def begin_turn(self, session_id: str, *, role: str = "model", model: str | None = None,
                   preset: dict | None = None, seed: int | None = None,
                   alternative_of: int | None = None) -> TurnWriter:
        """Start a streaming turn, stored at once with status "partial": after the chosen
        path's last turn, or with `alternative_of` as that turn's alternative (same parent,
        same context), chosen from the start."""
        turn = self._insert_turn(session_id, role, "", {
            "model": model, "preset": preset, "seed": seed, "status": "partial"},
            writer=WRITER_ID, alternative_of=alternative_of)
        return TurnWriter(self, turn)

    def edit_turn(self, turn_id: int, text: str) -> Turn:
        """A new version of a turn: an alternative of it holding `text`, chosen. The turns
        after the old version stay with it; the path now ends at the new version.

        A model turn keeps its model, preset and seed, with no tokens and stats
        {"edited": true} (its text is no longer the model's: replay --verify says so).
        """
        if not is_text(text):
            raise StoreError("edited text: expected text (valid Unicode)")
        old = self.get_turn(turn_id)
        if old.status == "partial":
            raise StoreError(f"turn {old.index} is still being written: stop it first")
        return self._insert_turn(old.session_id, old.role, text, {
            "model": old.model, "preset": old.preset, "seed": old.seed,
            "stats": {"edited": True}}, alternative_of=turn_id, action="edit")

    def choose(self, turn_id: int) -> None:
        """Make the turn the chosen one among its alternatives (and its earlier turns the
        chosen ones among theirs): the path runs through it and goes on with that
        branch's own chosen turns."""
        with self.db.write() as conn:
            row = conn.execute("SELECT session_id, on_path FROM turns WHERE id = ?",
                               (turn_id,)).fetchone()
            if row is None:
                raise StoreError(f"no turn with id {turn_id}")
            if row["on_path"]:
                return
            leaf = _path_leaf(conn, row["session_id"])
            _choose(conn, row["session_id"], turn_id)
            _log(conn, row["session_id"], "choose", turn_id, leaf)

    def branch(self, session_id: str, at: int, name: str | None = None) -> Session:
        """A new session holding copies of the chosen path's turns up to position `at`
        (as `turns` numbers them), with this session's model, preset, sampling and
        memory; it records where it came from (`branched_from`, `branched_at`)."""
        if name is not None:
            check_name(name)
        source = self.get_session(session_id)
        path = self.turns(session_id)
        if not any(t.index == at for t in path):
            last = path[-1].index if path else None
            raise StoreError(f"branch at {at}: no turn at that position "
                             + ("(the session has no turns)" if last is None
                                else f"(turns are numbered 0 to {last})"))
        now = time.time()
        with self.db.write() as conn:
            if name is not None and conn.execute(
                    "SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a session named {name!r} already exists")
            sid = _free_id(conn)
            conn.execute(
                "INSERT INTO sessions(id, title, name, created, updated, model, preset, sampling,"
                " memory, branched_from, branched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, source.title, name, now, now, source.model, source.preset,
                 json.dumps(source.sampling), source.memory, source.id, at))
            parent = None
            for t in path:
                if t.index > at:
                    break
                copy = Turn(**{**t.__dict__, "session_id": sid, "parent_id": parent,
                               # a copy is never streamed: one cut off stays cut off
                               "status": "interrupted" if t.status == "partial" else t.status})
                parent = _insert_turn_row(conn, copy, None)
                # A reply's stages go with it: the branch's replies inspect as the source's.
                conn.execute("INSERT INTO turn_inspect(turn_id, top_k, data) SELECT ?, top_k,"
                             " data FROM turn_inspect WHERE turn_id = ?", (parent, t.id))
        return self.get_session(sid)

    def undo(self, session_id: str) -> str:
        """Undo the session's last generation, edit or choice; returns what was undone, in
        one line. A turn added is removed (when nothing follows it yet) and the path goes
        back to what it was; a choice is reversed. StoreError "nothing to undo" when no
        step is left."""
        with self.db.write() as conn:
            while True:
                step = conn.execute("SELECT * FROM undo_steps WHERE session_id = ?"
                                    " ORDER BY id DESC LIMIT 1", (session_id,)).fetchone()
                if step is None:
                    raise StoreError("nothing to undo")
                turn = conn.execute("SELECT * FROM turns WHERE id = ?",
                                    (step["turn_id"],)).fetchone()
                if turn is not None:
                    break
                conn.execute("DELETE FROM undo_steps WHERE id = ?", (step["id"],))
            what = _undo_step(conn, session_id, step, turn)
            conn.execute("DELETE FROM undo_steps WHERE id = ?", (step["id"],))
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), session_id))
        return what

    def _insert_turn(self, session_id: str, role: str, text: str, f: dict[str, Any],
                     writer: str | None = None, alternative_of: int | None = None,
                     action: str | None = None) -> Turn:
        unknown = set(f) - _TURN_FIELDS
        if unknown:
            raise TypeError(f"add_turn: unknown fields {sorted(unknown)}")
        if role not in ROLES:
            raise StoreError(f"turn role {role!r}: expected one of {', '.join(ROLES)}")
        status = f.get("status") or "complete"
        if status not in STATUSES:
            raise StoreError(f"turn status {status!r}: expected one of {', '.join(STATUSES)}")
        if f.get("seed") is not None and not is_seed(f["seed"]):
            raise StoreError(f"turn seed {f['seed']!r}: expected an integer from 0 to 2**63 - 1")
        now = time.time()
        turn = Turn(id=0, session_id=session_id, index=0, role=role, text=text,
                    model=f.get("model"), preset=f.get("preset"), seed=f.get("seed"),
                    token_ids=[int(t) for t in f.get("token_ids") or ()],
                    chunks=[list(c) for c in f.get("chunks") or ()], status=status,
                    stats=dict(f.get("stats") or {}), created=f.get("created") or now)
        with self.db.write() as conn:
            row = conn.execute("SELECT title FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise StoreError(f"no session with id {session_id!r}")
            leaf = _path_leaf(conn, session_id)
            if alternative_of is None:
                # After the path's last turn (a leaf: it has no chosen turn after it).
                last = conn.execute("SELECT idx FROM turns WHERE id = ?", (leaf,)).fetchone() \
                    if leaf is not None else None
                turn.parent_id = leaf
                turn.index = last["idx"] + 1 if last is not None else 0
                turn.id = _insert_turn_row(conn, turn, writer)
                _log(conn, session_id, action or "add", turn.id, leaf)
            else:
                other = conn.execute("SELECT parent_id, idx, role FROM turns"
                                     " WHERE id = ? AND session_id = ?",
                                     (alternative_of, session_id)).fetchone()
                if other is None:
                    raise StoreError(f"no turn with id {alternative_of} in session {session_id}")
                if other["role"] != role:
                    raise StoreError(f"an alternative of a {other['role']} turn must be one too "
                                     f"(got {role})")
                turn.parent_id, turn.index = other["parent_id"], other["idx"]
                turn.id = _insert_turn_row(conn, turn, writer, on_path=False)
                _choose(conn, session_id, turn.id)
                _log(conn, session_id, action or "alternative", turn.id, leaf)
                turn.alternatives, turn.alternative = _alt_figures(conn, turn.id)
            if role == "user" and not row["title"] and title_from(text):
                conn.execute("UPDATE sessions SET title = ?, updated = ? WHERE id = ?",
                             (title_from(text), now, session_id))
            else:
                conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
        return turn

    def _save_turn(self, turn: Turn) -> None:
        """Write a turn's streaming fields (text, tokens, chunks, status, stats)."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE turns SET text = ?, token_ids = ?, chunks = ?, status = ?, stats = ?"
                " WHERE id = ?",
                (turn.text, json.dumps(turn.token_ids), json.dumps(turn.chunks), turn.status,
                 json.dumps(turn.stats), turn.id),
            )
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?",
                         (time.time(), turn.session_id))

    def delete_turn(self, turn_id: int) -> None:
        """Remove one turn; later turns keep their index. The turns after it then follow
        the turn before it; a turn that has both alternatives and turns after it cannot be
        removed alone (StoreError). A removed chosen alternative leaves the newest other
        one chosen."""
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM turns WHERE id = ?", (turn_id,)).fetchone()
            if row is None:
                raise StoreError(f"no turn with id {turn_id}")
            _remove_turn(conn, row)
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?",
                         (time.time(), row["session_id"]))

    def set_turn_tokens(self, turn_id: int, token_ids: Sequence[int]) -> None:
        """Overwrite a stored turn's token ids (tests use it to alter a token)."""
        self.db.execute_write("UPDATE turns SET token_ids = ? WHERE id = ?",
                              (json.dumps([int(t) for t in token_ids]), turn_id))

    # ------------------------------------------------------------ the chain's stages

    def save_inspect(self, turn_id: int, top_k: int, tokens: Sequence[TokenInspect]) -> None:
        """Keep what every chain stage made of each token of a reply (`top_k` candidates per
        stage), replacing what was kept for it; StoreError when out of range."""
        data = inspection.to_json(tokens)
        problem = inspection.problem(top_k, data)
        if problem:
            raise StoreError(f"turn {turn_id} stages: {problem}")
        self.db.execute_write("INSERT OR REPLACE INTO turn_inspect(turn_id, top_k, data)"
                              " VALUES (?, ?, ?)", (turn_id, top_k, json.dumps(data)))

    def turn_inspect(self, turn_id: int) -> tuple[int, tuple[TokenInspect, ...]] | None:
        """(top_k, each token's stages) of a reply; None when none were kept or the row is
        damaged (it is then as if none were kept)."""
        rows = self.db.read("SELECT top_k, data FROM turn_inspect WHERE turn_id = ?",
                            (turn_id,))
        found = _inspect_of(rows[0]) if rows else None
        return None if found is None else (found["top_k"], inspection.from_json(found["tokens"]))

    # ------------------------------------------------------------ search

    def search(self, query: str, limit: int = 50) -> list[tuple[Session, Turn, str]]:
        """Turns whose text holds every word of `query`, newest session first (see `search`)."""
        return search.search(self.db, query, limit)

    # ------------------------------------------------------------ export / import

    def export_json(self, session_id: str) -> dict:
        """The session with every turn of its tree (alternatives too) and its memory."""
        session = self.get_session(session_id)
        rows = self.db.read("SELECT * FROM turns WHERE session_id = ? ORDER BY idx, id",
                            (session_id,))
        stages = {r["turn_id"]: _inspect_of(r) for r in self.db.read(
            "SELECT turn_id, top_k, data FROM turn_inspect WHERE turn_id IN"
            " (SELECT id FROM turns WHERE session_id = ?)", (session_id,))}
        turns = [turn_from_row(r) for r in rows]
        for turn in turns:
            turn.inspect = stages.get(turn.id)
        return exporting.to_json(session, turns, chosen=[bool(r["chosen"]) for r in rows])

    def export_markdown(self, session_id: str) -> str:
        return exporting.to_markdown(self.get_session(session_id), self.turns(session_id))

    def import_json(self, data: Any, *, where: str = "import") -> Session:
        """Store an exported session, all or nothing.

        Keeps its id when it is gptterm's form and free here (else a fresh id), and
        its name when it is free and does not look like an id (else none).
        """
        session, turns, tree = exporting.parse_json(data, where)
        with self.db.write() as conn:
            if not looks_like_id(session.id) or conn.execute(
                    "SELECT 1 FROM sessions WHERE id = ?", (session.id,)).fetchone():
                session.id = _free_id(conn)
            if session.name is not None and (looks_like_id(session.name) or conn.execute(
                    "SELECT 1 FROM sessions WHERE name = ?", (session.name,)).fetchone()):
                session.name = None
            conn.execute(
                "INSERT INTO sessions(id, title, name, created, updated, model, preset, sampling,"
                " memory, branched_from, branched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, session.title, session.name, session.created, session.updated,
                 session.model, session.preset, json.dumps(session.sampling), session.memory,
                 session.branched_from, session.branched_at))
            ids: list[int] = []  # row id of each turn, by its place in the file
            for t, (parent, chosen) in zip(turns, tree):
                t.session_id = session.id
                t.parent_id = None if parent is None else ids[parent]
                ids.append(_insert_turn_row(conn, t, None, chosen=chosen, on_path=False))
                if t.inspect is not None:
                    conn.execute("INSERT INTO turn_inspect(turn_id, top_k, data) VALUES"
                                 " (?, ?, ?)", (ids[-1], t.inspect["top_k"],
                                                json.dumps(t.inspect["tokens"])))
            _mark_path(conn, session.id)
        return session


def _default_path() -> Path:
    from gptterm import paths

    try:
        return paths.data_dir() / "sessions.db"
    except OSError as exc:
        folder = Path(exc.filename) if exc.filename else None
        if folder is not None and folder.exists() and not folder.is_dir():
            raise StoreError(f"{folder}: the data folder is a file, not a folder: "
                             "move it away") from None
        raise StoreError(f"{folder or 'data folder'}: cannot create the data folder: "
                         f"{exc.strerror or exc}") from None


def check_name(name: str) -> None:
    """A session name must be non-empty text that does not look like an id."""
    _check_label(name, "name")
    if not name.strip():
        raise StoreError("session name: expected a non-empty name")
    if looks_like_id(name):
        raise StoreError(f"session name {name!r}: has the form of a session id "
                         "(8 hex digits); choose another")


def _check_label(text: Any, what: str) -> None:
    if not is_text(text):
        raise StoreError(f"session {what}: expected text (valid Unicode)")


def _free_id(conn: sqlite3.Connection) -> str:
    while True:
        sid = new_id()
        if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone():
            return sid


def _inspect_of(row: sqlite3.Row) -> dict | None:
    """A turn_inspect row as {"top_k", "tokens"} (JSON, see store.inspection); None when
    it is damaged."""
    try:
        tokens = json.loads(row["data"]) if isinstance(row["data"], str) else None
    except (ValueError, RecursionError):
        return None
    if inspection.problem(row["top_k"], tokens):
        return None
    return {"top_k": row["top_k"], "tokens": tokens}


def _insert_turn_row(conn: sqlite3.Connection, turn: Turn, writer: str | None, *,
                     chosen: bool = True, on_path: bool = True) -> int:
    """INSERT one turn as it is (JSON for its structured fields); returns the row id."""
    cur = conn.execute(
        "INSERT INTO turns(session_id, idx, role, text, model, preset, seed, token_ids,"
        " chunks, status, stats, created, writer, parent_id, chosen, on_path)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (turn.session_id, turn.index, turn.role, turn.text, turn.model,
         None if turn.preset is None else json.dumps(turn.preset), turn.seed,
         json.dumps(turn.token_ids), json.dumps(turn.chunks), turn.status,
         json.dumps(turn.stats), turn.created, writer, turn.parent_id, int(chosen),
         int(on_path)),
    )
    return cur.lastrowid


# ------------------------------------------------------------------ the turn tree
# Helpers that run inside a write transaction. The rules they keep: each parent (and the
# session's first position) has exactly one chosen turn among those that follow it, and
# `on_path` marks the turns from the chosen first turn down through chosen turns.

# How many alternatives a turn has (same parent, same role) and its place among them.
ALT_FIGURES = (
    ", (SELECT count(*) FROM turns s WHERE s.session_id = t.session_id"
    " AND s.parent_id IS t.parent_id AND s.role = t.role) AS n_alt"
    ", (SELECT count(*) FROM turns s WHERE s.session_id = t.session_id"
    " AND s.parent_id IS t.parent_id AND s.role = t.role AND s.id <= t.id) AS alt_pos")


def _alt_figures(conn: sqlite3.Connection, turn_id: int) -> tuple[int, int]:
    row = conn.execute(f"SELECT 0{ALT_FIGURES} FROM turns t WHERE t.id = ?",
                       (turn_id,)).fetchone()
    return row["n_alt"], row["alt_pos"]


def _path_leaf(conn: sqlite3.Connection, session_id: str) -> int | None:
    """The id of the chosen path's last turn (None: the session has none)."""
    row = conn.execute("SELECT id FROM turns WHERE session_id = ? AND on_path = 1"
                       " ORDER BY idx DESC LIMIT 1", (session_id,)).fetchone()
    return None if row is None else row["id"]


def _mark_path(conn: sqlite3.Connection, session_id: str, top: sqlite3.Row | None = None
               ) -> None:
    """Set `on_path` from `top` (a turn whose parent is on the path; None: the first
    turn) down through chosen turns; turns after `top`'s parent leave the path first."""
    if top is None:
        conn.execute("UPDATE turns SET on_path = 0 WHERE session_id = ? AND on_path = 1",
                     (session_id,))
        first = conn.execute("SELECT id FROM turns WHERE session_id = ? AND parent_id IS NULL"
                             " AND chosen = 1 ORDER BY id DESC LIMIT 1", (session_id,)).fetchone()
        if first is None:
            return
        start = first["id"]
    else:
        parent = conn.execute("SELECT idx FROM turns WHERE id = ?",
                              (top["parent_id"],)).fetchone() if top["parent_id"] is not None \
            else None
        conn.execute("UPDATE turns SET on_path = 0 WHERE session_id = ? AND on_path = 1"
                     " AND idx > ?", (session_id, -1 if parent is None else parent["idx"]))
        start = top["id"]
    conn.execute(
        "WITH RECURSIVE down(id) AS (SELECT ? UNION ALL SELECT t.id FROM turns t JOIN down"
        " ON t.session_id = ? AND t.parent_id = down.id WHERE t.chosen = 1)"
        " UPDATE turns SET on_path = 1 WHERE id IN (SELECT id FROM down)", (start, session_id))


def _choose(conn: sqlite3.Connection, session_id: str, turn_id: int) -> None:
    """Choose the turn and every turn before it among their alternatives; redo the path."""
    chain = conn.execute(
        "WITH RECURSIVE up(id) AS (SELECT ? UNION ALL SELECT t.parent_id FROM turns t"
        " JOIN up ON t.id = up.id WHERE t.parent_id IS NOT NULL)"
        " SELECT id, parent_id, on_path FROM turns WHERE id IN (SELECT id FROM up)"
        " ORDER BY idx", (turn_id,)).fetchall()
    off = [r for r in chain if not r["on_path"]]
    if not off:
        return
    for r in off:
        conn.execute("UPDATE turns SET chosen = (id = ?) WHERE session_id = ? AND parent_id IS ?",
                     (r["id"], session_id, r["parent_id"]))
    _mark_path(conn, session_id, off[0])


def _log(conn: sqlite3.Connection, session_id: str, action: str, turn_id: int,
         previous: int | None) -> None:
    """Record an undo step: `action` on `turn_id`, the path having ended at `previous`."""
    conn.execute("INSERT INTO undo_steps(session_id, action, turn_id, previous, created)"
                 " VALUES (?, ?, ?, ?, ?)", (session_id, action, turn_id, previous, time.time()))
    conn.execute("DELETE FROM undo_steps WHERE session_id = ? AND id <= (SELECT id FROM"
                 " undo_steps WHERE session_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                 (session_id, session_id, UNDO_LIMIT))


def _remove_turn(conn: sqlite3.Connection, row: sqlite3.Row) -> None:
    """Delete one turn; the turns after it follow its parent. When it was the chosen one
    of several alternatives, the newest other one is chosen."""
    sid = row["session_id"]
    children = conn.execute("SELECT count(*) FROM turns WHERE session_id = ? AND parent_id = ?",
                            (sid, row["id"])).fetchone()[0]
    others = conn.execute("SELECT id FROM turns WHERE session_id = ? AND parent_id IS ?"
                          " AND id != ? ORDER BY id DESC", (sid, row["parent_id"], row["id"])
                          ).fetchall()
    if children and others:
        raise StoreError(f"turn {row['idx']} has alternatives and turns after it: "
                         "it cannot be removed alone")
    conn.execute("UPDATE turns SET parent_id = ? WHERE session_id = ? AND parent_id = ?",
                 (row["parent_id"], sid, row["id"]))
    conn.execute("DELETE FROM turns WHERE id = ?", (row["id"],))
    conn.execute("DELETE FROM undo_steps WHERE turn_id = ?", (row["id"],))
    conn.execute("UPDATE undo_steps SET previous = ? WHERE previous = ?",
                 (row["parent_id"], row["id"]))
    if row["chosen"] and others:
        conn.execute("UPDATE turns SET chosen = 1 WHERE id = ?", (others[0]["id"],))
        if row["on_path"]:
            top = conn.execute("SELECT id, parent_id FROM turns WHERE id = ?",
                               (others[0]["id"],)).fetchone()
            _mark_path(conn, sid, top)


def _undo_step(conn: sqlite3.Connection, session_id: str, step: sqlite3.Row,
               turn: sqlite3.Row) -> str:
    """Reverse one undo step (its turn exists); returns what was undone, in one line."""
    previous = step["previous"]
    if step["action"] == "choose":
        if previous is None or conn.execute("SELECT 1 FROM turns WHERE id = ?",
                                            (previous,)).fetchone() is None:
            raise StoreError("cannot undo: the earlier choice is gone")
        _choose(conn, session_id, previous)
        return f"chose again what turn {turn['idx']} replaced"
    if turn["status"] == "partial" and not writer_gone(turn["writer"], turn["created"]):
        raise StoreError(f"cannot undo: turn {turn['idx']} is still being written; stop it first")
    if conn.execute("SELECT 1 FROM turns WHERE parent_id = ? LIMIT 1",
                    (turn["id"],)).fetchone():
        raise StoreError(f"cannot undo: turns follow turn {turn['idx']}")
    _remove_turn(conn, turn)
    if previous is not None and previous != turn["id"] and conn.execute(
            "SELECT 1 FROM turns WHERE id = ?", (previous,)).fetchone():
        _choose(conn, session_id, previous)
    what = {"edit": "the edit of", "alternative": "the alternative at"}.get(
        step["action"], "the reply at" if turn["role"] == "model" else "the prompt at")
    return f"removed {what} turn {turn['idx']}"
