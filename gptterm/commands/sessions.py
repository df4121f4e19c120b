"""`gptterm sessions list|show|search|export|import|rename|delete|branch|memory|context`:
the stored sessions.

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

    q = ss.add_parser("show", help="print a session's turns (a turn with alternatives says "
                                   "which one it is: reply 2/3)")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.add_argument("--all", action="store_true",
                   help="print every alternative of each turn, not only the chosen one")
    q.set_defaults(func=run_show)

    q = ss.add_parser("branch", help="start a new session from a session's turns 0..N")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.add_argument("--at", type=int, required=True, metavar="N",
                   help="the last turn to keep, numbered as `sessions show` numbers them")
    q.add_argument("--name", metavar="NEW", help="a name for the new session")
    q.set_defaults(func=run_branch)

    q = ss.add_parser("memory", help="set, clear or print a session's pinned memory: text "
                                     "that always opens the model's context")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.add_argument("text", metavar="TEXT", nargs="?",
                   help="the memory (- reads stdin); without TEXT, print it")
    q.add_argument("--clear", action="store_true", help="remove the memory")
    q.set_defaults(func=run_memory)

    q = ss.add_parser("context", help="print exactly the text the session's next generation "
                                      "feeds the model (memory and window trimming included)")
    q.add_argument("session", metavar="ID", help=ref_help)
    q.set_defaults(func=run_context)

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
    from gptterm.store.exporting import alternative_mark, turn_heading, turn_stats_line
    from gptterm.store.records import when

    with open_store() as store:
        session = find(store, args.session)
        turns = store.turns(session.id)
        shown = [store.alternatives(t.id) if args.all and t.alternatives > 1 else [t]
                 for t in turns]
        after = _turns_after(store.tree_turns(session.id)) if args.all else {}
    name = f", name {label(session.name)}" if session.name else ""
    branched = (f", branched from {label(session.branched_from)} at turn {session.branched_at}"
                if session.branched_from else "")
    print(f"{label(session.label)}  (id {label(session.id)}{name}, {len(turns)} turns, "
          f"updated {when(session.updated)}{branched})")
    if session.memory:
        print("\n--- memory (pinned at the start of the context)")
        say(session.memory)
    for turn, versions in zip(turns, shown):
        for version in versions:
            stats = turn_stats_line(version) if version.role == "model" else ""
            mark = alternative_mark(version)
            chosen = " · chosen" if args.all and len(versions) > 1 and version.id == turn.id \
                else ""
            print(f"\n--- {version.index}: {turn_heading(version)}"
                  + (f" · {mark}{chosen}" if mark else "") + (f" ({stats})" if stats else ""))
            say(version.text)
            if version.id != turn.id and after.get(version.id):
                print(f"(then {after[version.id]} more turns after this version)")
    return 0


def _turns_after(tree) -> dict[int, int]:
    """How many turns follow each turn of a session's tree (all its branches), by turn id.
    `tree` is in the order turns were written, each after the turn it follows."""
    count = {t.id: 0 for t in tree}
    parent = {t.id: t.parent_id for t in tree}
    for t in reversed(tree):  # children before parents: each adds itself and its own
        if parent[t.id] in count:
            count[parent[t.id]] += count[t.id] + 1
    return count


@guarded
def run_branch(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = find(store, args.session)
        new = store.branch(session.id, args.at, args.name)
    print(new.id)
    return 0


@guarded
def run_memory(args: argparse.Namespace) -> int:
    from gptterm.cli_types import read_text

    if args.clear and args.text is not None:
        raise UsageError("--clear: expected no TEXT")
    text = None
    if args.text is not None:
        try:
            text = read_text(args.text, "memory")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    with open_store() as store:
        session = find(store, args.session)
        if args.clear or text is not None:
            store.set_memory(session.id, text)
            what = "cleared" if not text else f"set ({len(text)} characters)"
            print(f"memory of {label(session.id)} {what}", file=sys.stderr)
        elif session.memory:
            say(session.memory)
    return 0


@guarded
def run_context(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = find(store, args.session)
        turns = store.context_turns(session.id)
    text, notes = next_context(session, turns)
    for note in notes:
        print(f"gptterm: {note}", file=sys.stderr)
    sys.stdout.write(inert(text) if sys.stdout.isatty() else text)
    return 0


def next_context(session, turns) -> tuple[str, list[str]]:
    """The text the session's next generation feeds its model, and notes for the user.

    As a fresh `generate --session` would run it (the session's model and preset): its
    memory and turns (recorder.context_segments) as that model's tokens
    (engine.context.context_ids), the window placed by engine.window.place_pinned with
    the memory pinned. Only the tokenizer and the model's config are loaded, never its
    weights; they come through transformers' Auto classes, as the engine loads them, so
    the tokens are the engine's own (the `tokenizers` package alone would miss a model's
    added special tokens). A model on a server is not tokenized here: its whole context
    is shown, and a note says the server places the window.
    """
    from gptterm import catalog
    from gptterm.commands.generate import load_name, resolve_preset
    from gptterm.engine import window
    from gptterm.engine.context import context_ids
    from gptterm.recorder import context_segments
    from gptterm.remote import is_remote

    preset = resolve_preset(None, [], session)
    model = load_name(session.model or catalog.DEFAULT_MODEL)
    segments = context_segments(turns, model, session.memory)
    whole = "".join(s.text for s in segments)
    if is_remote(model):
        note = f"{label(model)} runs on a server, which fits the window itself: the whole context"
        return whole, [note]
    tokenizer, n_ctx, vocab_size = _tokenizer_and_window(model)
    start_token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
        else tokenizer.eos_token_id
    ids, made = context_ids(tokenizer, segments, vocab_size, start_token)
    pinned = len(made[0][1]) if session.memory and made and made[0][0] == 0 else 0
    need = window.room_needed(preset.method, window.cap_max_new(preset.max_new_tokens, n_ctx),
                              pinned)
    start = window.place_pinned(len(ids), pinned, 0, n_ctx, need)
    kept = window.pinned_kept(pinned, n_ctx, need)
    if start <= kept:  # nothing left out
        return whole, []

    def decode(part: list[int]) -> str:
        return tokenizer.decode(part, clean_up_tokenization_spaces=False) if part else ""

    head = segments[0].text if pinned and kept == pinned else decode(ids[:kept])
    notes = [f"the context is longer than {label(model)}'s {n_ctx}-token window: "
             f"{start - kept} tokens after the memory are left out"
             if pinned else f"the context is longer than {label(model)}'s {n_ctx}-token "
             f"window: the oldest {start} tokens are left out"]
    if kept < pinned:
        notes.append(f"the memory takes {pinned} tokens; only its first {kept} stay pinned")
    return head + decode(ids[start:]), notes


def _tokenizer_and_window(model: str):
    """(tokenizer, window, vocabulary size) of a model, from its files alone."""
    from gptterm import catalog
    from gptterm.engine.loading import check_source, quiet_transformers
    from gptterm.errors import first_line

    spec = catalog.resolve(model)
    try:
        source = check_source(spec)
        quiet_transformers()
        from transformers import AutoConfig, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True,
                                                  **spec.special_tokens)
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - LoadError or any of transformers' kinds
        raise UsageError(f"{label(spec.name)}: cannot load its tokenizer: "
                         f"{label(first_line(exc))}") from None
    n_ctx = int(getattr(config, "n_positions", None)
                or getattr(config, "max_position_embeddings", 1024))
    return tokenizer, n_ctx, int(getattr(config, "vocab_size", None) or len(tokenizer))


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
