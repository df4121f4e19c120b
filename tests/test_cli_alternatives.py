"""Issue 14's command-line contracts on a tiny model: generate --regenerate, sessions show
(--all), branch, memory, context, JSON export/import of the tree, replay --verify of every
alternative; and the pinned-window rule they rest on."""

from __future__ import annotations

import json

import pytest

from gptterm.cli import main
from gptterm.engine import window
from gptterm.store import Store, StoreError
from gptterm.textsafe import inert


def shown(printed: str) -> str:
    """A reply as `generate` printed it, as the session printers show it (inert)."""
    return inert(printed.rstrip("\n"))


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _generate(capsys, tiny, *extra) -> str:
    code, out, err = _run(capsys, "generate", *extra, "--model", str(tiny),
                          "--max-new-tokens", "6", "--preset", "creative")
    assert code == 0, err
    return out


@pytest.fixture
def story(tiny_model_dir, capsys):
    """A session "tale": a prompt, its reply, written again twice (3 alternatives)."""
    first = _generate(capsys, tiny_model_dir, "Once upon", "--session", "tale", "--seed", "1")
    second = _generate(capsys, tiny_model_dir, "--session", "tale", "--regenerate",
                       "--seed", "2")
    third = _generate(capsys, tiny_model_dir, "--session", "tale", "--regenerate",
                      "--seed", "3")
    return [first, second, third]


def _session(ref="tale"):
    with Store() as store:
        session = store.find_session(ref)
        return session, store.turns(session.id)


def test_regenerate_adds_an_alternative_after_the_same_context(story, capsys):
    _, turns = _session()
    assert [t.role for t in turns] == ["user", "model"]
    reply = turns[1]
    assert (reply.alternatives, reply.alternative, reply.seed) == (3, 3, 3)
    with Store() as store:
        alts = store.alternatives(reply.id)
    assert [a.seed for a in alts] == [1, 2, 3]
    # Each printed reply is the stored alternative's text; all follow the same prompt.
    assert [out.rstrip("\n") for out in story] == [a.text for a in alts]
    assert len({a.text for a in alts}) == 3  # three seeds, three replies
    assert all(a.stats["context_sha"] == alts[0].stats["context_sha"] for a in alts)


def test_sessions_show_marks_alternatives_and_all_prints_them(story, capsys):
    code, out, _ = _run(capsys, "sessions", "show", "tale")
    assert code == 0
    heads = [line for line in out.splitlines() if line.startswith("--- ")]
    assert heads[0] == "--- 0: You"
    assert heads[1].startswith("--- 1: ") and " · seed 3 · reply 3/3 (" in heads[1]
    assert shown(story[2]) in out and shown(story[0]) not in out
    code, out, _ = _run(capsys, "sessions", "show", "tale", "--all")
    heads = [line for line in out.splitlines() if line.startswith("--- ")]
    assert [f" · seed {i} · reply {i}/3" in h for i, h in enumerate(heads[1:], 1)] == [
        True, True, True]
    assert ["chosen" in h for h in heads[1:]] == [False, False, True]
    for text in story:
        assert shown(text) in out


def test_regenerate_refuses_what_it_cannot_do(tiny_model_dir, story, capsys):
    code, _, err = _run(capsys, "generate", "--regenerate", "--session", "nope",
                        "--model", str(tiny_model_dir))
    assert code == 2 and "no such session: nothing to regenerate" in err
    code, _, err = _run(capsys, "generate", "text", "--regenerate", "--session", "tale")
    assert code == 2 and "--regenerate: expected --session NAME|ID and no PROMPT" in err
    code, _, err = _run(capsys, "generate", "--session", "tale")
    assert code == 2 and "PROMPT: expected the text to continue" in err
    with Store() as store:
        store.add_turn(store.find_session("tale").id, "user", " And then")
    code, _, err = _run(capsys, "generate", "--regenerate", "--session", "tale",
                        "--model", str(tiny_model_dir))
    assert code == 2 and "does not end with a reply" in err
    assert len(_session()[1]) == 3  # nothing was stored


