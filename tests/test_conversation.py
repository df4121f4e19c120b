"""A long writing session on the shipped default model keeps its cache and verifies.

The scripted conversation of `bench/conversation.py` (twelve model turns with the
default preset, one of them cancelled and one continued without a prompt, running well
past the 256-token window) through the real engine and the turn recorder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gptterm import catalog, replay
from gptterm.engine.client import EngineClient
from gptterm.presets import DEFAULT_PRESET, load_presets
from gptterm.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from conversation import converse  # noqa: E402


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("conv") / "sessions.db")
    preset = load_presets()[0][DEFAULT_PRESET]
    with EngineClient(device="cpu") as client:
        loaded = client.load(catalog.DEFAULT_MODEL, "cpu")
        session_id, rows = converse(client, store, loaded.name, preset)
        yield store, session_id, rows, loaded.n_ctx
    store.close()


def test_the_conversation_runs_past_the_window_and_keeps_reusing_the_cache(conversation):
    store, session_id, rows, n_ctx = conversation
    assert len(rows) == 12
    assert {row.kind for row in rows} == {"prompt", "continue", "cancelled"}
    assert max(row.window_start for row in rows) > n_ctx  # well past the window
    assert all(row.prompt_tokens + 1 <= n_ctx for row in rows)
    reusing = sum(row.reused_tokens > 0 for row in rows[1:])
    assert reusing >= 9, [(r.prompt_tokens, r.reused_tokens, r.window_start) for r in rows]
    # A turn that follows an untouched reply reuses the whole cached prefix: everything
    # but the reply's last token and the new prompt (built from stored ids, not text).
    turns = store.turns(session_id)
    model_turns = [t for t in turns if t.role == "model"]
    for before, after, row in zip(model_turns, model_turns[1:], rows[1:]):
        if after.stats["window_start"] == before.stats["window_end"] and before.token_ids:
            assert row.reused_tokens >= before.stats["context_tokens"] - 1


def test_what_is_stored_is_what_the_model_saw(conversation):
    store, session_id, rows, _ = conversation
    turns = store.turns(session_id)
    users = [t for t in turns if t.role == "user"]
    # Prompts after a reply start on a new line; the first does not.
    assert not users[0].text.startswith("\n")
    assert all(u.text.startswith("\n") or turns[u.index - 1].text[-1:].isspace()
               for u in users[1:])
    cancelled = [t for t in turns if t.status == "cancelled"]
    assert len(cancelled) == 1 and 0 < len(cancelled[0].token_ids) < 80
    assert all(t.token_ids for t in turns)  # every turn keeps the ids the model saw


def test_replay_verify_says_identical_for_all_twelve_turns(conversation):
    store, session_id, rows, _ = conversation
    with replay.EngineRunner(device="cpu") as runner:
        checks = list(replay.verify(store.turns(session_id), runner))
    assert len(checks) == 12
    assert [c.outcome for c in checks] == ["identical"] * 12, [c.line() for c in checks]
