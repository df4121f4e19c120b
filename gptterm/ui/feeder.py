"""Store writes of a streaming reply, done on a thread of their own.

A `TurnWriter` writes the whole turn to SQLite every half second; as a reply
grows that takes tens of milliseconds, which on the UI thread would stall
keypresses. The feeder applies the writes in order on its own thread; `wait`
runs one call after everything queued and returns its result (used to finish a
turn). Failures are passed to `on_error` (the app posts them as a message).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class StoreFeeder:
    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gptterm-store-feeder",
                                        daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue `fn(*args, **kwargs)`; errors go to `on_error`."""
        self._queue.put((fn, args, kwargs, None))

    def wait(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0,
             **kwargs: Any) -> Any:
        """Run `fn` after everything queued, and return its result (or raise its error)."""
        box: dict[str, Any] = {}
        done = threading.Event()
        self._queue.put((fn, args, kwargs, (box, done)))
        if not done.wait(timeout):
            raise TimeoutError("the sessions database did not answer in time")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, kwargs, reply = item
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported, the feeder goes on
                if reply is None:
                    self._on_error(f"{exc}")
                else:
                    reply[0]["error"] = exc
            else:
                if reply is not None:
                    reply[0]["result"] = result
            if reply is not None:
                reply[1].set()
