"""Incremental readers for the two stream formats servers answer with.

`SSEParser` reads Server-Sent Events (llama.cpp, vLLM, SGLang, TGI, OpenAI), `LineParser`
newline-delimited JSON (Ollama). Both take bytes exactly as the network delivers them:
a read may end inside a line, inside a CRLF pair, or inside a multi-byte UTF-8
character, and what is complete is returned at once (nothing waits for more than it
needs). Stdlib only.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

DONE = "[DONE]"  # the data of the OpenAI-style end-of-stream event


@dataclass(frozen=True)
class SSEvent:
    """One dispatched event: its type ("message" unless an `event:` line said) and data."""

    data: str
    event: str = "message"


class _Lines:
    """Bytes in, complete lines out (LF, CRLF or a lone CR end a line, as SSE says)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._after_cr = False  # the last text ended a line with CR: a next LF belongs to it

    def feed(self, chunk: bytes, final: bool = False) -> list[str]:
        text = self._decoder.decode(chunk, final)
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        self._buffer += text
        lines: list[str] = []
        start = 0
        buffer = self._buffer
        i = 0
        while i < len(buffer):
            ch = buffer[i]
            if ch == "\n" or ch == "\r":
                lines.append(buffer[start:i])
                if ch == "\r":
                    if i + 1 < len(buffer):
                        if buffer[i + 1] == "\n":
                            i += 1
                    else:
                        self._after_cr = True  # the LF may come in the next read
                start = i + 1
            i += 1
        self._buffer = buffer[start:]
        if final and self._buffer:
            lines.append(self._buffer)
            self._buffer = ""
        return lines


class SSEParser:
    """Feed bytes, get the events completed by them (see the module docstring).

    Follows the HTML living standard's event stream rules: `:` starts a comment (a
    keep-alive), `data:` lines join with newlines, a blank line dispatches, one space
    after the colon is dropped, `id` and `retry` are read and ignored.
    """

    def __init__(self) -> None:
        self._lines = _Lines()
        self._data: list[str] = []
        self._event = ""
        self._first = True

    def feed(self, chunk: bytes) -> list[SSEvent]:
        lines = self._lines.feed(chunk)
        if self._first and lines:
            self._first = False
            lines[0] = lines[0].removeprefix("\ufeff")  # a byte order mark may open a stream
        return self._read(lines)

    def close(self) -> list[SSEvent]:
        """The end of the stream: an event without its blank line is not dispatched."""
        self._read(self._lines.feed(b"", final=True))
        self._data, self._event = [], ""
        return []

    def _read(self, lines: list[str]) -> list[SSEvent]:
        events: list[SSEvent] = []
        for line in lines:
            if not line:
                data = "\n".join(self._data)
                if data:  # an event with no data (or only an empty line of it) is dropped
                    events.append(SSEvent(data, self._event or "message"))
                self._data, self._event = [], ""
                continue
            if line.startswith(":"):
                continue  # a comment: servers send them to keep the connection alive
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
        return events


class LineParser:
    """Feed bytes, get the complete non-blank lines (newline-delimited JSON)."""

    def __init__(self) -> None:
        self._lines = _Lines()

    def feed(self, chunk: bytes) -> list[str]:
        return [line for line in self._lines.feed(chunk) if line.strip()]

    def close(self) -> list[str]:
        return [line for line in self._lines.feed(b"", final=True) if line.strip()]
