"""UI latency: keypress-to-screen while the engine streams at full speed, and launch-to-interactive.

Runs the real app in a pseudo-terminal, as a user's terminal would: the bench writes
key bytes to the pty and times how long until the typed character comes back in
the app's screen output. During the keypress test a fake engine streams `--rate`
tokens a second (default 1000, far faster than any real model on this CPU) in lines of
about 60 characters; each reply of `--reply-tokens` is continued at once (as Ctrl+G
would), so the transcript repaints all the time and replies keep a realistic length.

    .venv/bin/python bench/ui_latency.py [--keys 100] [--model NAME_OR_DIR]
    .venv/bin/python bench/ui_latency.py --turns 40000

With `--turns N` it times only the launch into a saved session of N turns (made in
the bench's temporary data folder and remembered as the last one open): the screen
must be up and typing must echo as fast whatever the session's size.

Launch-to-interactive is timed from process start to (a) the first frame with
the prompt box and (b) the first typed key echoed on screen; with `--model` (or
when the shipped default model is installed) it is also timed with the real
engine, which loads the model on its own thread after the screen is up.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COLS, ROWS = 100, 30
PROMPT_MARK = b"Write a beginning"
# Capitals that appear nowhere else on screen (footer, status, sidebar, stream).
MARKERS = "QWZXJKVYUBDEGO"


# ---------------------------------------------------------------- the app, in the child


def child(engine: str, model: str | None, rate: float, reply_tokens: int) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from gptterm.ui.app import make_app

    if engine == "fake":
        from ui_fakes import FakeEngine

        def factory(emit):
            # After each reply, continue it at once: the engine never stops streaming.
            return FakeEngine(emit, stream_forever=True, rate=rate, reply_tokens=reply_tokens,
                              on_done=lambda: app.call_from_thread(app.main.action_continue_reply))

        app = make_app(model="fake-model", engine_factory=factory)
        app.run()
    else:
        make_app(model=model).run()


# ---------------------------------------------------------------- a big saved session


def session_json(n_turns: int, title: str = "a long session") -> dict[str, Any]:
    """An exported session of `n_turns` alternating user and model turns (for import_json)."""
    line = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate."
    turns = [{"role": "user" if i % 2 == 0 else "model",
              "text": f"\n[{i}] " + (line if i % 2 == 0 else f"{line}\n{line}\n{line}")}
             for i in range(n_turns)]
    return {"format": "gptterm-session", "version": 1,
            "session": {"id": "bench" + str(n_turns), "title": title}, "turns": turns}


def save_big_session(env: dict[str, str], n_turns: int) -> str:
    """Store a session of `n_turns` in the bench's data folder and make it the one opened."""
    sys.path.insert(0, str(ROOT))
    from gptterm import config
    from gptterm.store import Store

    with Store(Path(env["GPTTERM_DATA_DIR"]) / "sessions.db") as store:
        session = store.import_json(session_json(n_turns))  # one transaction
    path = Path(env["GPTTERM_CONFIG_DIR"]) / config.CONFIG_NAME
    config.save_settings(config.Settings(session=session.id), path)
    return session.id


# ---------------------------------------------------------------- the terminal, in the parent


