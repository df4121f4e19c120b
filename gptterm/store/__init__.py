"""The SQLite session store: sessions, turns, autosave, search, export and import.

Stdlib only (sqlite3, json). `Store` is the entry point. Modules by job:
`records` (Session, Turn, value rules, rows to records), `opening` (the database
file: open, classify errors, move aside only real damage), `schema` (migrations),
`core` (Store: sessions and turns), `writer` (TurnWriter: a streaming turn),
`search` and `exporting` (plain functions over records).
"""

from gptterm.store.core import Store
from gptterm.store.records import (
    FINAL_STATUSES,
    ROLES,
    STATUSES,
    Session,
    StoreError,
    Turn,
    title_from,
)
from gptterm.store.writer import TurnWriter

__all__ = ["FINAL_STATUSES", "ROLES", "STATUSES", "Session", "Store", "StoreError", "Turn",
           "TurnWriter", "title_from"]
