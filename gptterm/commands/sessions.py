"""`gptterm sessions list|show|search|export|import|rename|delete`: the stored sessions.

Also the output rules every command that prints stored sessions shares (`guarded`,
`say`, `label`, `json_line`, `columns`):

- Stored strings (titles, names, ids, model and preset names, turn text) may come
  from an imported file and hold terminal control sequences. Import keeps them as
  they are (an export round-trips); they are always shown through `textsafe.inert`
  (one-line labels with `single_line=True`), and JSON lines escape every control,
  bidi and surrogate character.
- A store failure (disk full, a lock held too long, a read-only file) is one line,
  `gptterm: ...`, exit code 2. A closed pipe (`| head`) ends the command quietly with
  exit code 141, as a program stopped by SIGPIPE; any other stdout failure
  (`> /dev/full`) is one line, exit code 2.
- Tables are measured in terminal cells, not characters: a Korean or Chinese
  character takes two, so the columns after a CJK title still line up.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptterm.cli import UsageError
from gptterm.safefile import replace_file
from gptterm.textsafe import inert

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cmd | head`
SEARCH_TITLE_CELLS = 30  # a longer title is cut, so the hits stay one line each


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

    q = ss.add_parser("export", help="write a session as Markdown, JSON or plain text")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.add_argument("--format", choices=["md", "json", "story"], default="md",
                   help="md for people (default), json to import again, story: the whole "
                   "text as the model saw it, no headers")
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


# ------------------------------------------------------------------ shared output rules


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command so that store and stdout failures end it with one line (see module doc)."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from gptterm.store import StoreError

        try:
            code = func(args)
            sys.stdout.flush()  # a full disk or closed pipe shows here, not at exit
            return code
        except StoreError as exc:
            raise UsageError(label(str(exc))) from None
        except BrokenPipeError:
            _drop_stdout()
            return EXIT_BROKEN_PIPE
        except OSError as exc:
            if exc.filename is not None:
                raise UsageError(label(f"{exc.filename}: {exc.strerror or exc}")) from None
            _drop_stdout()
            raise UsageError(f"stdout: cannot write: {exc.strerror or exc}") from None

    return run


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def label(text: Any) -> str:
    """A stored string shown on one line, control characters made visible."""
    return inert("" if text is None else str(text), single_line=True)


def say(text: str = "") -> None:
    """Print stored text (a turn) on stdout, control characters made visible."""
    print(inert(text))


# Characters json.dumps(ensure_ascii=False) leaves raw that a terminal would act on.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def cut(text: str, width: int) -> str:
    """`text` cut with an ellipsis to at most `width` terminal cells (CJK takes two)."""
    from rich.cells import cell_len, set_cell_size

    return text if cell_len(text) <= width else set_cell_size(text, width - 1) + "…"


def columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines whose columns line up: each column but the last is padded to its
    widest cell, counted in terminal cells (a CJK character is two, not one)."""
    from rich.cells import cell_len

    widths = [max(cell_len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c + " " * (w - cell_len(c)) for c, w in zip(r, widths)), r[-1]])
            for r in rows]


def json_line(obj: Any, *, indent: int | None = None) -> str:
    """JSON (readable Unicode) with every control, bidi or surrogate character escaped."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
        raise UsageError(label(str(exc))) from None


def _session_json(session, turns: int) -> dict:
    return {"id": session.id, "name": session.name, "title": session.title,
            "created": session.created, "updated": session.updated, "turns": turns}


# ------------------------------------------------------------------ commands


@guarded
def run_list(args: argparse.Namespace) -> int:
    from gptterm.store.records import when

    with open_store() as store:
        sessions = store.list_sessions()
        counts = store.turn_counts()
    if args.json:
        for s in sessions:
            print(json_line(_session_json(s, counts.get(s.id, 0))))
        return 0
    if not sessions:
        print("no sessions yet: `gptterm generate PROMPT --session NAME` or the TUI makes one")
        return 0
    rows = [("ID", "NAME", "TURNS", "UPDATED", "TITLE")]
    rows += [(label(s.id), label(s.name or "-"), str(counts.get(s.id, 0)), when(s.updated),
              label(s.title or "-")) for s in sessions]
    for line in columns(rows):
        print(line)
    return 0


@guarded
def run_show(args: argparse.Namespace) -> int:
    from gptterm.store.exporting import turn_heading, turn_stats_line
    from gptterm.store.records import when

    with open_store() as store:
        session = find(store, args.session)
        turns = store.turns(session.id)
    name = f", name {label(session.name)}" if session.name else ""
    print(f"{label(session.label)}  (id {label(session.id)}{name}, {len(turns)} turns, "
          f"updated {when(session.updated)})")
    for turn in turns:
        stats = turn_stats_line(turn) if turn.role == "model" else ""
        print(f"\n--- {turn.index}: {turn_heading(turn)}" + (f" ({stats})" if stats else ""))
        say(turn.text)
    return 0


@guarded
def run_search(args: argparse.Namespace) -> int:
    with open_store() as store:
        hits = store.search(" ".join(args.words))
    if args.json:
        for session, turn, snip in hits:
            print(json_line({"session": session.id, "title": session.title,
                             "name": session.name, "turn": turn.index, "role": turn.role,
                             "snippet": snip}))
        return 0
    if not hits:
        print(f"no turns match {label(' '.join(args.words))!r}")
        return 1
    rows = [(label(session.id), cut(label(session.label), SEARCH_TITLE_CELLS),
             f"turn {turn.index} ({turn.role}):", label(snip)) for session, turn, snip in hits]
    for line in columns(rows):
        print(line)
    return 0


@guarded
def run_export(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = find(store, args.session)
        if args.format == "json":
            text = json_line(store.export_json(session.id), indent=1) + "\n"
        elif args.format == "story":
            from gptterm.store.exporting import story

            text = story(store.turns(session.id))
        else:
            text = store.export_markdown(session.id)
    if not args.output:
        # A story is the text exactly as stored; on a terminal its controls are shown inert.
        tty = args.format == "story" and sys.stdout.isatty()
        sys.stdout.write(inert(text) if tty else text)
        return 0
    try:
        replace_file(Path(args.output), text)
    except OSError as exc:
        raise UsageError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


@guarded
def run_import(args: argparse.Namespace) -> int:
    where = "stdin" if args.file == "-" else args.file
    try:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise UsageError(f"{where}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers of > 4300 digits
        from gptterm.errors import first_line

        raise UsageError(f"{where}: not valid JSON: {first_line(exc)}") from None
    with open_store() as store:
        session = store.import_json(data, where=where)
    given = data.get("session") if isinstance(data, dict) else None
    given = given if isinstance(given, dict) else {}
    notes = []
    if session.id != given.get("id"):
        notes.append(f"id {label(given.get('id'))} was taken or not a gptterm id: "
                     "imported with a new id")
    if given.get("name") and session.name is None:
        notes.append(f"name {label(given['name'])!r} was taken or looks like an id: "
                     "imported without a name")
    print(f"imported {label(session.id)}: {label(session.label)}"
          + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


@guarded
def run_rename(args: argparse.Namespace) -> int:
    if not args.title.strip():
        raise UsageError("TITLE: expected a non-empty title")
    with open_store() as store:
        session = find(store, args.session)
        store.rename_session(session.id, args.title)
    print(f"renamed {label(session.id)}: {label(args.title)}")
    return 0


@guarded
def run_delete(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = find(store, args.session)
        store.delete_session(session.id)
    print(f"deleted {label(session.id)}: {label(session.label)}")
    return 0
