"""Clean a training corpus for the shipped models (see gptterm.training.corpus).

Usage: python scripts/clean_corpus.py {verse,korean} OUT.txt IN.txt [IN.txt ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from gptterm.safefile import replace_file
from gptterm.training.corpus import clean_korean, clean_verse, read_text

CLEANERS = {"verse": clean_verse, "korean": clean_korean}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in CLEANERS:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    kind, out, sources = argv[0], Path(argv[1]), argv[2:]
    raw = [read_text(Path(s)) for s in sources]
    text = "".join(CLEANERS[kind](t) for t in raw)
    replace_file(out, text)
    print(f"{out}: {len(text):,} of {sum(map(len, raw)):,} characters kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
