"""End to end: the real `gptterm` console script in tmux, with a real model, in a temp data dir.

Type a prompt, watch text stream, press Esc, quit, and find the session stored
with the reply saved as cancelled. Uses the shipped default model when this
install has it, else the tiny fixture model.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptterm.textsafe import inert


SCRIPT = Path(sys.executable).with_name("gptterm")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Terminal:
    """`gptterm ARGS` in a detached tmux of its own, with a temp data and config dir."""

    def __init__(self, tmp_path: Path, args: str, size: tuple[int, int], presets: dict):
        assert shutil.which("tmux"), "tmux is needed for this test (apt-get install tmux)"
        assert SCRIPT.is_file(), f"{SCRIPT} missing: pip install -e . first"
        self.data, conf = tmp_path / "data", tmp_path / "config"
        (conf / "presets").mkdir(parents=True)
        for name, text in presets.items():
            (conf / "presets" / f"{name}.toml").write_text(text)
        self.exit_file = tmp_path / "exit-code"
        env = {**os.environ, "GPTTERM_DATA_DIR": str(self.data),
               "GPTTERM_CONFIG_DIR": str(conf), "HF_HUB_OFFLINE": "1",
               "TERM": "xterm-256color"}
        self.tmux = ["tmux", "-L", f"gptterm-e2e-{os.getpid()}-{tmp_path.name}"]
        command = f"'{SCRIPT}' {args}; echo $? > '{self.exit_file}'"
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "e2e", "-x", str(size[0]),
                        "-y", str(size[1]), command], env=env, check=True)

    def screen(self) -> str:
        out = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "e2e"],
                             capture_output=True, text=True, check=False)
        return out.stdout

    def keys(self, *k: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "e2e", *k], check=True)

    def quit(self) -> None:
        """Ctrl+Q, and the app must exit with 0."""
        self.keys("C-q")
        wait_for(self.exit_file.is_file, 20, "gptterm to quit")
        assert self.exit_file.read_text().strip() == "0"

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)


@pytest.mark.slow
def test_type_stream_cancel_quit_and_the_session_is_stored(tmp_path, long_model_dir):
    # A reply may use half the window: a model with a long window, so Esc stops it midway.
    # A long reply (no early end-of-text), so that Esc stops it midway.
    long = ('description = "long sampled reply"\nmethod = "sample"\nmax_new_tokens = 4000\n'
            'min_new_tokens = 4000\n')
    term = Terminal(tmp_path, f"tui --model '{long_model_dir}' --preset long", (100, 30),
                    {"long": long})
    screen, keys, data = term.screen, term.keys, term.data
    try:
        wait_for(lambda: "Write a beginning" in screen(), 20, "the prompt box")
        wait_for(lambda: re.search(r"● \S+ \([\w ]+\)", screen()), 60, "the model to load")
        keys("-l", "To be, or not")
        keys("Enter")
        wait_for(lambda: "writing…" in screen(), 20, "the reply to start")

        def streamed() -> str:
            """The reply's text on screen (the prompt may have scrolled off the top)."""
            lines = screen().splitlines()
            start = next((i for i, line in enumerate(lines) if "▌ To be, or not" in line), -1)
            reply = "".join(line.split("▕", 1)[-1].strip() for line in lines[start + 1:]
                            if "▔▔▔" not in line and "Write a beginning" not in line
                            and "│ preset" not in line and "f1 Help" not in line)
            return reply if len(reply) > 20 else ""

        wait_for(streamed, 30, "streamed text on screen")
        keys("Escape")
        # Wait for what must appear, not for what must go: a capture taken while the
        # terminal is mid-frame on a busy machine can lack any line.
        # The mark may wrap after its symbol: look for the word.
        wait_for(lambda: "cancelled" in screen(), 30, "the cancelled mark")
        term.quit()
    finally:
        term.close()

    from gptterm.store import Store

    with Store(data / "sessions.db") as store:
        (session,) = store.list_sessions()
        assert session.title == "To be, or not"
        user, reply = store.turns(session.id)
        assert (user.role, user.text) == ("user", "To be, or not")
        assert reply.role == "model" and reply.status == "cancelled"
        assert reply.text and reply.chunks and reply.seed is not None
        assert reply.preset["name"] == "long" and 0 < reply.stats["n_tokens"] < 4000


