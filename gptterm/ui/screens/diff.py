"""Checkpoint diff: where model B gains and loses log-probability over model A on a text.

The scoring loads two models with torch, which the UI never imports: the screen runs
`python -m gptterm diff A B FILE --json` as a child process and waits for it on a worker
thread, so the app stays responsive and Esc can stop it (the child is killed). The
numbers are exactly the CLI's; a failure shows the child's one error line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static

import gptterm
from gptterm.textsafe import inert

TOP = 10  # tokens listed for gains and for losses
CONTEXT_SHOWN = 24  # characters of a token's context in the tables
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def diff_command(model_a: str, model_b: str, path: str, top: int = TOP) -> list[str]:
    """The child process: this interpreter running gptterm's own `diff --json`."""
    return [sys.executable, "-m", "gptterm", "diff", model_a, model_b, path,
            "--top", str(top), "--json"]


def child_env() -> dict[str, str]:
    """The app's environment, with this gptterm first on the path, so the child runs
    the same code as the app (a checkout run with PYTHONPATH, or an installed one)."""
    env = dict(os.environ)
    root = str(Path(gptterm.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def tail(context: str) -> str:
    """The end of a token's context, inert on one line: what the table has room for
    (keyword in context: the text runs up to the token in the next column)."""
    text = inert(context, single_line=True)
    return text if len(text) <= CONTEXT_SHOWN else "…" + text[-CONTEXT_SHOWN + 1:]


def error_line(stderr: str, returncode: int) -> str:
    """The child's one error line (its last non-empty one), else its exit status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"gptterm diff stopped with exit status {returncode}"


class DiffScreen(ModalScreen[None]):
    """Pick A, B and a text file; Enter runs the diff; Esc stops a run, else closes."""

    DEFAULT_CSS = """
    DiffScreen { align: center middle; background: $background 60%; }
    #diff-box { width: 96%; height: 90%; padding: 0 1; background: $surface;
                border: round $primary; }
    #diff-subtitle { margin-bottom: 1; }
    .diff-row { height: auto; }
    .diff-row Label { padding: 1 1 0 0; }
    #diff-a, #diff-b { width: 1fr; }
    #diff-file { width: 1fr; }
    #diff-status { height: 1; margin-top: 1; }
    #diff-perplexity { height: auto; margin-bottom: 1; }
    #diff-tables { height: 1fr; }
    .diff-column { width: 1fr; height: 1fr; }
    .diff-column DataTable { height: 1fr; }
    """

    BINDINGS = [Binding("escape", "stop_or_close", "Stop / close")]

    def __init__(self, models: Sequence[tuple[str, str]], model_a: str | None,
                 top: int = TOP) -> None:
        """`models`: (name, label) of the models to offer; A starts on `model_a`."""
        super().__init__()
        self.models = list(models)
        names = [name for name, _ in self.models]
        if model_a and model_a not in names:
            self.models.insert(0, (model_a, model_a))
            names.insert(0, model_a)
        self.model_a = model_a if model_a else (names[0] if names else None)
        self.model_b = next((n for n in names if n != self.model_a), self.model_a)
        self.top = top
        self.proc: subprocess.Popen | None = None
        self.stopped = False
        self.started = 0.0
        self.result: dict | None = None
        self.error: str | None = None
        self._frame = 0

    def compose(self) -> ComposeResult:
        options = [(inert(label, single_line=True), name) for name, label in self.models]
        with Vertical(id="diff-box"):
            yield Label(Content.styled("Checkpoint diff", "bold"), id="diff-title")
            yield Label(Content.styled(
                "where B gains and loses log-probability over A on a text · "
                "Enter runs · Esc stops a run, else closes", "dim"), id="diff-subtitle")
            with Horizontal(classes="diff-row"):
                yield Label("A")
                yield Select(options, value=self.model_a or Select.BLANK,
                             allow_blank=not options, id="diff-a")
                yield Label(" B")
                yield Select(options, value=self.model_b or Select.BLANK,
                             allow_blank=not options, id="diff-b")
            with Horizontal(classes="diff-row"):
                yield Label("file")
                yield Input(placeholder="a UTF-8 text file", id="diff-file")
                yield Button("Run", id="diff-run", variant="primary")
            yield Static(id="diff-status")
            yield Static(id="diff-perplexity")
            with Horizontal(id="diff-tables"):
                for ident, title in (("gains", "B gains most over A"),
                                     ("losses", "B loses most to A")):
                    with Vertical(classes="diff-column"):
                        yield Label(Content.styled(title, "bold"))
                        table = DataTable(id=f"diff-{ident}", cursor_type="row",
                                          zebra_stripes=True)
                        table.add_columns("Δ nats", "context", "token")
                        yield table

    def on_mount(self) -> None:
        self.query_one("#diff-file", Input).focus()
        self.set_interval(0.1, self._tick)

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.proc is not None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run_diff()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.run_diff()

    def run_diff(self) -> None:
        """Start the child process for the chosen models and file (one at a time)."""
        if self.running:
            return
        a, b = self.query_one("#diff-a", Select).value, self.query_one("#diff-b", Select).value
        path = self.query_one("#diff-file", Input).value.strip()
        if not path or a is Select.BLANK or b is Select.BLANK:
            self._status(Content.styled("Pick two models and give a text file", "$warning"))
            return
        self.result, self.error, self.stopped = None, None, False
        self._show_result()
        try:
            proc = subprocess.Popen(diff_command(str(a), str(b), path, self.top),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                    errors="replace", env=child_env(),
                                    start_new_session=True)  # Ctrl+C in the app is not its
        except OSError as exc:
            self._failed(f"cannot start gptterm diff: {exc}")
            return
        self.proc, self.started = proc, time.monotonic()
        self._tick()
        self.run_worker(lambda: self._wait(proc), thread=True, group="diff",
                        exit_on_error=False)

    def _wait(self, proc: subprocess.Popen) -> None:
        """Worker thread: the child's output, handed to the UI thread when it ends."""
        out, err = proc.communicate()
        try:
            self.app.call_from_thread(self._finished, proc, out, err)
        except RuntimeError:  # the app closed meanwhile
            pass

    def _finished(self, proc: subprocess.Popen, out: str, err: str) -> None:
        if proc is not self.proc:
            return
        self.proc = None
        if self.stopped:
            self._status(Content.styled("stopped", "dim"))
        elif proc.returncode != 0:
            self._failed(error_line(err, proc.returncode))
        else:
            try:
                self.result = json.loads(out)
            except ValueError:
                self._failed("gptterm diff printed no result")
                return
            file = inert(str(self.result.get("file", "")), single_line=True)
            self._status(Content.styled(f"{self.result.get('tokens', 0):,} tokens of {file}",
                                        "dim"))
            self._show_result()

    def _failed(self, line: str) -> None:
        self.error = inert(line, single_line=True)
        self._status(Content.styled(f"✗ {self.error}", "$error"))

    def _tick(self) -> None:
        """Timer: the spinner and elapsed time while the child runs."""
        if not self.running:
            return
        self._frame = (self._frame + 1) % len(SPINNER)
        seconds = time.monotonic() - self.started
        self._status(Content.styled(
            f"{SPINNER[self._frame]} scoring the file with A, then B… {seconds:.0f} s "
            "(Esc stops)", "$accent"))

    def _status(self, text: Content) -> None:
        self.query_one("#diff-status", Static).update(text)

    # ------------------------------------------------------------ showing

    def show(self, result: dict) -> None:
        """Show a finished diff's result (as `gptterm diff --json` gives it)."""
        self.result = result
        self._show_result()

    def _show_result(self) -> None:
        result = self.result
        perplexity = self.query_one("#diff-perplexity", Static)
        if result is None:
            perplexity.update("")
        else:
            perplexity.update(Content.assemble(
                ("perplexity A: ", "dim"), (f"{result['perplexity_a']:.2f}", "bold"),
                ("   perplexity B: ", "dim"), (f"{result['perplexity_b']:.2f}", "bold")))
        for key in ("gains", "losses"):
            table = self.query_one(f"#diff-{key}", DataTable)
            table.clear()
            for row in (result or {}).get(key, []):
                # rich Text, not Content: the table sizes its columns by rich measuring.
                table.add_row(Text(f"{row['delta']:+.3f}", justify="right"),
                              Text(tail(str(row["context"])), justify="right", style="dim"),
                              Text(repr(str(row["token"]))))

    # ------------------------------------------------------------ stopping

    def action_stop_or_close(self) -> None:
        if self.running:
            self.stop()
        else:
            self.dismiss(None)

    def stop(self) -> None:
        """Kill the running child (its worker then sees it end)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stopped = True
            self.proc.kill()

    def on_unmount(self) -> None:
        self.stop()
