"""`gptterm models` lists the catalog; `gptterm download NAME` fetches a hub model.

Loading never downloads (offline it would hang on retries), so fetching a hub model
into the local Hugging Face cache is this one explicit step, on a connected machine.
"""

from __future__ import annotations

import argparse

from gptterm.cli import UsageError
from gptterm.errors import first_line

# Enough to load and generate: config, weights, tokenizer files.
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "merges.txt", "vocab.*"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list known models and where they load from")
    p.set_defaults(func=run)
    d = sub.add_parser("download", help="fetch a hub model into the local cache (needs network)")
    d.add_argument("name", help="catalog name or hub id, e.g. gpt2 or skt/kogpt2-base-v2")
    d.set_defaults(func=download)


def run(args: argparse.Namespace) -> int:
    from gptterm import catalog

    rows = [("NAME", "LANG", "OFFLINE", "FROM", "ABOUT")]
    for spec in catalog.all_models():
        rows.append((spec.name, spec.language, "yes" if spec.available_offline() else "no",
                     spec.where, spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    print("\nAny local checkpoint directory also works: --model PATH. Hub models must be in "
          "the local Hugging Face cache: `gptterm download NAME` on a connected machine.")
    return 0


def download(args: argparse.Namespace) -> int:
    from gptterm import catalog

    spec = catalog.resolve(args.name)
    if spec.local:
        raise UsageError(f"{args.name} is a local model ({spec.source}): nothing to download")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(spec.source, allow_patterns=_PATTERNS, etag_timeout=5)
    except Exception as exc:  # network and hub errors come in many types
        raise UsageError(f"cannot download {spec.source}: {first_line(exc)}") from None
    print(f"{spec.name}: downloaded to {path}")
    return 0