@pytest.mark.slow
def test_two_sessions_on_two_models_each_keep_their_own(tmp_path, long_model_dir,
                                                         tiny_model_dir):
    """A writer's afternoon in short: a session on one model, a second on another picked
    by path in F5, back and forth with Alt+Up/Down. Each session continues on its own
    model, and the status bar shows that session's model and figures."""
    long_path, tiny_path = str(long_model_dir), str(tiny_model_dir)
    term = Terminal(tmp_path, f"--model '{long_path}' --preset short", (120, 32),
                    {"short": 'method = "greedy"\nmax_new_tokens = 6\n'})
    screen, keys, data = term.screen, term.keys, term.data

    def bar() -> str:
        """The status bar line once no reply is being written and no model loads."""
        line = next((x for x in screen().splitlines() if "│ preset" in x), "")
        return "" if "writing" in line or "loading" in line else line

    def ctx_of(line: str) -> str:
        found = re.search(r"ctx (\d+/\d+)", line)
        return found.group(1) if found else ""

    def written(model: str, window: int):
        """Wait for a finished reply on `model`: the bar names it and a ctx over its window."""
        return wait_for(lambda: (line := bar()) and f"● {model} " in line
                        and ctx_of(line).endswith(f"/{window}") and not
                        ctx_of(line).startswith("0/") and line, 60, f"a reply on {model}")

    try:
        wait_for(lambda: "Write a beginning" in screen(), 20, "the prompt box")
        wait_for(lambda: "● tiny-long " in bar(), 60, "the first model to load")
        keys("-l", "Hello there")
        keys("Enter")
        first_bar = written("tiny-long", 8192)
        # A second session on another model, picked by its path.
        keys("C-n")
        wait_for(lambda: "ctx 0/8192" in bar(), 20, "an empty new session")
        keys("F5")
        wait_for(lambda: "a folder or server…" in screen(), 20, "the model picker")
        keys("End", "Enter")
        wait_for(lambda: "Model folder" in screen(), 20, "the folder question")
        keys("-l", tiny_path)
        keys("Enter")
        wait_for(lambda: "● tiny-gpt2 " in bar(), 60, "the second model to load")
        keys("-l", "Second story")
        keys("Enter")
        second_bar = written("tiny-gpt2", 128)
        # Back to the first session (below the new one in the sidebar): its model, its figures.
        keys("M-Down")
        back_bar = written("tiny-long", 8192)
        assert ctx_of(back_bar) == ctx_of(first_bar)
        wait_for(lambda: "Switched to tiny-long" in screen(), 20, "the switch notice")
        keys("-l", " and more")
        keys("Enter")
        wait_for(lambda: ctx_of(bar()) not in ("", ctx_of(first_bar)), 60, "a longer context")
        keys("M-Up")
        again = written("tiny-gpt2", 128)
        assert ctx_of(again) == ctx_of(second_bar)
        term.quit()
    finally:
        term.close()

    from gptterm.store import Store

    with Store(data / "sessions.db") as store:
        by_title = {s.title: s for s in store.list_sessions()}
        first, second = by_title["Hello there"], by_title["Second story"]
        assert first.model == long_path and second.model == tiny_path
        first_turns, second_turns = store.turns(first.id), store.turns(second.id)
        assert [t.model for t in first_turns if t.role == "model"] == [long_path, long_path]
        assert [t.model for t in second_turns if t.role == "model"] == [tiny_path]
        assert first_turns[-2].text.endswith(" and more")
        # The figures shown were the sessions' own, as stored with their last replies.
        assert ctx_of(again) == f"{second_turns[-1].stats['context_tokens']}/128"


@pytest.mark.slow
def test_alternatives_edit_and_branch_agree_with_the_command_line(tmp_path, long_model_dir):
    """Regenerate twice, flip back to the first version, continue from it, edit a model
    turn, branch; then `sessions show --all` and `replay --verify` agree with the screen."""
    term = Terminal(tmp_path, f"--model '{long_model_dir}' --preset short", (110, 32),
                    {"short": 'method = "sample"\nmax_new_tokens = 6\ntop_k = 50\n'})
    screen, keys = term.screen, term.keys

    def idle() -> str:
        line = next((x for x in screen().splitlines() if "│ preset" in x), "")
        return line if "● tiny-long" in line and "writing" not in line else ""

    def marked(mark: str):
        try:
            return wait_for(lambda: mark in screen() and idle(), 60, f"{mark} on screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{screen()}") from None

    try:
        wait_for(idle, 60, "the model to load")
        keys("-l", "Once")
        keys("Enter")
        wait_for(lambda: "seed" in screen() and idle(), 60, "the first reply")
        keys("C-r")
        marked("2/2")
        keys("C-r")
        marked("3/3")
        keys("M-Left")
        marked("2/3")
        keys("M-Left")
        marked("1/3")
        keys("-l", " more")
        keys("Enter")
        wait_for(lambda: "▌  more" in screen() and idle(), 60, "the reply to ' more'")
        # Edit the first reply (picker rows: the prompt, reply 1/3, " more", its reply).
        keys("M-r")
        wait_for(lambda: "Edit a turn" in screen(), 20, "the turn picker")
        keys("Up", "Up", "Enter")
        wait_for(lambda: "Ctrl+S keeps" in screen(), 20, "the editor")
        keys("-l", " EDITED")
        keys("C-s")
        marked("EDITED")
        # Branch at the first prompt: a new session holding only it.
        keys("M-n")
        try:
            wait_for(lambda: "Branch" in screen(), 20, "the branch picker")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{screen()}") from None
        keys("Up", "Enter")
        wait_for(lambda: "A new session holding the turns" in screen(), 20, "the branch")
        term.quit()
    finally:
        term.close()

    def cli(*args: str, code: int = 0) -> str:
        env = {**os.environ, "GPTTERM_DATA_DIR": str(term.data),
               "GPTTERM_CONFIG_DIR": str(tmp_path / "config"), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == code, done.stdout + done.stderr
        return done.stdout

    from gptterm.store import Store

    with Store(term.data / "sessions.db") as store:
        sessions = store.list_sessions()
        original = next(s for s in sessions if s.branched_from is None)
        branch = next(s for s in sessions if s.branched_from == original.id)
        path = store.turns(original.id)
        assert [t.role for t in path] == ["user", "model"]
        assert path[1].text.endswith(" EDITED") and (path[1].alternative,
                                                    path[1].alternatives) == (4, 4)
        versions = store.alternatives(path[1].id)
        assert [t.text for t in store.turns(branch.id)] == ["Once"]
        # " more" and its reply stay with the first version, off the chosen path now.
        assert " more" in [t.text for t in store.tree_turns(original.id)]
    shown_all = cli("sessions", "show", original.id, "--all")
    for version in versions:  # every version the screen made is listed
        assert inert(version.text.strip()) in shown_all
    assert "reply 4/4" in shown_all
    # The three generated versions and the reply to " more" re-run identically; the edited
    # one is not the model's text and says so (so not everything is verified: exit 1).
    verified = cli("replay", original.id, "--verify", code=1)
    assert "4 of 5 model turns identical" in verified, verified
    assert "cannot verify: its text was edited by hand" in verified
