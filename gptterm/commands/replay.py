"""`gptterm replay ID`: play a stored session back, or re-run it to verify it.

Playback plays the session's chosen path; --verify re-runs every reply of its tree
(alternatives too), each after its own context.

Stored text is written through `textsafe.inert` (imported sessions may hold escape
sequences); no single wait lasts over MAX_WAIT_S whatever times are stored; store
and stdout failures end with one line (`sessions.guarded`).
"""

from __future__ import annotations

import argparse
import sys
import time

from gptterm.cli import UsageError
from gptterm.commands.sessions import guarded, json_line, label
from gptterm.textsafe import inert

MAX_WAIT_S = 5.0  # the longest pause playback makes, whatever a stored turn says


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
                   help="re-run every model turn, alternatives too, and report identical "
                        "or the first token index that differs")
    p.add_argument("--json", action="store_true", help="with --verify: one JSON line per turn")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="with --verify: where to run the models")
    p.set_defaults(func=run)


@guarded
def run(args: argparse.Namespace) -> int:
    from gptterm.commands.sessions import find, open_store

    with open_store() as store:
        session = find(store, args.session)
        turns = store.turns(session.id)
        if args.verify:  # every reply of the tree, each after the turns it follows
            pairs = [(t, store.turns_before_turn(t.id)) for t in store.tree_turns(session.id)
                     if t.role == "model"]
    if args.verify:
        return _verify(pairs, args)
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

    sleep, clock = capped_waits(time.sleep, time.monotonic, MAX_WAIT_S)
    replay.play(turns, lambda text: write(inert(text)), speed=speed, on_turn=on_turn,
                sleep=sleep, clock=clock)
    write(("\x1b[0m" if bold else "") + "\n")
    return 0


def capped_waits(sleep, clock, cap: float):
    """A sleep that never waits over `cap`, and a clock that counts the skipped time as
    passed (so one huge stored gap does not make every later step wait `cap` too)."""
    skipped = 0.0

    def capped_sleep(seconds: float) -> None:
        nonlocal skipped
        wait = min(max(seconds, 0.0), cap)
        skipped += seconds - wait
        sleep(wait)

    return capped_sleep, lambda: clock() + skipped


def _verify(pairs, args: argparse.Namespace) -> int:
    from gptterm import replay

    checks = []
    with replay.EngineRunner(device=args.device) as runner:
        for check in replay.verify_each(pairs, runner):
            checks.append(check)
            print(json_line(check.as_json()) if args.json else label(check.line()), flush=True)
    if not checks:
        if not args.json:
            print("no model turns to verify")
        return 0
    if not args.json:
        same = sum(c.ok for c in checks)
        print(f"{same} of {len(checks)} model turns identical")
    return 0 if all(c.ok for c in checks) else 1
