"""`gptterm generate --session S` continues a session as it was left (its model, preset
and sampling settings; flags given win), and Ctrl+C stops the output at once."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gptterm.cli import main
from gptterm.store import Store

ROOT = Path(__file__).resolve().parent.parent


def generate(*args: str) -> int:
    return main(["generate", *args])


def last_turns(ref: str):
    """The session `ref` and its last model turn."""
    with Store() as store:
        session = store.find_session(ref)
        model_turns = [t for t in store.turns(session.id) if t.role == "model"]
        return session, model_turns[-1]


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory) -> Path:
    from tiny import build_model

    return build_model(tmp_path_factory.mktemp("other") / "other-gpt2", seed=1)


def test_the_session_continues_on_the_model_and_preset_it_last_used(tiny_model_dir, capsys):
    tiny = str(tiny_model_dir.resolve())
    assert generate("Once", "--session", "tale", "--model", str(tiny_model_dir), "--preset",
                    "greedy", "--max-new-tokens", "3") == 0
    session, turn = last_turns("tale")
    assert (session.model, session.preset) == (tiny, "greedy")
    # No --model, no --preset: the session's.
    assert generate(" upon", "--session", "tale", "--max-new-tokens", "3") == 0
    session, turn = last_turns("tale")
    assert (turn.model, turn.preset["name"], turn.preset["method"]) == (tiny, "greedy",
                                                                         "greedy")
    assert "Traceback" not in capsys.readouterr().err


def test_a_model_folder_is_remembered_by_its_absolute_path(tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    assert generate("Once", "--session", "rel", "--model", f"./{tiny_model_dir.name}",
                    "--max-new-tokens", "2", "--preset", "greedy") == 0
    monkeypatch.chdir(ROOT)  # elsewhere, the session still finds its model
    assert generate(" on", "--session", "rel", "--max-new-tokens", "2") == 0
    session, turn = last_turns("rel")
    assert session.model == turn.model == str(tiny_model_dir.resolve())


def test_explicit_model_and_preset_win_and_become_the_sessions(tiny_model_dir,
                                                                other_model_dir):
    assert generate("Once", "--session", "s", "--model", str(tiny_model_dir), "--preset",
                    "greedy", "--max-new-tokens", "2") == 0
    assert generate(" more", "--session", "s", "--model", str(other_model_dir), "--preset",
                    "creative", "--max-new-tokens", "2") == 0
    session, turn = last_turns("s")
    other = str(other_model_dir.resolve())
    assert (turn.model, turn.preset["name"]) == (other, "creative")
    assert (session.model, session.preset) == (other, "creative")
    assert generate(" again", "--session", "s", "--max-new-tokens", "2") == 0
    assert last_turns("s")[1].model == other


def test_the_sessions_sampling_applies_unless_a_flag_says_otherwise(tiny_model_dir):
    assert generate("Once", "--session", "knobs", "--model", str(tiny_model_dir), "--preset",
                    "creative", "--max-new-tokens", "2") == 0
    with Store() as store:
        sid = store.find_session("knobs").id
        store.set_session_sampling(sid, {"max_new_tokens": 3, "seed": 42, "top_k": 7,
                                         "temperature": 0.5})
    assert generate(" a", "--session", "knobs") == 0
    _, turn = last_turns("knobs")
    assert (turn.preset["max_new_tokens"], turn.seed, turn.preset["top_k"]) == (3, 42, 7)
    assert turn.preset["temperature"] == 0.5 and turn.preset["top_p"] == 0.95  # creative's
    assert turn.stats["max_new_tokens"] == 3

    assert generate(" b", "--session", "knobs", "--max-new-tokens", "2", "--seed", "5",
                    "--set", "top_k=9") == 0
    _, turn = last_turns("knobs")
    assert (turn.stats["max_new_tokens"], turn.seed, turn.preset["top_k"]) == (2, 5, 9)
    assert turn.preset["temperature"] == 0.5  # not overridden: still the session's
    # An explicit --preset still takes the session's overrides on top.
    assert generate(" c", "--session", "knobs", "--preset", "greedy") == 0
    _, turn = last_turns("knobs")
    assert (turn.preset["name"], turn.preset["method"], turn.seed) == ("greedy", "greedy", 42)
    assert turn.preset["max_new_tokens"] == 3


def test_a_new_session_starts_on_the_default_model(capsys):
    from gptterm import catalog

    assert generate("To be", "--session", "fresh", "--max-new-tokens", "2") == 0
    session, turn = last_turns("fresh")
    assert session.model == turn.model == catalog.DEFAULT_MODEL
    assert session.preset == "creative"


def test_a_missing_preset_falls_back_and_says_so(tiny_model_dir, capsys):
    assert generate("Once", "--session", "p", "--model", str(tiny_model_dir),
                    "--max-new-tokens", "2") == 0
    with Store() as store:
        store.remember_choice(store.find_session("p").id, preset="deleted-one")
    capsys.readouterr()
    assert generate(" on", "--session", "p", "--max-new-tokens", "2") == 0
    err = capsys.readouterr().err.splitlines()
    assert ("gptterm: the session's preset 'deleted-one' is not available: using 'creative'"
            in err)
    assert last_turns("p")[1].preset["name"] == "creative"


def test_a_session_model_that_is_gone_is_one_line_naming_the_way_out(tiny_model_dir,
                                                                      tmp_path, capsys):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "gone-model")
    assert generate("Once", "--session", "g", "--model", str(copy), "--max-new-tokens",
                    "2") == 0
    shutil.rmtree(copy)
    capsys.readouterr()
    assert generate(" on", "--session", "g") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "choose another with --model" in err[0]
    assert generate(" on", "--session", "g", "--model", str(tiny_model_dir),
                    "--max-new-tokens", "2") == 0


def test_generate_help_explains_prompt_and_sessions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "PROMPT is the text to continue; - reads it from stdin" in out
    assert "without --model or --preset, generate continues on the session's model" in out


# ---------------------------------------------------------------- Ctrl+C


def _read_some(fd: int) -> bytes:
    """Block until the child writes something (or closes stdout)."""
    return os.read(fd, 65536)


def _drain(fd: int) -> bytes:
    """Everything already in the pipe, without waiting for more."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    out = b""
    try:
        while chunk := os.read(fd, 65536):
            out += chunk
    except BlockingIOError:
        pass
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return out


def test_ctrl_c_stops_the_output_at_once(long_model_dir, tmp_path):
    """The child is frozen (SIGSTOP) to take what it wrote before ^C, then interrupted and
    resumed: after ^C, only the closing newline may come (the engine's queued tokens, or
    the one it made before seeing the cancel, used to be printed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPTTERM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptterm", "generate", "Once", "--model", str(long_model_dir),
         "--session", "ctrl-c", "--set", 'method="sample"', "--set", "min_new_tokens=3000",
         "--max-new-tokens", "4000", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        fd = proc.stdout.fileno()
        before = _read_some(fd)
        while len(before) < 20:  # a few tokens in
            chunk = _read_some(fd)
            assert chunk, proc.stderr.read().decode()
            before += chunk
        proc.send_signal(signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        before += _drain(fd)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        after, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert after == b"\n"
    assert b"Traceback" not in err
    # The reply was cancelled and stored whole: what was shown, and what came after ^C.
    with Store(tmp_path / "data" / "sessions.db") as store:
        turn = store.turns(store.find_session("ctrl-c").id)[-1]
    assert turn.status == "cancelled"
    assert turn.text.encode().startswith(before) and turn.stats["n_tokens"] < 4000
