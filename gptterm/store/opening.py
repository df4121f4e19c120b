"""The sessions database file: opening it, and the one place SQLite errors become words.

`Database` owns the connection. Opening sorts every failure into one of three kinds:

- damage (SQLITE_NOTADB, SQLITE_CORRUPT, a failed quick_check): the file and its
  -wal/-shm are renamed to `sessions.db.corrupt-<time>` (never deleted) and a fresh
  database is made; `recovery_message` says so;
- busy (another process is creating or migrating the file): retried for up to
  BUSY_TIMEOUT_S;
- anything else (disk full, permission denied, a read-only file system, tables that
  do not match the schema version, a data folder that is a file): one `StoreError`
  line, and nothing is touched.

After opening, `read` and `write` turn any SQLite error into one `StoreError` line
(`describe`), so no caller ever sees a raw sqlite3 exception.

Permissions: the database and its -wal/-shm are private to the user (0600; SQLite
gives the -wal/-shm the database's mode). A folder the store creates is made 0700. A
folder that already existed is left alone (it may be one the user shares on purpose),
except gptterm's own default data folder, which `Store` tightens to 0700.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gptterm.errors import first_line
from gptterm.store import schema
from gptterm.store.records import StoreError

BUSY_TIMEOUT_S = 30.0
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_SIDE_FILES = ("-wal", "-shm")


class _Corrupt(sqlite3.DatabaseError):
    """The integrity check failed on an otherwise readable file."""


class _Refused(Exception):
    """Opening stopped for a reason that is not damage; the message is the line."""


def is_damage(exc: BaseException) -> bool:
    """Whether an error while opening means the file itself is damaged (so move it aside).

    Only the codes SQLite uses for a bad file count; disk full, permissions, I/O errors
    and read-only media do not, and neither does a damaged full-text index (a derived
    index, rebuilt in place by search).
    """
    if isinstance(exc, _Corrupt):
        return True
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name == "SQLITE_NOTADB" or (name.startswith("SQLITE_CORRUPT")
                                       and name != "SQLITE_CORRUPT_VTAB")


def is_busy(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def reason(exc: BaseException) -> str:
    """The cause of a SQLite or OS error, in words."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL" or name == "SQLITE_IOERR_SHMSIZE" or (
            isinstance(exc, OSError) and exc.errno == 28):
        return "the disk is full"
    if is_busy(exc):
        return (f"another process has held the database locked for over "
                f"{BUSY_TIMEOUT_S:g} s")
    if name.startswith("SQLITE_READONLY"):
        return "the database is read-only (file permissions or a read-only file system)"
    if name.startswith("SQLITE_CANTOPEN"):
        return "unable to open the file (no permission, or its folder is missing)"
    if name in ("SQLITE_PERM", "SQLITE_AUTH"):
        return "permission denied"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)


def describe(path: Path, doing: str, exc: BaseException) -> str:
    """One line: `PATH: cannot DOING: REASON`."""
    return f"{path}: cannot {doing}: {reason(exc)}"


def make_private_dir(folder: Path, *, tighten: bool) -> None:
    """Create `folder` (0700); with `tighten`, also make an existing one 0700."""
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder}: the data folder is a file, not a folder: move it away")
    try:
        folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if tighten:
            _tighten(folder, PRIVATE_DIR)
    except OSError as exc:
        raise StoreError(describe(folder, "create the data folder", exc)) from None


def _tighten(path: Path, mode: int) -> None:
    """Clear group/other bits of a path we own (best effort: a read-only medium keeps them)."""
    with contextlib.suppress(OSError):
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            path.chmod(stat.S_IMODE(st.st_mode) & mode)


def _create_private(path: Path) -> None:
    """Create the database file as 0600 before SQLite does (it would use 0644)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        for p in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
            _tighten(p, PRIVATE_FILE)
    except OSError as exc:
        raise StoreError(describe(path, "create the sessions database", exc)) from None


class Database:
    """One SQLite connection to `path`, opened (or recovered), with one lock around it."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.recovered_from: Path | None = None  # where a damaged file was moved to
        self.recovery_reason = ""
        _create_private(path)
        try:
            self.conn = self._open_when_free()
        except _Refused as exc:
            raise StoreError(str(exc)) from None
        except (sqlite3.Error, OSError) as exc:
            if not is_damage(exc):
                raise StoreError(describe(path, "open the sessions database", exc)) from None
            self._move_aside(first_line(exc))
            _create_private(path)
            try:
                self.conn = self._open()
            except (sqlite3.Error, OSError, _Refused) as again:
                raise StoreError(describe(path, "create a fresh sessions database",
                                          again)) from None

    # ------------------------------------------------------------ opening

    def _open_when_free(self) -> sqlite3.Connection:
        """`_open`, retried while another process holds the file: switching a new file to
        WAL takes an exclusive lock that SQLite's busy timeout does not wait for."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # One read snapshot: a process migrating the file meanwhile cannot make the
            # version and the tables seem to disagree.
            conn.execute("BEGIN")
            try:
                found = self._check(conn)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
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

    def _check(self, conn: sqlite3.Connection) -> int:
        """The file's schema version, once it is known to be sound and to match its tables."""
        # Reading the header first makes a non-database fail here, as NOTADB.
        found = schema.version(conn)
        if found > schema.SCHEMA_VERSION:
            raise _Refused(
                f"{self.path}: written by a newer gptterm (schema {found}, this one knows "
                f"{schema.SCHEMA_VERSION}): upgrade gptterm")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _Corrupt(f"integrity check failed: {check}")
        wrong = schema.mismatch(conn, found)
        if wrong:
            raise _Refused(f"{self.path}: not opened: its tables do not match ({wrong}); "
                           "move the file away to start a fresh one")
        return found

    def _move_aside(self, why: str) -> None:
        """Rename the damaged file (and its WAL files) to a timestamped name; never delete."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            self.path.rename(target)
            for suffix in _SIDE_FILES:
                extra = self.path.with_name(self.path.name + suffix)
                if extra.exists():
                    extra.rename(target.with_name(target.name + suffix))
        except OSError as exc:
            raise StoreError(f"{self.path}: the sessions database is damaged ({why}) and "
                             f"could not be moved aside: {reason(exc)}") from None
        self.recovered_from = target
        self.recovery_reason = why

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # ------------------------------------------------------------ access

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one query, raising sqlite3 errors as they are (for callers that repair)."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one query; any failure is one StoreError line."""
        try:
            return self.query(sql, params)
        except (sqlite3.Error, UnicodeEncodeError, OverflowError) as exc:
            raise StoreError(describe(self.path, "read the sessions database", exc)) from None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction under the lock; any failure is one StoreError line.

        IMMEDIATE takes the write lock up front, so a busy database makes us wait
        (busy timeout) at BEGIN instead of failing halfway through. On any error
        the transaction is rolled back, so nothing is half written.
        """
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(describe(self.path, "save", exc)) from None
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, (sqlite3.Error, OverflowError, UnicodeEncodeError)):
                    raise StoreError(describe(self.path, "save", exc)) from None
                raise

    def execute_write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the rows it changed."""
        with self.write() as conn:
            return conn.execute(sql, params).rowcount
