"""A fake model server on 127.0.0.1 for the remote engine's tests (standard library only).

`FakeServer` answers GETs with canned JSON and each streaming POST by writing recorded
bytes, chunk by chunk, exactly as given (so a test decides where the network splits a
line or a character). It records every request body. A `forever` route keeps streaming
keep-alive comments until the client goes away, and sets `disconnected` when a write
fails: the test then knows the server saw the disconnect.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LLAMA_PROPS = {"default_generation_settings": {"n_ctx": 1024, "params": {}},
               "build_info": "b6500-abc1234", "model_path": "/m/shakespeare-mini.gguf"}


def sse(*events: Any) -> bytes:
    """Server-sent events: dicts as `data: JSON`, strings as they are."""
    out = []
    for event in events:
        if isinstance(event, str):
            out.append(event)
        else:
            out.append(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")
    return "".join(out).encode()


def llama_stream(pieces: list[str], stop_type: str = "eos", *, cached: int = 0,
                 prompt: int = 5, ids: list[int] | None = None) -> bytes:
    """A llama.cpp /completion stream of `pieces`, one token each, then its final event."""
    events = []
    for i, text in enumerate(pieces):
        events.append({"index": 0, "content": text, "tokens": [ids[i] if ids else 100 + i],
                       "stop": False, "id_slot": 0, "tokens_predicted": i + 1,
                       "tokens_evaluated": prompt,
                       "timings": {"cache_n": cached, "prompt_n": prompt - cached}})
    events.append({"index": 0, "content": "", "tokens": [], "stop": True, "id_slot": 0,
                   "tokens_predicted": len(pieces), "tokens_evaluated": prompt,
                   "stop_type": stop_type, "stopping_word": "", "tokens_cached":
                   prompt + len(pieces), "timings": {"cache_n": cached,
                                                     "prompt_n": prompt - cached}})
    return sse(*events)


class FakeServer:
    """See the module docstring. `gets`: path -> JSON; `posts`: path -> list of byte
    chunks, or "forever"; `status`: path -> (code, body) for an error answer."""

    def __init__(self, gets: dict[str, Any] | None = None,
                 posts: dict[str, Any] | None = None,
                 status: dict[str, tuple[int, Any]] | None = None):
        self.gets = gets or {}
        self.posts = posts or {}
        self.status = status or {}
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body)
        self.headers: list[dict[str, str]] = []
        self.disconnected = threading.Event()
        self.streaming = threading.Event()
        self.gate: threading.Event | None = None  # when set: chunks after the first wait on it
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # a stream ends when the connection closes

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path, None))
                server.headers.append(dict(self.headers))
                if self.path in server.status:
                    self._answer(*server.status[self.path])
                elif self.path in server.gets:
                    self._answer(200, server.gets[self.path])
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                server.requests.append(("POST", self.path, body))
                server.headers.append(dict(self.headers))
                if self.path in server.status:
                    self._answer(*server.status[self.path])
                    return
                reply = server.posts.get(self.path)
                if reply is None:
                    self._answer(404, {"error": {"message": "no such endpoint"}})
                    return
                if callable(reply):
                    reply = reply(body)
                if not isinstance(reply, (list, str)):
                    self._answer(200, reply)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.flush()
                server.streaming.set()
                try:
                    if reply == "forever":
                        deadline = time.monotonic() + 60
                        self.wfile.write(sse({"content": "x", "tokens": [1], "stop": False}))
                        self.wfile.flush()
                        while time.monotonic() < deadline:
                            self.wfile.write(b": keep-alive\n\n")
                            self.wfile.flush()
                            time.sleep(0.01)
                        return
                    for i, chunk in enumerate(reply):
                        if i and server.gate is not None:
                            server.gate.wait(30)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posted(self, path: str) -> list[Any]:
        """The JSON bodies POSTed to `path`, in order."""
        return [body for method, p, body in self.requests if method == "POST" and p == path]


def fake_ids(text: str) -> list[int]:
    """The fake tokenizer: a token per word; "w12" is id 12, any other word id 0."""
    return [int(w[1:]) if w[:1] == "w" and w[1:].isdigit() else 0 for w in text.split()]


def llama_server(stream: Any, n_ctx: int = 1024, **kwargs: Any) -> FakeServer:
    """A fake llama.cpp server streaming `stream` (bytes chunks) from /completion."""
    props = {**LLAMA_PROPS, "default_generation_settings": {"n_ctx": n_ctx, "params": {}}}
    return FakeServer(gets={"/props": props},
                      posts={"/completion": stream,
                             "/tokenize": lambda body: {"tokens": fake_ids(body["content"])}},
                      **kwargs)
