"""The HTTP client the remote engine and the probes share: http.client, nothing else.

`Server` knows one base URL (a path prefix is kept, credentials in it are sent as Basic
auth and never shown), answers short JSON requests with a timeout, and opens streaming
POSTs whose socket another thread can shut (`Stream.abort`: the server then sees the
client go away and stops generating). Every failure is a `RemoteError` with one line.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gptterm.errors import first_line

PROBE_TIMEOUT_S = 3.0  # a probe or a small request: an unreachable server fails fast
STREAM_TIMEOUT_S = 600.0  # the longest silence a stream may keep (a long prompt on a big model)


class RemoteError(Exception):
    """A server could not be reached or refused a request; the message is one line."""


def public_url(url: str) -> str:
    """`url` without credentials, query or fragment: what is shown and recorded."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class Unreachable(RemoteError):
    """Nothing answers at the URL (refused, unknown host, timed out)."""


class Stream:
    """An open streaming response: `read()` the next bytes (b"" at the end), `abort()` from
    any thread, `close()` when done."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 sock: socket.socket | None):
        self._conn = conn
        self.response = response
        self._sock = sock  # kept: http.client forgets it once a response will close
        self._lock = threading.Lock()
        self.aborted = False

    def read(self) -> bytes:
        try:
            return self.response.read1(65536)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if self.aborted:
                return b""
            raise RemoteError(f"the stream broke: {first_line(exc)}") from None

    def abort(self) -> None:
        """Shut the socket: the reader wakes with the end, the server sees a disconnect."""
        with self._lock:
            self.aborted = True
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.response.close()
        self._conn.close()


class Server:
    """One server's base URL, with its bearer token (if any)."""

    def __init__(self, url: str, api_key: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"{public_url(url) or url!r}: expected an http:// or https:// URL")
        self.url = public_url(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._headers = {"Accept": "application/json, text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        elif parts.username is not None:
            pair = f"{parts.username}:{parts.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _send(self, method: str, path: str, body: Any, timeout: float
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse,
                         socket.socket | None]:
        conn = self._connect(timeout)
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self._base + path, body=data, headers=headers)
            sock = conn.sock
            return conn, conn.getresponse(), sock
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise Unreachable(f"cannot reach {self.url}: {_why(exc)}") from None

    def request_json(self, method: str, path: str, body: Any = None,
                     timeout: float = PROBE_TIMEOUT_S) -> Any:
        """The JSON answer to one request; RemoteError for a failure or a non-2xx status."""
        conn, response, _ = self._send(method, path, body, timeout)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"{self.url}{path}: {_why(exc)}") from None
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise RemoteError(f"{self.url}{path}: HTTP {response.status}: {error_text(raw)}")
        try:
            return json.loads(raw)
        except ValueError:
            raise RemoteError(f"{self.url}{path}: the answer is not JSON") from None

    def get_json(self, path: str, timeout: float = PROBE_TIMEOUT_S) -> Any:
        return self.request_json("GET", path, None, timeout)

    def stream(self, path: str, body: Any, timeout: float = STREAM_TIMEOUT_S) -> Stream:
        """POST `body` and return the open response once its status is 2xx."""
        conn, response, sock = self._send("POST", path, body, PROBE_TIMEOUT_S)
        if not 200 <= response.status < 300:
            try:
                raw = response.read(65536)
            except (OSError, http.client.HTTPException):
                raw = b""
            conn.close()
            raise RemoteError(f"{self.url}{path}: HTTP {response.status}: {error_text(raw)}")
        if sock is not None:
            sock.settimeout(timeout)  # connected fast; now wait as long as generation may
        return Stream(conn, response, sock)


def error_text(raw: bytes) -> str:
    """One line from an error body: its `error.message` / `error` / `detail`, else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            text = str(error)
    line = " ".join(text.split())
    return (line[:197] + "...") if len(line) > 200 else (line or "no details")


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer (timed out)"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return first_line(exc)
