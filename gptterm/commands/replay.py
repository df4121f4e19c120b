"""`gptterm replay ID`: play a stored session back, or re-run it to verify it."""

from __future__ import annotations

import argparse
import json
import sys

from gptterm.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="play a stored session back with its timing, or --verify it",
        description="Play a stored session to stdout with its recorded timing, or with "
                    "--verify re-run each model turn (saved model, preset, seed) and report "
                    "whether the same tokens come out.")
    p.add_argument("session", metavar="ID", help="session id, name or title")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="play X times faster (default 1)")
    p.add_argument("--verify", action="store_true",
                   help="re-run every model turn and report identical or the first token "
                        "index that differs")
    p.add_argument("--json", action="store_true", help="with --verify: one JSON line per turn")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="with --verify: where to run the models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptterm.commands.sessions import find, open_store

    store = open_store()
    session = find(store, args.session)
    turns = store.turns(session.id)
    store.close()
    if args.verify:
        return _verify(turns, args)
    if not args.speed > 0:
        raise UsageError(f"--speed {args.speed}: expected a number > 0")
    return _play(turns, args.speed)


def _play(turns, speed: float) -> int:
    from gptterm import replay

    bold = sys.stdout.isatty()

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def on_turn(turn) -> None:  # show the user's text in bold on a terminal
        if bold:
            write("\x1b[1m" if turn.role == "user" else "\x1b[0m")

    replay.play(turns, write, speed=speed, on_turn=on_turn)
    write(("\x1b[0m" if bold else "") + "\n")
    return 0


def _verify(turns, args: argparse.Namespace) -> int:
    from gptterm import replay

    checks = []
    with replay.EngineRunner(device=args.device) as runner:
        for check in replay.verify(turns, runner):
            checks.append(check)
            print(json.dumps(check.as_json()) if args.json else check.line(), flush=True)
    if not checks:
        if not args.json:
            print("no model turns to verify")
        return 0
    if not args.json:
        same = sum(c.ok for c in checks)
        print(f"{same} of {len(checks)} model turns identical")
    return 0 if all(c.ok for c in checks) else 1
