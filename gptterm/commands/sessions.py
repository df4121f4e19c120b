"""`gptterm sessions list|show|search|export|import|rename|delete`: the stored sessions."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gptterm.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sessions", help="list, show, search, export, import, rename, delete "
                                        "stored sessions")
    ss = p.add_subparsers(dest="action", metavar="ACTION")
    ref_help = "session id, name or title"

    q = ss.add_parser("list", help="all sessions, most recently updated first")
    q.add_argument("--json", action="store_true", help="one JSON object per session per line")
    q.set_defaults(func=run_list)

    q = ss.add_parser("show", help="print a session's turns")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.set_defaults(func=run_show)

    q = ss.add_parser("search", help="find turns holding all of WORDS (word* for a prefix)")
    q.add_argument("words", metavar="WORDS", nargs="+")
    q.add_argument("--json", action="store_true", help="one JSON object per hit per line")
    q.set_defaults(func=run_search)

    q = ss.add_parser("export", help="write a session as Markdown or JSON")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.add_argument("--format", choices=["md", "json"], default="md",
                   help="md for people (default), json to import again")
    q.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    q.set_defaults(func=run_export)

    q = ss.add_parser("import", help="add a session from a JSON export")
    q.add_argument("file", metavar="FILE", help="a `sessions export --format json` file (- = stdin)")
    q.set_defaults(func=run_import)

    q = ss.add_parser("rename", help="give a session a new title")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.add_argument("title", metavar="TITLE")
    q.set_defaults(func=run_rename)

    q = ss.add_parser("delete", help="delete a session and its turns")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.set_defaults(func=run_delete)

    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def open_store():
    """The user's store; a recovered (moved aside) database is reported on stderr."""
    from gptterm.store import Store, StoreError

    try:
        store = Store()
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    if store.recovery_message:
        print(f"gptterm: {store.recovery_message}", file=sys.stderr)
    return store


def find(store, ref: str):
    from gptterm.store import StoreError

    try:
        return store.find_session(ref)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _session_json(session, turns: int) -> dict:
    return {"id": session.id, "name": session.name, "title": session.title,
            "created": session.created, "updated": session.updated, "turns": turns}


def run_list(args: argparse.Namespace) -> int:
    store = open_store()
    sessions = store.list_sessions()
    counts = store.turn_counts()
    store.close()
    if args.json:
        for s in sessions:
            print(json.dumps(_session_json(s, counts.get(s.id, 0)), ensure_ascii=False))
        return 0
    if not sessions:
        print("no sessions yet: `gptterm generate PROMPT --session NAME` or the TUI makes one")
        return 0
    rows = [("ID", "NAME", "TURNS", "UPDATED", "TITLE")]
    rows += [(s.id, s.name or "-", str(counts.get(s.id, 0)), _when(s.updated), s.title or "-")
             for s in sessions]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    return 0


def run_show(args: argparse.Namespace) -> int:
    from gptterm.store.exporting import turn_heading, turn_stats_line

    store = open_store()
    session = find(store, args.session)
    turns = store.turns(session.id)
    store.close()
    name = f", name {session.name}" if session.name else ""
    print(f"{session.label}  (id {session.id}{name}, {len(turns)} turns, "
          f"updated {_when(session.updated)})")
    for turn in turns:
        stats = turn_stats_line(turn) if turn.role == "model" else ""
        print(f"\n--- {turn.index}: {turn_heading(turn)}" + (f" ({stats})" if stats else ""))
        print(turn.text)
    return 0


def run_search(args: argparse.Namespace) -> int:
    store = open_store()
    hits = store.search(" ".join(args.words))
    store.close()
    if args.json:
        for session, turn, snip in hits:
            print(json.dumps({"session": session.id, "title": session.title,
                              "name": session.name, "turn": turn.index, "role": turn.role,
                              "snippet": snip}, ensure_ascii=False))
        return 0
    if not hits:
        print(f"no turns match {' '.join(args.words)!r}")
        return 1
    for session, turn, snip in hits:
        print(f"{session.id}  {session.label[:30]:<30}  turn {turn.index} ({turn.role}): {snip}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    store = open_store()
    session = find(store, args.session)
    if args.format == "json":
        text = json.dumps(store.export_json(session.id), ensure_ascii=False, indent=1) + "\n"
    else:
        text = store.export_markdown(session.id)
    store.close()
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from gptterm.store import StoreError

    where = "stdin" if args.file == "-" else args.file
    try:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not valid JSON: {exc}") from None
    store = open_store()
    try:
        given = data.get("session") if isinstance(data, dict) else None
        given = given if isinstance(given, dict) else {}
        session = store.import_json(data, where=where)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    notes = []
    if session.id != given.get("id"):
        notes.append(f"id {given.get('id')} was taken: imported as a copy")
    if given.get("name") and session.name is None:
        notes.append(f"name {given['name']!r} was taken: imported without a name")
    print(f"imported {session.id}: {session.label}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


def run_rename(args: argparse.Namespace) -> int:
    if not args.title.strip():
        raise UsageError("TITLE: expected a non-empty title")
    store = open_store()
    session = find(store, args.session)
    store.rename_session(session.id, args.title)
    store.close()
    print(f"renamed {session.id}: {args.title}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    store = open_store()
    session = find(store, args.session)
    store.delete_session(session.id)
    store.close()
    print(f"deleted {session.id}: {session.label}")
    return 0
