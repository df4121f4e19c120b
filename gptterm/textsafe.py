"""Text that is safe to put on a terminal: control characters made visible, never raw.

Anything read from a file, an imported session or a model may hold escape sequences
that set the window title, write the clipboard (OSC 52), clear the screen or forge
lines. `inert` turns every control character into a visible stand-in, so the text
reads the same and does nothing. Stdlib only.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls, and the bidi controls that can
# make a line display as something other than what it holds.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 block: ␀ ␁ … ␛ …
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\u{code:04x}"


def _line(match: re.Match[str]) -> str:
    return " " if match.group() in "\n\t\r" else _visible(match)


def inert(text: str, *, single_line: bool = False) -> str:
    """`text` with every control character replaced by a visible stand-in.

    Newline and tab stay (unless `single_line`, where they become spaces, for titles,
    names and other one-line labels). Lone surrogates, which no terminal encoding can
    carry, become U+FFFD.
    """
    if not isinstance(text, str):
        text = str(text)
    text = _SURROGATE.sub("\ufffd", text)
    if single_line:
        return _UNSAFE_LINE.sub(_line, text)
    return _UNSAFE.sub(_visible, text)


def is_inert(text: str, *, single_line: bool = False) -> bool:
    """Whether `text` holds nothing that `inert` would change."""
    return inert(text, single_line=single_line) == text