class Terminal:
    """A child process on a pty; read its output, write keys, time what comes back."""

    def __init__(self, args: list[str], env: dict[str, str]):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.master = master
        self.output = bytearray()  # everything the app wrote, as the terminal got it
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, cwd=ROOT)
        os.close(slave)

    def _read(self) -> bytes:
        chunk = os.read(self.master, 65536)
        self.output += chunk
        return chunk

    def read_until(self, needle: bytes, timeout: float = 30.0) -> float:
        """Read output until `needle` appears; return the time it did (perf_counter)."""
        buffer = b""
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{needle!r} did not appear on screen; last output: "
                                   f"{buffer[-600:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = self._read()
                except OSError:
                    raise TimeoutError("the app exited") from None
                buffer += chunk
                if needle in buffer:
                    return time.perf_counter()
                buffer = buffer[-4096:]

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> None:
        """Read output until `needle` is anywhere in all of it so far (`read_until` looks
        only at what comes after the call)."""
        deadline = time.perf_counter() + timeout
        while needle not in self.output:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{needle!r} never appeared on screen")
            if select.select([self.master], [], [], left)[0]:
                try:
                    self._read()
                except OSError:
                    raise TimeoutError(f"the app exited before {needle!r} appeared") from None

    def drain(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self._read()
                except OSError:
                    return

    def send(self, data: bytes) -> float:
        now = time.perf_counter()
        os.write(self.master, data)
        return now

    def close(self) -> None:
        self.send(b"\x11")  # ctrl+q
        try:
            self.drain(0.5)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def app_env(tmp: Path) -> dict[str, str]:
    """The environment of an app whose data and config live under `tmp`, on an xterm."""
    return {**os.environ, "GPTTERM_DATA_DIR": str(tmp / "data"),
            "GPTTERM_CONFIG_DIR": str(tmp / "config"), "HF_HUB_OFFLINE": "1",
            "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}


def launch(engine: str, model: str | None, env: dict[str, str], rate: float = 0,
           reply_tokens: int = 0, timeout: float = 30.0) -> tuple[Terminal, float, float]:
    """Start the app; (terminal, seconds to first frame, seconds to first key echoed)."""
    args = [sys.executable, __file__, "--child", engine, "--rate", str(rate),
            "--reply-tokens", str(reply_tokens)]
    term = Terminal(args + (["--model", model] if model else []), env)
    shown = term.read_until(PROMPT_MARK, timeout) - term.t0
    sent = term.send(b"Q")
    echoed = term.read_until(b"Q", timeout) - term.t0
    del sent
    term.send(b"\x7f")  # backspace: leave the prompt empty
    term.drain(0.2)
    return term, shown, echoed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100, help="keypresses to time")
    parser.add_argument("--model", help="also time launch with the real engine and this model")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="tokens per second the fake engine streams (default 1000)")
    parser.add_argument("--reply-tokens", type=int, default=400,
                        help="tokens per reply; each is continued at once (default 400)")
    parser.add_argument("--turns", type=int, default=0,
                        help="only time the launch into a saved session of this many turns")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.rate, args.reply_tokens)
        return 0

    env = app_env(Path(tempfile.mkdtemp(prefix="gptterm-bench-")))

    if args.turns:
        save_big_session(env, args.turns)
        term, shown, echoed = launch("fake", None, env, timeout=600)
        term.close()
        print(f"session of {args.turns} turns: launch to first frame {shown * 1000:.0f} ms, "
              f"to first key echoed {echoed * 1000:.0f} ms")
        return 0

    term, shown, echoed = launch("fake", None, env, args.rate, args.reply_tokens)
    print(f"launch to first frame (fake engine):        {shown * 1000:7.0f} ms")
    print(f"launch to first key echoed (fake engine):   {echoed * 1000:7.0f} ms")

    # Start a reply that streams `rate` tokens a second, then time keypresses.
    term.send(b"go\r")
    term.read_until("writing…".encode())
    term.drain(0.5)
    latencies = []
    for i in range(args.keys):
        # Markers are distinct within a line, so the newest one can only come from
        # this keypress. Between lines, clear the prompt and let the app settle: a
        # binding (ctrl+u, backspace) is handled after bubbling up, and a key typed
        # right after it can overtake it.
        if i and i % len(MARKERS) == 0:
            term.send(b"\x15")  # ctrl+u
            term.drain(0.3)
        marker = MARKERS[i % len(MARKERS)].encode()
        sent = term.send(marker)
        latencies.append(term.read_until(marker) - sent)
        term.drain(0.03)
    term.close()
    ms = [x * 1000 for x in latencies]
    print(f"keypress to screen while streaming {args.rate:g} tok/s "
          f"(replies of {args.reply_tokens} tokens, each continued at once), {len(ms)} keys: "
          f"p50 {statistics.median(ms):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
          f"max {max(ms):.1f} ms")

    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT))
        from gptterm import catalog

        if catalog.resolve(catalog.DEFAULT_MODEL).available_offline():
            model = catalog.DEFAULT_MODEL
    if model:
        term, shown, echoed = launch("real", model, env)
        loaded = term.read_until(b"\xe2\x97\x8f ", timeout=120) - term.t0  # "● model (device)"
        term.close()
        print(f"launch to first frame (real engine):        {shown * 1000:7.0f} ms")
        print(f"launch to first key echoed (real engine):   {echoed * 1000:7.0f} ms")
        print(f"launch to model loaded ({Path(model).name}): {loaded * 1000:9.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
