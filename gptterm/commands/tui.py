"""`gptterm tui` (and plain `gptterm`): open the terminal app."""

from __future__ import annotations

import argparse

from gptterm.cli_types import int_range
from gptterm.config import PRECISION_CHOICES, THREADS_MAX


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the terminal app (the default)")
    p.add_argument("--model", help="model name or directory, or a server: http(s)://HOST:PORT "
                                   "or remote:NAME (default: last used)")
    p.add_argument("--preset", help="preset name (default: last used)")
    p.add_argument("--threads", type=int_range(1, THREADS_MAX),
                   help="CPU threads for the model (default: the config's, else picked)")
    p.add_argument("--precision", choices=PRECISION_CHOICES,
                   help="weights' precision (default: the config's, else fp32 on a CPU, fp16 "
                        "on a GPU); auto takes the fastest within 2%% of fp32's perplexity")
    p.add_argument("--lenient", action="store_true",
                   help="with a model on a server: drop the preset fields it cannot honour, "
                        "with a warning, instead of refusing")
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

    factory = None
    lenient, precision = getattr(args, "lenient", False), getattr(args, "precision", None)
    if lenient or precision:
        from functools import partial

        from gptterm.config import load_settings
        from gptterm.ui.app import default_engine_factory

        # The app's own rule for threads (the flag, else the config's), with lenient and
        # precision added.
        factory = partial(default_engine_factory, lenient=lenient, precision=precision,
                          threads=args.threads or load_settings()[0].threads)
    make_app(model=args.model, preset=args.preset, threads=args.threads,
             engine_factory=factory).run()
    return 0
