"""The `gptterm` command line: subcommands, each in its own `gptterm.commands` module.

A command module provides `register(subparsers)`, which adds its parser and sets
`func` (args -> exit code). Modules import torch and friends only inside `func`,
so `gptterm --help` and the TUI start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under gptterm.commands, in the order `--help` lists them.
COMMANDS = ["tui", "generate", "sessions", "replay", "models", "train", "diff", "presets",
            "export_gguf"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


DESCRIPTION = """\
Write with GPT-2-family language models in the terminal.

Plain `gptterm` opens the terminal app (the same as `gptterm tui`), and takes its
options: `gptterm --model NAME|DIR` (a catalog name or a model folder),
`--preset NAME`, `--threads N`. The commands below work without the app."""

EPILOG = """\
examples:
  gptterm                             open the app on the last used model
  gptterm --model ./my-model          open the app on a model folder
  gptterm generate "Once upon a time" print a continuation
  gptterm models                      list models and their context windows
  gptterm COMMAND --help              one command's options"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptterm", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gptterm.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Plain `gptterm` (and `gptterm --model X`) opens the TUI.
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["tui", *argv]
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"gptterm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
