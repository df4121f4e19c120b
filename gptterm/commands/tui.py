"""`gptterm tui` (and plain `gptterm`): open the terminal app."""

from __future__ import annotations

import argparse

from gptterm.cli_types import int_range
from gptterm.config import THREADS_MAX


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the terminal app (the default)")
    p.add_argument("--model", help="model name or directory (default: last used)")
    p.add_argument("--preset", help="preset name (default: last used)")
    p.add_argument("--threads", type=int_range(1, THREADS_MAX),
                   help="CPU threads for the model (default: the config's, else picked)")
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

    make_app(model=args.model, preset=args.preset, threads=args.threads).run()
    return 0
