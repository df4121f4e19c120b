"""Replies go out at most once a frame (engine/pacing.py): merged deltas say what the
separate ones said, the first token is never held, and nothing is lost at the end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gptterm.engine.pacing import Paced
from gptterm.protocol import Done, Reply, Started, TextDelta, TokenInspect, merge_deltas


def delta(text: str, ids: tuple[int, ...], replace: bool = False) -> TextDelta:
    return TextDelta("r", text, ids, tuple((("x", 0.5),) for _ in ids), replace,
                     inspect=tuple(TokenInspect(i, ()) for i in ids))


deltas = st.lists(st.tuples(st.text(max_size=3), st.lists(st.integers(0, 99), max_size=3),
                            st.booleans()).map(lambda t: delta(t[0], tuple(t[1]), t[2])),
                  min_size=1, max_size=8)


def fold(events) -> Reply:
    reply = Reply("r")
    for event in events:
        reply.apply(event)
    return reply


@given(deltas)
def test_a_merged_delta_folds_to_the_same_reply(events):
    merged = events[0]
    for event in events[1:]:
        merged = merge_deltas(merged, event)
    one, many = fold([merged]), fold(events)
    assert (one.text, one.token_ids) == (many.text, many.token_ids)
    tail = events[max(i for i, e in enumerate(events) if e.replace or i == 0):]
    assert merged.alternatives == sum((e.alternatives for e in tail), ())
    assert merged.inspect == sum((e.inspect for e in tail), ())


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deltas_inside_a_frame_wait_and_go_out_merged():
    sent, clock = [], Clock()
    paced = Paced(sent.append, frame=0.016, clock=clock)
    paced(Started("r", 3, 0))
    paced(delta("a", (1,)))  # the first token: at once
    assert [type(e) for e in sent] == [Started, TextDelta] and sent[1].token_ids == (1,)
    clock.now += 0.005
    paced(delta("b", (2,)))
    clock.now += 0.005
    paced(delta("c", (3,)))
    assert len(sent) == 2  # both wait: the frame is not over
    clock.now += 0.010
    paced(delta("d", (4,)))  # 20 ms after the last send: b, c and d go out as one
    assert len(sent) == 3 and (sent[2].text, sent[2].token_ids) == ("bcd", (2, 3, 4))
    clock.now += 0.001
    paced(delta("e", (5,)))
    paced(Done("r", "length", 5, 0.1, 0.01))  # anything else sends what waits first
    assert [type(e) for e in sent[3:]] == [TextDelta, Done] and sent[3].text == "e"


def test_tokens_slower_than_a_frame_each_go_out_as_they_come():
    sent, clock = [], Clock()
    paced = Paced(sent.append, frame=0.016, clock=clock)
    for i in range(5):
        paced(delta(str(i), (i,)))
        clock.now += 0.05
    assert [e.token_ids for e in sent] == [(i,) for i in range(5)]


def test_flush_sends_what_waits_and_nothing_twice():
    sent, clock = [], Clock()
    paced = Paced(sent.append, frame=1.0, clock=clock)
    paced(delta("a", (1,)))
    paced(delta("b", (2,)))
    paced.flush()
    paced.flush()
    assert [e.text for e in sent] == ["a", "b"]


def test_a_beam_snapshot_goes_out_at_once_after_what_waits():
    sent, clock = [], Clock()
    paced = Paced(sent.append, frame=1.0, clock=clock)
    paced(delta("a", (1,)))
    paced(delta("b", (2,)))
    paced(delta("best so far", (7, 8), replace=True))
    assert [(e.text, e.replace) for e in sent] == [("a", False), ("b", False),
                                                   ("best so far", True)]
