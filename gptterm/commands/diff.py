"""`gptterm diff A B FILE`: both models' perplexity on a text, and the tokens where B gains
and loses most log-probability over A.

The work happens in `gptterm.training.diffing`; this module maps flags to it and errors
to one line. torch and transformers load inside `run_diff`.
"""

from __future__ import annotations

import argparse
import json
import sys

from gptterm.cli_types import positive_int
from gptterm.commands.train import scoring_options
from gptterm.textsafe import inert

DEFAULT_TOP = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="where a finetune differs from its base on a text",
                       description="Score FILE with MODEL_A and MODEL_B (as `gptterm "
                       "perplexity` does) and list the tokens where B gains and loses most "
                       "log-probability over A. The models must share a tokenizer.")
    p.add_argument("model_a", metavar="MODEL_A", help="catalog name or model directory")
    p.add_argument("model_b", metavar="MODEL_B", help="catalog name or model directory")
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--top", type=positive_int, default=DEFAULT_TOP, metavar="N",
                   help=f"tokens listed for gains and for losses (default: {DEFAULT_TOP})")
    scoring_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_diff)


def report(result: dict) -> list[str]:
    """The lines `gptterm diff` prints without --json: a token as the inspector shows it
    (quoted, its spaces and newlines visible), its context inert on one line."""
    lines = [f"A: {inert(result['model_a'], single_line=True)}",
             f"B: {inert(result['model_b'], single_line=True)}",
             f"{result['tokens']:,} tokens of {inert(result['file'], single_line=True)}",
             f"perplexity A: {result['perplexity_a']:.2f}",
             f"perplexity B: {result['perplexity_b']:.2f}"]
    for title, rows in (("B gains most over A", result["gains"]),
                        ("B loses most to A", result["losses"])):
        lines += ["", f"{title} (log p_B - log p_A in nats, the token, the text before it):"]
        lines += [f"  {row['delta']:+8.3f}  {row['token']!r:<12} after "
                  f"\"{inert(row['context'], single_line=True)}\"" for row in rows] or ["  none"]
    return lines


def run_diff(args: argparse.Namespace) -> int:
    from gptterm.cli import UsageError
    from gptterm.engine.threads import requested_threads
    from gptterm.training import TrainingError
    from gptterm.training.diffing import TokenizerMismatch, diff_files

    try:
        result = diff_files(args.model_a, args.model_b, args.file, top=args.top,
                            context=args.context, max_tokens=args.max_tokens,
                            device=args.device, threads=requested_threads(args.threads),
                            precision=args.precision)
    except TokenizerMismatch as exc:
        print(f"gptterm: {inert(str(exc), single_line=True)}", file=sys.stderr)
        return 1
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print("\n".join(report(result)))
    return 0
