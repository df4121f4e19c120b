"""`gptterm models`: list the catalog and whether each model loads offline now."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list known models and where they load from")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptterm import catalog

    rows = [("NAME", "LANG", "OFFLINE", "FROM", "ABOUT")]
    for spec in catalog.all_models():
        rows.append((spec.name, spec.language, "yes" if spec.available_offline() else "no",
                     spec.where, spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    print("\nAny local checkpoint directory also works: --model PATH. Hub models need a "
          "network once; offline they must already be in the Hugging Face cache.")
    return 0
