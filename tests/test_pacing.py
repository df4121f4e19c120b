"""A reply's text goes out at most once a frame (engine/generation.py's TextSink): what
goes out folds to the same reply as one delta per token, the first token is never held,
and nothing is lost at the end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gptterm.engine.generation import TextSink
from gptterm.protocol import Reply, TokenInspect

TEXT = "abcdefghij"


class Detok:
    """Each token id stands for one character of TEXT."""

    def push(self, ids):
        return "".join(TEXT[i] for i in ids)

    def flush(self):
        return ""


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def paced(frame: float, clock: Clock, stops: tuple[str, ...] = ()) -> tuple[TextSink, list]:
    sent: list = []
    return TextSink("r", Detok(), stops, sent.append, frame=frame, clock=clock), sent


def push(sink: TextSink, token: int) -> None:
    sink.push(token, (("x", token / 10),), TokenInspect(token, ()))


@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from([0.0, 0.004, 0.02])),
                min_size=1, max_size=30),
       st.sampled_from([(), ("cd",), ("j",)]))
def test_what_goes_out_folds_to_the_reply_of_one_delta_per_token(steps, stops):
    clock = Clock()
    outs = []
    for frame in (0.016, 0.0):
        sink, sent = paced(frame, clock, stops)
        for token, gap in steps:
            clock.now += gap
            push(sink, token)
            if sink.stopped:
                break
        sink.finish()
        reply = Reply("r")
        for event in sent:
            reply.apply(event)
        alts = [a for e in sent for a in e.alternatives]
        insp = [i for e in sent for i in e.inspect]
        outs.append((reply.text, reply.token_ids, sink.n_tokens, alts[-len(reply.token_ids):]
                     if reply.token_ids else [], insp[-len(reply.token_ids):]
                     if reply.token_ids else []))
    assert outs[0] == outs[1]


def test_deltas_inside_a_frame_wait_and_go_out_together():
    clock = Clock()
    sink, sent = paced(0.016, clock)
    push(sink, 0)  # the first token: at once
    assert [e.token_ids for e in sent] == [(0,)]
    clock.now += 0.005
    push(sink, 1)
    clock.now += 0.005
    push(sink, 2)
    assert len(sent) == 1  # both wait: the frame is not over
    clock.now += 0.010
    push(sink, 3)  # 20 ms after the last send: b, c and d go out as one
    assert len(sent) == 2 and (sent[1].text, sent[1].token_ids) == ("bcd", (1, 2, 3))
    assert [i.chosen for i in sent[1].inspect] == [1, 2, 3] and len(sent[1].alternatives) == 3
    clock.now += 0.001
    push(sink, 4)
    sink.finish()  # the end sends what waits
    assert [(e.text, e.token_ids) for e in sent[2:]] == [("e", (4,))]


def test_tokens_slower_than_a_frame_each_go_out_as_they_come():
    clock = Clock()
    sink, sent = paced(0.016, clock)
    for i in range(5):
        push(sink, i)
        clock.now += 0.05
    assert [e.token_ids for e in sent] == [(i,) for i in range(5)]


def test_a_stop_sends_at_once_and_finish_sends_nothing_twice():
    clock = Clock()
    sink, sent = paced(1.0, clock, stops=("d",))
    for i in range(4):
        push(sink, i)
    assert sink.stopped and [e.text for e in sent] == ["a", "bc"]
    sink.finish()
    sink.finish()
    assert [e.text for e in sent] == ["a", "bc"] and sink.n_tokens == 3