def test_continuing_goes_on_from_the_chosen_alternative(tiny_model_dir, story, capsys):
    with Store() as store:
        session = store.find_session("tale")
        first = store.alternatives(store.turns(session.id)[1].id)[0]
        store.choose(first.id)
    _generate(capsys, tiny_model_dir, " Then", "--session", "tale", "--seed", "4")
    _, turns = _session()
    assert [t.text for t in turns[:2]] == ["Once upon", story[0].rstrip("\n")]
    assert turns[2].text == " Then" and turns[1].alternative == 1


def test_replay_plays_the_chosen_path_and_verifies_every_alternative(story, capsys):
    code, out, _ = _run(capsys, "replay", "tale", "--speed", "1000")
    assert code == 0 and out == "Once upon" + shown(story[2]) + "\n"
    code, out, _ = _run(capsys, "replay", "tale", "--verify")
    lines = out.splitlines()
    assert code == 0, out
    assert [line.split(" (")[0] for line in lines[:3]] == [
        "turn 1 reply 1/3", "turn 1 reply 2/3", "turn 1 reply 3/3"]
    assert all(line.endswith(": identical (6 tokens)") for line in lines[:3])
    assert lines[3] == "3 of 3 model turns identical"


def test_an_edited_reply_is_said_to_be_unverifiable(story, capsys):
    with Store() as store:
        session = store.find_session("tale")
        store.edit_turn(store.turns(session.id)[1].id, " by hand")
    code, out, _ = _run(capsys, "replay", "tale", "--verify", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [(r["alternative"], r["outcome"]) for r in rows] == [
        (1, "identical"), (2, "identical"), (3, "identical"), (4, "unverifiable")]
    assert rows[3]["detail"] == "cannot verify: its text was edited by hand"
    code, out, _ = _run(capsys, "sessions", "show", "tale")
    assert " · edited · reply 4/4" in out and "by hand" in out
    with Store() as store:  # a turn after the third version, then a fourth chosen again
        session = store.find_session("tale")
        third = store.alternatives(store.turns(session.id)[1].id)[2]
        store.choose(third.id)
        store.add_turn(session.id, "user", " Next")
        store.add_turn(session.id, "user", " And next")
        store.choose(store.alternatives(third.id)[3].id)
    code, out, _ = _run(capsys, "sessions", "show", "tale", "--all")
    assert out.count("more turns after this version") == 1
    before = out.split("(then 2 more turns after this version)")[0]
    assert " · reply 3/4 (" in [h for h in before.splitlines() if h.startswith("--- ")][-1]


def test_branch_makes_a_session_of_turns_0_to_n(story, capsys):
    code, out, _ = _run(capsys, "sessions", "branch", "tale", "--at", "0", "--name", "fork")
    new_id = out.strip()
    assert code == 0 and len(new_id) == 8
    session, turns = _session("fork")
    assert session.id == new_id and session.branched_from == _session()[0].id
    assert [t.text for t in turns] == ["Once upon"]
    code, out, _ = _run(capsys, "sessions", "show", "fork")
    assert f"branched from {_session()[0].id} at turn 0" in out
    code, out, _ = _run(capsys, "sessions", "branch", "tale", "--at", "1")
    assert code == 0 and [t.text for t in _session(out.strip())[1]] == [
        "Once upon", story[2].rstrip("\n")]
    code, _, err = _run(capsys, "sessions", "branch", "tale", "--at", "5")
    assert code == 2 and "branch at 5: no turn at that position (turns are numbered 0 to 1)" \
        in err


def test_memory_is_set_shown_fed_first_and_cleared(tiny_model_dir, story, capsys):
    code, _, err = _run(capsys, "sessions", "memory", "tale", "The sea is calm.")
    assert code == 0 and "memory of" in err
    code, out, _ = _run(capsys, "sessions", "memory", "tale")
    assert out == "The sea is calm.\n"
    code, out, _ = _run(capsys, "sessions", "context", "tale")
    assert code == 0
    assert out == "The sea is calm.\nOnce upon" + story[2].rstrip("\n")
    # The next generation feeds the memory first, pinned, and records it with the reply.
    _generate(capsys, tiny_model_dir, " Then", "--session", "tale", "--seed", "5")
    _, turns = _session()
    assert turns[-1].stats["memory"] == "The sea is calm."
    code, out, _ = _run(capsys, "replay", "tale", "--verify")
    assert code == 0 and out.splitlines()[-1] == "4 of 4 model turns identical"
    code, out, _ = _run(capsys, "sessions", "show", "tale")
    assert "--- memory (pinned at the start of the context)\nThe sea is calm.\n" in out
    code, _, _ = _run(capsys, "sessions", "memory", "tale", "--clear")
    assert code == 0 and _session()[0].memory == ""
    code, _, err = _run(capsys, "sessions", "memory", "tale", "x", "--clear")
    assert code == 2 and "--clear: expected no TEXT" in err


def _long_session(tiny_model_dir, memory=""):
    with Store() as store:
        session = store.create_session(name="long")
        store.remember_choice(session.id, model=str(tiny_model_dir), preset="greedy")
        for i in range(12):
            store.add_turn(session.id, "user", f"Line {i}: the quick brown fox jumps. ")
        store.set_memory(session.id, memory)
        return session.id, store.context_turns(session.id)


def test_context_is_exactly_the_window_the_engine_feeds(tiny_model_dir, capsys):
    """Without memory, `sessions context` prints the ids the engine puts in the window."""
    from gptterm.engine.client import EngineClient
    from gptterm.presets import load_presets
    from gptterm.protocol import Generate, Reply
    from gptterm.recorder import context_segments

    sid, turns = _long_session(tiny_model_dir)
    code, out, err = _run(capsys, "sessions", "context", "long")
    assert code == 0
    with EngineClient(device="cpu") as client:
        loaded = client.load(str(tiny_model_dir), "cpu")
        command = Generate("r", sid, preset=load_presets()[0]["greedy"], max_new_tokens=1,
                           context=context_segments(turns, loaded.name))
        reply = Reply("r")
        client.generate(command, reply.apply)
    started = reply.started
    full = [i for _, ids in started.tokenized for i in ids]  # no turn had ids: all made
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert started.window_start > 0
    assert out == tok.decode(full[started.window_start:], clean_up_tokenization_spaces=False)
    assert f"the oldest {started.window_start} tokens are left out" in err


def test_context_keeps_the_memory_when_the_window_moves(tiny_model_dir, capsys):
    _, turns = _long_session(tiny_model_dir, memory="Remember: the fox is red.")
    code, out, err = _run(capsys, "sessions", "context", "long")
    assert code == 0
    whole = "".join(t.text for t in turns)
    assert out.startswith("Remember: the fox is red.\n")
    tail = out[len("Remember: the fox is red.\n"):]
    assert whole.endswith(tail) and len(tail) < len(whole) - 100
    assert "tokens after the memory are left out" in err
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    n = len(tok(out)["input_ids"])
    assert 128 // 2 <= n <= 128 - 1  # the window, less the room for the next token


def test_json_export_carries_the_tree_and_memory_and_imports_them(story, capsys, tmp_path):
    _run(capsys, "sessions", "memory", "tale", "Pinned.")
    code, _, _ = _run(capsys, "sessions", "export", "tale", "--format", "json", "-o",
                      str(tmp_path / "tale.json"))
    assert code == 0
    data = json.loads((tmp_path / "tale.json").read_text())
    assert data["session"]["memory"] == "Pinned."
    assert [t["parent"] for t in data["turns"]] == [None, 0, 0, 0]
    assert [t["chosen"] for t in data["turns"]] == [True, False, False, True]
    _run(capsys, "sessions", "delete", "tale")
    code, out, _ = _run(capsys, "sessions", "import", str(tmp_path / "tale.json"))
    assert code == 0
    code, _, _ = _run(capsys, "sessions", "export", "tale", "--format", "json", "-o",
                      str(tmp_path / "again.json"))
    assert json.loads((tmp_path / "again.json").read_text()) == data
    code, out, _ = _run(capsys, "sessions", "export", "tale")
    assert shown(story[2]) in out and shown(story[0]) not in out and "reply 3/3" in out


# ---------------------------------------------------------------- the pinned window rule


def test_pinned_tokens_stay_and_the_rest_moves_by_the_usual_rule():
    n_ctx, need = 100, 1
    # Nothing pinned: the usual rule.
    assert window.place_pinned(150, 0, 0, n_ctx, need) == window.place(150, 0, n_ctx, need)
    # Fits: from the start, nothing left out.
    assert window.place_pinned(80, 10, 0, n_ctx, need) == 0
    assert window.left_out(0, 10, n_ctx, need) == 0
    # Too long: the rest keeps the newest tokens of the room the memory leaves.
    start = window.place_pinned(300, 10, 0, n_ctx, need)
    assert start == 10 + window.place(290, 0, 90, need)
    ids = list(range(300))
    seen = window.window_ids(ids, 10, start, n_ctx, need)
    assert seen[:10] == list(range(10)) and seen[-1] == 299 and len(seen) + need <= n_ctx
    assert window.left_out(start, 10, n_ctx, need) == start - 10 == 300 - len(seen)
    # The start stays put while the context still fits (the cache keeps hitting).
    assert window.place_pinned(305, 10, start, n_ctx, need) == start
    # A memory of over half the window: only its first half stays pinned.
    assert window.pinned_kept(80, n_ctx, need) == 50
    assert window.pinned_kept(80, n_ctx, 60) == 39  # and room for the reply and one token
    for total in (1, 50, 99, 100, 101, 500):
        for pinned in (0, 1, 30, 99):
            for room in (1, 20, 50):
                if pinned > total:
                    continue
                s = window.place_pinned(total, pinned, 0, n_ctx, room)
                seen = window.window_ids(list(range(total)), pinned, s, n_ctx, room)
                kept = window.pinned_kept(pinned, n_ctx, room)
                assert len(seen) + room <= n_ctx and seen[:kept] == list(range(kept))
                assert seen[-1] == total - 1


# ---------------------------------------------------------------- the recorder


def test_recorder_writes_an_alternative_after_the_same_context_with_the_memory(tmp_path):
    from gptterm.presets import Preset
    from gptterm.protocol import Done, Started, TextDelta
    from gptterm.recorder import TurnRecorder

    store = Store(tmp_path / "s.db")
    sid = store.create_session().id
    preset = Preset(name="p", method="sample")

    def reply(rec, command, text, tokenized=()):
        r = command.request_id
        rec.on_event(Started(r, 3, 0, max_new_tokens=5, requested_max_new_tokens=5,
                             tokenized=tokenized, context_sha="sha"))
        rec.on_event(TextDelta(r, text, (9,)))
        rec.on_event(Done(r, "length", 1, 0.1, 0.01, 4, 0, 5))

    store.set_memory(sid, "Memory.")
    first = TurnRecorder(store, sid, "tiny", preset, seed=1)
    command = first.start("Once")
    assert command.pinned_segments == 1
    assert [s.text for s in command.context] == ["Memory.\n", "Once"]
    reply(first, command, " upon", tokenized=((0, (1, 2)), (1, (3,))))
    user, model = store.turns(sid)
    assert user.token_ids == [3]  # the prompt's ids, not the memory's
    assert model.stats["memory"] == "Memory."
    store.add_turn(sid, "user", " later")
    again = TurnRecorder(store, sid, "tiny", preset, seed=2)
    command = again.start(alternative_of=model.id)
    assert [s.text for s in command.context] == ["Memory.\n", "Once"]  # not " later"
    reply(again, command, " a time")
    assert [t.text for t in store.turns(sid)] == ["Once", " a time"]
    new = store.turns(sid)[1]
    assert (new.alternatives, new.alternative, new.seed) == (2, 2, 2)
    store.choose(model.id)
    assert [t.text for t in store.turns(sid)] == ["Once", " upon", " later"]
    with pytest.raises(StoreError, match="not a reply"):
        TurnRecorder(store, sid, "tiny", preset).start(alternative_of=user.id)
    store.set_memory(sid, None)
    assert TurnRecorder(store, sid, "tiny", preset).start(None).pinned_segments == 0
    store.close()


# ---------------------------------------------------------------- the engine keeps the memory


def test_the_engine_feeds_the_memory_then_the_window_s_tail(tiny_model_dir, capsys):
    """`sessions context` is exactly the engine's window when a memory is pinned, and the
    next turn keeps the window's start, so the memory and the text after it stay cached."""
    from transformers import AutoTokenizer

    from gptterm.engine.client import EngineClient
    from gptterm.presets import load_presets
    from gptterm.protocol import Generate, Reply, Segment
    from gptterm.recorder import context_segments

    sid, turns = _long_session(tiny_model_dir, memory="Remember: the fox is red.")
    code, printed, _ = _run(capsys, "sessions", "context", "long")
    assert code == 0
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    greedy = load_presets()[0]["greedy"]
    segments = context_segments(turns, str(tiny_model_dir), "Remember: the fox is red.")
    with EngineClient(device="cpu") as client:
        loaded = client.load(str(tiny_model_dir), "cpu")
        replies = []
        # The preset's max_new_tokens, as `sessions context` places the window; then two
        # turns with a short reply, which leave room for the text that follows.
        more = (Segment(" More."), Segment(" Much more text, far past the room left." * 4))
        for extra, max_new in (((), None), ((), 8), (more[:1], 8), (more, 8)):
            command = Generate(f"r{len(replies)}", f"{sid}-{max_new}", preset=greedy, seed=1,
                               max_new_tokens=max_new, context=(*segments, *extra),
                               pinned_segments=1)
            reply = Reply(command.request_id)
            client.generate(command, reply.apply)
            replies.append(reply)
    first, short, second, moved = (r.started for r in replies)
    full = [i for _, ids in first.tokenized for i in ids]
    memory_ids = first.tokenized[0][1]
    window = list(memory_ids) + full[first.window_start:]
    assert first.window_start > len(memory_ids) and first.prompt_tokens == len(window)
    # Room for the whole reply (the preset's, capped to half the window): no slide.
    assert first.prompt_tokens + first.max_new_tokens <= loaded.n_ctx
    assert printed == tok.decode(window, clean_up_tokenization_spaces=False)
    assert replies[0].end.window_start == first.window_start  # it never slid
    # The next turn keeps the start: all of the window before the new text is reused.
    assert short.window_start > len(memory_ids) and second.window_start == short.window_start
    assert second.reused_tokens >= short.prompt_tokens - 1
    # When the window must move, the memory at its start is still cached.
    assert moved.dropped_tokens > 0 and moved.reused_tokens >= len(memory_ids)


def test_a_reply_after_a_pinned_memory_and_a_moved_window_verifies(tiny_model_dir, capsys):
    _long_session(tiny_model_dir, memory="Remember: the fox is red.")
    for seed in ("1", "2"):
        code, _, err = _run(capsys, "generate", " And", "--session", "long", "--seed", seed,
                            "--max-new-tokens", "8")
        assert code == 0, err
    _, turns = _session("long")
    assert turns[-1].stats["window_start"] > 0 and turns[-1].stats["memory"]
    code, out, _ = _run(capsys, "replay", "long", "--verify")
    assert code == 0 and out.splitlines()[-1] == "2 of 2 model turns identical", out


def test_generate_says_what_a_pinned_memory_keeps(tiny_model_dir, capsys):
    _long_session(tiny_model_dir, memory="Remember: the fox is red.")
    code, _, err = _run(capsys, "generate", " And", "--session", "long", "--seed", "1",
                        "--max-new-tokens", "8")
    assert code == 0
    assert ("gptterm: the context is longer than tiny-gpt2's 128-token window: older text "
            "after the pinned memory is left out") in err.splitlines()
    from transformers import AutoTokenizer

    memory = AutoTokenizer.from_pretrained(str(tiny_model_dir))("Remember: the fox is red.\n")
    stats = _session("long")[1][-1].stats
    # What was left out is what lies between the memory and the window's rest.
    assert stats["dropped_tokens"] == stats["window_start"] - len(memory["input_ids"]) > 0
