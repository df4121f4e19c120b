"""The sessions database schema: every version's migration, applied in order.

`PRAGMA user_version` holds the schema version. `MIGRATIONS[n]` takes a database
from version n to n + 1; version 0 is an empty file. Old steps are never edited:
a database written by any earlier gptterm migrates forward through them, and the
tests build each older version from `MIGRATIONS[:v]` to check that.
"""

from __future__ import annotations

import sqlite3

# Version 1: sessions and their turns. JSON columns hold lists/dicts as text.
_V1 = """
CREATE TABLE sessions (
    id      TEXT PRIMARY KEY,
    title   TEXT NOT NULL DEFAULT '',
    name    TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE turns (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    role       TEXT NOT NULL,
    text       TEXT NOT NULL DEFAULT '',
    model      TEXT,
    preset     TEXT,
    seed       INTEGER,
    token_ids  TEXT NOT NULL DEFAULT '[]',
    chunks     TEXT NOT NULL DEFAULT '[]',
    status     TEXT NOT NULL DEFAULT 'complete',
    stats      TEXT NOT NULL DEFAULT '{}',
    created    REAL NOT NULL
);
CREATE INDEX turns_by_session ON turns(session_id, idx);
"""

# Version 2: full-text search over turn text, kept in step by triggers
# (an external-content FTS5 table: the text is stored once, in `turns`).
_V2 = """
CREATE VIRTUAL TABLE turns_fts USING fts5(
    text, content='turns', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns BEGIN
    INSERT INTO turns_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER turns_fts_update AFTER UPDATE OF text ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO turns_fts(rowid, text) VALUES (new.id, new.text);
END;
INSERT INTO turns_fts(turns_fts) VALUES ('rebuild');
"""

# Version 3: a session name (`--session NAME`) names one session only, and a
# session's turn positions are unique (two writers cannot both take the same slot).
# Older files may hold duplicates: later copies of a name are cleared and turn
# positions renumbered first, so the unique indexes can be built.
_V3 = """
UPDATE sessions SET name = NULL WHERE name IS NOT NULL AND rowid NOT IN (
    SELECT min(rowid) FROM sessions WHERE name IS NOT NULL GROUP BY name
);
CREATE TEMP TABLE renumbered AS SELECT id, row_number() OVER (
    PARTITION BY session_id ORDER BY idx, id) - 1 AS n FROM turns;
UPDATE turns SET idx = (SELECT n FROM renumbered WHERE renumbered.id = turns.id);
DROP TABLE renumbered;
DROP INDEX turns_by_session;
CREATE UNIQUE INDEX turns_by_session ON turns(session_id, idx);
CREATE UNIQUE INDEX sessions_by_name ON sessions(name) WHERE name IS NOT NULL;
CREATE INDEX sessions_by_updated ON sessions(updated);
"""

# Version 4: which process streams a turn ("host:pid"), so a turn left "partial" by a
# process that died can be told from one still being written (see store.core).
_V4 = """
ALTER TABLE turns ADD COLUMN writer TEXT;
CREATE INDEX turns_partial ON turns(status) WHERE status = 'partial';
"""

# Version 5: a session remembers its model, preset name and sampling overrides (a JSON
# object), so it reopens as it was left. Older sessions take the model and preset name
# of their last model turn that names one; a damaged stored preset is skipped (json_valid
# first: json_extract raises on bad JSON, which would stop the migration).
_V5 = """
ALTER TABLE sessions ADD COLUMN model TEXT;
ALTER TABLE sessions ADD COLUMN preset TEXT;
ALTER TABLE sessions ADD COLUMN sampling TEXT NOT NULL DEFAULT '{}';
UPDATE sessions SET
    model = (SELECT t.model FROM turns t WHERE t.session_id = sessions.id
             AND t.role = 'model' AND typeof(t.model) = 'text'
             ORDER BY t.idx DESC LIMIT 1),
    preset = (SELECT json_extract(t.preset, '$.name') FROM turns t
              WHERE t.session_id = sessions.id AND t.role = 'model'
              AND CASE WHEN typeof(t.preset) = 'text' AND json_valid(t.preset)
                       THEN json_type(t.preset, '$.name') = 'text' ELSE 0 END
              ORDER BY t.idx DESC LIMIT 1);
"""

