"""Error helpers shared by every layer: stdlib only, imports nothing from gptterm."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, else its class name.

    Library errors (SQLite, torch, sentencepiece) can span many lines; the user gets
    one line, and the rest stays in the traceback for whoever debugs it.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
