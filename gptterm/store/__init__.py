"""The SQLite session store: sessions, turns, autosave, search, export and import.

Stdlib only (sqlite3, json). `Store` is the entry point; see `core` for the
schema of a turn, `schema` for migrations, `exporting` for the file formats.
"""

from gptterm.store.core import (
    FINAL_STATUSES,
    ROLES,
    STATUSES,
    Session,
    Store,
    StoreError,
    Turn,
    TurnWriter,
    title_from,
)

__all__ = ["FINAL_STATUSES", "ROLES", "STATUSES", "Session", "Store", "StoreError", "Turn",
           "TurnWriter", "title_from"]
