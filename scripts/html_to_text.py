"""Extract the visible text of HTML help pages (LibreOffice help) into one UTF-8 file.

Usage: python scripts/html_to_text.py HELP_DIR OUT.txt [LINE_REGEX]
Pages are separated by a blank line; script/style/head content is dropped, and so are
boilerplate lines (navigation) that occur on more than 5% of the pages. With LINE_REGEX,
only lines matching it are kept (e.g. "[가-힣]" keeps lines with Korean in them).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

BLOCKS = {"p", "br", "h1", "h2", "h3", "h4", "li", "tr", "div", "table"}


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self.skip += 1
        if tag in BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head"):
            self.skip = max(0, self.skip - 1)

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def page_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    text = re.sub(r"[ \t\u00a0]+", " ", "".join(parser.out))
    lines = (line.strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def main(src: str, dst: str, keep: str = "") -> None:
    texts = [page_text(path.read_text(encoding="utf-8", errors="replace"))
             for path in sorted(Path(src).rglob("*.html"))]
    seen = Counter(line for text in texts for line in set(text.split("\n")))
    boilerplate = {line for line, n in seen.items() if n > 0.05 * len(texts)}
    pattern = re.compile(keep) if keep else None
    pages = []
    for text in texts:
        lines = [line for line in text.split("\n") if line not in boilerplate
                 and (pattern is None or pattern.search(line))]
        if lines:
            pages.append("\n".join(lines))
    Path(dst).write_text("\n\n".join(pages) + "\n", encoding="utf-8")
    print(f"{len(pages)} pages, {sum(map(len, pages)):,} characters -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
