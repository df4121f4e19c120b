"""`gptterm generate --session`: turns land in the store, and survive a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gptterm.presets import Preset
from gptterm.protocol import Done, Failed, Generate, Started, TextDelta
from gptterm.recorder import TurnRecorder, open_session, status_for
from gptterm.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _gptterm(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "gptterm", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_done_reasons_map_to_statuses():
    assert [status_for(Done("r", reason, 1, 1.0, 0.1)) for reason in
            ("eos", "length", "stop", "cancelled")] == [
        "complete", "complete", "complete", "cancelled"]
    assert status_for(Failed("r", "boom")) == "failed"


def test_recorder_stores_user_and_model_turns(tmp_path):
    store = Store(tmp_path / "s.db")
    sid = open_session(store, "tale")
    preset = Preset(name="p", method="sample")
    rec = TurnRecorder(store, sid, "tiny", preset, seed=11, max_new_tokens=5)
    cmd = rec.start("Once")
    # The user turn is stored at once; the model turn only when the engine starts it.
    assert [t.role for t in store.turns(sid)] == ["user"]
    assert cmd.text() == "Once" and cmd.session_id == sid and cmd.seed == 11
    r = cmd.request_id
    rec.on_event(Started(r, 2, 0, max_new_tokens=5, requested_max_new_tokens=5,
                         tokenized=((0, (4, 5)),), context_sha="abc"))
    rec.on_event(TextDelta(r, " upon", (7,)))
    rec.on_event(TextDelta(r, " a time", (8, 9)))
    rec.on_event(Done(r, "length", 3, 0.2, 0.05, 5, 0, 5))
    session = store.find_session("tale")
    user, model = store.turns(session.id)
    assert (user.role, user.text, session.title) == ("user", "Once", "Once")
    assert (user.token_ids, user.model) == ([4, 5], "tiny")  # the engine's ids for the prompt
    assert (model.text, model.token_ids, model.status, model.seed) == (
        " upon a time", [7, 8, 9], "complete", 11)
    assert model.preset["method"] == "sample" and model.preset["max_new_tokens"] == 5
    assert model.stats == {"prompt_tokens": 2, "reused_tokens": 0, "window_start": 0,
                           "dropped_tokens": 0, "max_new_tokens": 5, "context_sha": "abc",
                           "separator": "", "n_tokens": 3, "seconds": 0.2, "ttft": 0.05,
                           "reason": "length", "context_tokens": 5, "window_end": 0,
                           "tokens_per_second": 13.33}
    # The next prompt continues from the stored ids, after the separator.
    again = TurnRecorder(store, session.id, "tiny", preset)
    cmd2 = again.start("Then")
    assert cmd2.text() == "Once upon a time\nThen"
    assert [s.token_ids for s in cmd2.context] == [(4, 5), (7, 8, 9), None]
    # Another model does not reuse these ids: it tokenizes the text again.
    other = TurnRecorder(store, session.id, "other", preset).start(None)
    assert {s.token_ids for s in other.context} == {None}
    # A failure before Started stores no model turn (the prompt stays).
    failed = TurnRecorder(store, session.id, "tiny", preset)
    cmd3 = failed.start(" x")
    failed.on_event(Failed(cmd3.request_id, "no model"))
    assert [t.role for t in store.turns(session.id)] == ["user", "model", "user", "user"]
    store.close()


def test_recorder_stop_saves_what_arrived_as_cancelled_and_ignores_the_rest(tmp_path):
    store = Store(tmp_path / "s.db")
    sid = open_session(store, "s")
    rec = TurnRecorder(store, sid, "tiny", Preset())
    r = rec.start("Go").request_id
    rec.on_event(Started(r, 1, 0))
    rec.on_event(TextDelta(r, " on", (3,)))
    rec.stop()
    assert not rec.on_event(TextDelta(r, " more", (4,)))  # after stop: ignored
    model = store.turns(sid)[-1]
    assert (model.text, model.status, model.stats["reason"]) == (" on", "cancelled", "cancelled")
    store.close()


def test_separator_rule():
    from gptterm.recorder import separator_for, turn_separator

    assert separator_for("", "Now", "\n") == ""  # the start
    assert separator_for("so much", "Now", "\n") == "\n"  # glued text gets a new line
    assert separator_for("so much\n", "Now", "\n") == ""  # after whitespace
    assert separator_for("so much", " Now", "\n") == ""  # the user chose the joint
    assert turn_separator(Preset(), "shakespeare-mini") == "\n"
    assert turn_separator(Preset(turn_separator=" / "), "shakespeare-mini") == " / "


@pytest.mark.slow
def test_generate_session_appends_and_continues(tiny_model_dir):
    def run(prompt: str, ref: str, *more: str) -> str:
        proc = _gptterm("generate", prompt, "--model", str(tiny_model_dir), "--session", ref,
                        "--max-new-tokens", "8", *more, text=True)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return out

    first = run("Once upon a time", "story", "--preset", "greedy")
    store = Store()
    session = store.find_session("story")
    second = run(" And then", session.id, "--set", "method='sample'")
    turns = store.turns(session.id)
    assert [t.role for t in turns] == ["user", "model", "user", "model"]
    assert turns[1].text == first.rstrip("\n") and turns[3].text == second.rstrip("\n")
    assert all(t.status == "complete" for t in turns)
    assert turns[1].model == str(tiny_model_dir)
    assert (turns[1].preset["name"], turns[1].preset["method"]) == ("greedy", "greedy")
    # A sampled turn without --seed still records the seed it used, so it can be verified.
    assert turns[3].preset["method"] == "sample" and isinstance(turns[3].seed, int)
    assert len(turns[1].token_ids) == 8
    # The second run saw the whole session as its prompt.
    assert turns[3].stats["prompt_tokens"] > turns[1].stats["prompt_tokens"] + 1
    assert session.title == "Once upon a time"
    store.close()


@pytest.mark.slow
def test_kill_9_while_streaming_keeps_all_but_the_last_second(long_model_dir):
    # An earlier exchange in the same session, which the crash must not touch.
    proc = _gptterm("generate", "The sea", "--model", str(long_model_dir), "--session", "crash",
                    "--max-new-tokens", "5")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    store = Store()
    before = [(t.role, t.text, t.status) for t in store.turns(store.find_session("crash").id)]
    store.close()

    # Greedy on this model does not meet end-of-text for thousands of tokens.
    proc = _gptterm("generate", " The sky", "--model", str(long_model_dir), "--session", "crash",
                    "--max-new-tokens", "4000", "--preset", "greedy")
    received: list[tuple[float, bytes]] = []

    def read() -> None:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            received.append((time.monotonic(), chunk))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    def settled() -> int:  # bytes received at least a second ago (they must be saved)
        cutoff = time.monotonic() - 1.0
        return sum(len(c) for t, c in received if t <= cutoff)

    # Wait on what has streamed, not on a clock: a busy machine streams slowly.
    deadline = time.monotonic() + 120
    while settled() <= 100 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert received and proc.poll() is None, proc.stderr.read().decode()
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    reader.join(timeout=5)
    streamed = b"".join(c for _, c in received)
    must_have = b"".join(c for t, c in received if t <= killed_at - 1.0)
    assert len(must_have) > 100 and not streamed.endswith(b"\n")  # killed mid-stream

    store = Store()
    assert store.recovered_from is None
    turns = store.turns(store.find_session("crash").id)
    assert [(t.role, t.text, t.status) for t in turns[:2]] == before
    assert (turns[2].role, turns[2].text, turns[2].status) == ("user", " The sky", "complete")
    partial = turns[3]
    assert partial.status == "interrupted"  # its writer is gone: marked on the next open
    saved = partial.text.encode()
    assert streamed.startswith(saved)
    assert saved.startswith(must_have)
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


@pytest.mark.slow
def test_a_closed_pipe_ends_the_reply_like_ctrl_c(long_model_dir):
    """`gptterm generate ... | head`: the reply is saved as cancelled, the exit is quiet."""
    proc = _gptterm("generate", "The sea", "--model", str(long_model_dir), "--session", "piped",
                    "--max-new-tokens", "4000", "--preset", "greedy")
    first = os.read(proc.stdout.fileno(), 16)  # the reader takes a little, then goes away
    proc.stdout.close()
    proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    assert first and proc.returncode == 141 and err == ""
    store = Store()
    model = store.turns(store.find_session("piped").id)[-1]
    assert model.status == "cancelled" and 0 < len(model.token_ids) < 4000
    assert model.text.encode().startswith(first[:8])
    store.close()