# Version 6: a session is a tree of turns. A turn follows its `parent_id` (NULL: the first);
# turns with the same parent are alternatives (regenerated replies, edited versions), and
# `chosen` marks the one the session continues from. `on_path` marks the chosen path from
# the first turn down (kept in step by every write, so reading a session stays one indexed
# query); positions are unique on that path only, since alternatives share a position.
# Older sessions become one path, each turn following the one before it (positions keep
# their gaps). A session also gains its pinned `memory`, where a branch came from, and
# `undo_steps`: what each generation, edit or choice did, newest last, so it can be undone.
_V6 = """
ALTER TABLE turns ADD COLUMN parent_id INTEGER;
ALTER TABLE turns ADD COLUMN chosen INTEGER NOT NULL DEFAULT 1;
ALTER TABLE turns ADD COLUMN on_path INTEGER NOT NULL DEFAULT 1;
CREATE TEMP TABLE chain (id INTEGER PRIMARY KEY, parent INTEGER);
INSERT INTO chain SELECT id, lag(id) OVER (PARTITION BY session_id ORDER BY idx, id) FROM turns;
UPDATE turns SET parent_id = (SELECT parent FROM chain WHERE chain.id = turns.id);
DROP TABLE chain;
DROP INDEX turns_by_session;
CREATE UNIQUE INDEX turns_on_path ON turns(session_id, idx) WHERE on_path = 1;
CREATE INDEX turns_by_parent ON turns(session_id, parent_id);
ALTER TABLE sessions ADD COLUMN memory TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN branched_from TEXT;
ALTER TABLE sessions ADD COLUMN branched_at INTEGER;
CREATE TABLE undo_steps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    action     TEXT NOT NULL,
    turn_id    INTEGER NOT NULL,
    previous   INTEGER,
    created    REAL NOT NULL
);
CREATE INDEX undo_by_session ON undo_steps(session_id, id);
"""

# Version 7: what every stage of the sampling chain made of each token of a reply (the
# stage inspector), top_k candidates per stage, as JSON (see store.inspection); gone with
# its turn.
_V7 = """
CREATE TABLE turn_inspect (
    turn_id INTEGER PRIMARY KEY REFERENCES turns(id) ON DELETE CASCADE,
    top_k   INTEGER NOT NULL,
    data    TEXT NOT NULL
);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7]
SCHEMA_VERSION = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def apply(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring `conn` (autocommit mode) up to `target`; returns the version it started at.

    Runs in one IMMEDIATE transaction, so two processes opening a fresh file at
    once migrate it exactly once (the second sees the new version and does nothing).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = version(conn)
        for step in range(start, target):
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return start


def shape(conn: sqlite3.Connection) -> set[str]:
    """What a database holds: "table x", "index y", "trigger z" and "column x.c" names."""
    out = set()
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master"
                        " WHERE name NOT LIKE 'sqlite_%'").fetchall()
    for kind, name, sql in rows:
        out.add(f"{kind} {name}")
        if kind == "table" and not (sql or "").upper().startswith("CREATE VIRTUAL"):
            quoted = name.replace('"', '""')
            out.update(f"column {name}.{r[1]}"
                       for r in conn.execute(f'PRAGMA table_info("{quoted}")'))
    return out


_EXPECTED: dict[int, set[str]] = {}


def expected_shape(version: int) -> set[str]:
    """`shape` of a database built by the first `version` migrations."""
    if version not in _EXPECTED:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            apply(conn, target=version)
            _EXPECTED[version] = shape(conn)
        finally:
            conn.close()
    return _EXPECTED[version]


def mismatch(conn: sqlite3.Connection, found: int) -> str:
    """Why the tables of `conn` are not what its user_version `found` says ('' if they are).

    Extra tables (a user's own) are allowed; anything a migration made must be there.
    """
    have = shape(conn)
    if found == 0:
        return f"it holds {sorted(have)[0]} but no schema version" if have else ""
    missing = sorted(expected_shape(found) - have)
    if not missing:
        return ""
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return f"schema version {found} but missing {', '.join(missing[:3])}{more}"


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers hold `;` inside BEGIN ... END)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
