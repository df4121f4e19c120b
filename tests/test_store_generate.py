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
from gptterm.session_run import SessionRecorder, status_for
from gptterm.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory) -> Path:
    """A small model with room for thousands of positions, wide enough that a reply of
    4000 tokens streams for several seconds even on a fast, idle machine."""
    from tiny import build_model

    return build_model(tmp_path_factory.mktemp("long") / "tiny-long", n_positions=4096,
                       n_embd=256, n_layer=4, n_head=4)


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
    rec = SessionRecorder(store, "tale", "Once")
    assert rec.context == "Once" and store.list_sessions() == []  # nothing written yet
    cmd = Generate("r1", rec.session_id, rec.context, Preset(name="p", method="sample"), 5, 11)
    rec.on_event(Started("r1", 2, 0), "tiny", cmd)
    rec.on_event(TextDelta("r1", " upon", (7,)), "tiny", cmd)
    rec.on_event(TextDelta("r1", " a time", (8, 9)), "tiny", cmd)
    rec.on_event(Done("r1", "length", 3, 0.2, 0.05, 5), "tiny", cmd)
    session = store.find_session("tale")
    user, model = store.turns(session.id)
    assert (user.role, user.text, session.title) == ("user", "Once", "Once")
    assert (model.text, model.token_ids, model.status, model.seed) == (
        " upon a time", [7, 8, 9], "complete", 11)
    assert model.preset["method"] == "sample" and model.preset["max_new_tokens"] == 5
    assert model.stats == {"prompt_tokens": 2, "reused_tokens": 0, "n_tokens": 3,
                           "seconds": 0.2, "ttft": 0.05, "reason": "length",
                           "context_tokens": 5, "tokens_per_second": 15.0}
    # The next prompt continues the stored text.
    again = SessionRecorder(store, session.id, " Then")
    assert again.session_id == session.id and again.context == "Once upon a time Then"
    # A failure before Started stores nothing.
    failed = SessionRecorder(store, "tale", " x")
    failed.on_event(Failed("r2", "no model"), "tiny", cmd)
    assert len(store.turns(session.id)) == 2
    store.close()


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
    deadline = time.monotonic() + 60
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received, proc.stderr.read().decode()
    time.sleep(2.5)
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
    assert partial.status == "partial"
    saved = partial.text.encode()
    assert streamed.startswith(saved)
    assert saved.startswith(must_have)
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()
