"""CountTokens on the real engine and a tiny model: the count is what a Generate of the same
context and prompt sees, counts coalesce and are answered between a generation's steps,
and with no model the answer is Failed."""

from __future__ import annotations

import threading

import pytest

from gptterm.engine.client import EngineClient
from gptterm.engine.engine import Engine
from gptterm.presets import Preset
from gptterm.protocol import (
    CountTokens,
    Done,
    Failed,
    Generate,
    LoadModel,
    Segment,
    Started,
    TextDelta,
    TokenCount,
)

GREEDY = Preset(name="greedy", method="greedy")
SAMPLE = Preset(name="sample", method="sample", top_k=50)


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    with EngineClient(device="cpu") as c:
        c.load(str(tiny_model_dir))
        yield c


def started_for(client, context: tuple[Segment, ...], rid: str) -> Started:
    events: list = []
    done = client.generate(Generate(rid, rid, preset=GREEDY, max_new_tokens=1, context=context),
                           events.append)
    assert isinstance(done, Done), done
    return next(e for e in events if isinstance(e, Started))


def a_turn(client) -> tuple[Segment, Segment]:
    """A prompt and the model's reply, with the ids the engine made for them."""
    events: list = []
    client.generate(Generate("turn", "turn", "To be, or not to", GREEDY, 8), events.append)
    started = next(e for e in events if isinstance(e, Started))
    reply = [e for e in events if isinstance(e, TextDelta)]
    return (Segment("To be, or not to", started.tokenized[0][1]),
            Segment("".join(e.text for e in reply), tuple(i for e in reply for i in e.token_ids)))


@pytest.mark.parametrize("text", ["day", " that is the question", "안녕하세요. 床前明月光", "\n\nOnce"])
@pytest.mark.parametrize("shape", ["empty", "ids", "text only", "own ids", "foreign ids"])
def test_count_is_what_generate_sees(client, tiny_model_dir, shape, text):
    prompt, reply = a_turn(client)
    context = {
        "empty": (),
        "ids": (prompt, reply),
        "text only": (Segment(prompt.text), Segment(reply.text)),
        # ids that are not how the text tokenizes: a Generate uses them as they are
        "own ids": (Segment(prompt.text, (5, 6, 7, 8, 9, 10, 11, 12, 13)),),
        # ids outside the vocabulary (another model's): a Generate tokenizes the text
        "foreign ids": (Segment(prompt.text, (10**6,)), reply),
    }[shape]
    count = client.count_tokens(text, context)
    assert isinstance(count, TokenCount), count
    assert (count.n_ctx, count.model) == (128, str(tiny_model_dir))
    started = started_for(client, (*context, Segment(text)), f"{shape}-{text}")
    assert count.context_tokens + count.n_tokens == started.prompt_tokens
    assert count.n_tokens == len(started.tokenized[-1][1])  # the text's own ids
    if shape == "own ids":
        assert count.context_tokens == 9


def test_text_after_context_is_not_counted_as_joined_text(client):
    # "t" + "o be" tokenized as one text merges across the joint; a Generate sends the
    # context's ids and then the text's own, and the count says the same.
    first = started_for(client, (Segment("To be, or not t"),), "joint-1")
    context = (Segment("To be, or not t", first.tokenized[0][1]),)
    count = client.count_tokens("o be", context)
    assert count.context_tokens == first.prompt_tokens
    second = started_for(client, (*context, Segment("o be")), "joint-2")
    assert count.context_tokens + count.n_tokens == second.prompt_tokens
    joined = client.count_tokens("To be, or not to be")
    assert joined.n_tokens < second.prompt_tokens  # so counting the joined text would be wrong


def test_empty_text_and_context_count_nothing(client):
    assert client.count_tokens("").n_tokens == 0
    empty = client.count_tokens("", ())
    assert (empty.n_tokens, empty.context_tokens) == (0, 0)
    prompt = Segment("To be", (1, 2, 3))
    after = client.count_tokens("", (prompt,))
    assert (after.n_tokens, after.context_tokens) == (0, 3)


def test_no_model_answers_failed():
    with EngineClient(device="cpu") as c:
        answer = c.count_tokens("To be", (Segment("x"),))
    assert isinstance(answer, Failed) and "no model" in answer.error


def test_counts_coalesce_and_are_answered_between_steps(tiny_model_dir):
    events: list = []
    first, counts_sent, done, last = (threading.Event() for _ in range(4))

    def emit(event):  # the worker thread
        events.append(event)
        if isinstance(event, TextDelta) and not first.is_set():
            first.set()
            counts_sent.wait(30)  # hold the generation while the counts queue up
        elif isinstance(event, Done):
            done.set()
        elif isinstance(event, TokenCount) and event.request_id == "last":
            last.set()

    engine = Engine(emit, device="cpu").start()
    try:
        engine.submit(LoadModel(str(tiny_model_dir)))
        engine.submit(Generate("g", "s", "To be", SAMPLE, 60, 1))
        assert first.wait(60)
        for rid in ("a", "b", "c"):
            engine.submit(CountTokens(rid, "To be or not"))
        counts_sent.set()
        assert done.wait(60)
        engine.submit(CountTokens("last", "x"))  # queued behind the stale a, b, c
        assert last.wait(60)
    finally:
        engine.close()
    answers = [e.request_id for e in events if isinstance(e, (TokenCount, Failed))]
    assert answers == ["c", "last"]  # only the newest of a, b, c, and it once
    # c was answered right after the step it waited on, not after the whole reply
    at = next(i for i, e in enumerate(events) if isinstance(e, TokenCount))
    assert events[at - 1] is next(e for e in events if isinstance(e, TextDelta))
    assert at < next(i for i, e in enumerate(events) if isinstance(e, Done))
