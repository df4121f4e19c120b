"""`gptterm tui` (and plain `gptterm`): open the terminal app."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the terminal app (the default)")
    p.add_argument("--model", help="model name or directory (default: last used)")
    p.add_argument("--preset", help="preset name (default: last used)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptterm.cli import UsageError
    from gptterm.presets import load_presets

    if args.preset:
        presets, _ = load_presets()
        if args.preset not in presets:
            raise UsageError(f"--preset {args.preset!r}: no such preset; expected one of "
                             f"{', '.join(sorted(presets)) or '(none found)'}")
    from gptterm.ui.app import make_app

    make_app(model=args.model, preset=args.preset).run()
    return 0
