"""Hand-picked tokens in the engine: forced tokens keep the seeded generator in step, and step
mode (Candidates, Pick, Cancel) while the worker goes on serving other commands."""

from __future__ import annotations

import queue
import time

import pytest
import torch

from gptterm.engine.engine import Engine
from gptterm.engine.generation import STEP_TOP_K, sample_tokens
from gptterm.presets import Preset
from gptterm.protocol import (
    Cancel,
    Candidates,
    CountTokens,
    Done,
    DropSession,
    Failed,
    Generate,
    LoadModel,
    ModelLoaded,
    Pick,
    TextDelta,
    TokenCount,
)

SAMPLE = Preset(name="sample", method="sample", top_k=50, temperature=1.3)
GREEDY = Preset(name="greedy", method="greedy")
PROMPT = "To be, or not to be"
DEADLINE_S = 60.0


class Driver:
    """An Engine on a tiny model, with its events in a queue."""

    def __init__(self, model_dir):
        self.events: queue.Queue = queue.Queue()
        self.engine = Engine(self.events.put, device="cpu").start()
        self.engine.submit(LoadModel(str(model_dir)))
        assert isinstance(self.next(ModelLoaded), ModelLoaded)

    def next(self, *kinds, request_id=None):
        """The next event of one of `kinds` (and of `request_id` when given)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(event, kinds) and request_id in (None, getattr(event, "request_id", None)):
                return event

    def run(self, command: Generate, on_candidates=None) -> tuple[Done | Failed, list[int],
                                                                  list[Candidates]]:
        """Run `command` to its end; `on_candidates(event)` answers each step (a Pick's
        token, or None for the draw)."""
        self.engine.submit(command)
        ids, steps = [], []
        while True:
            event = self.next(TextDelta, Candidates, Done, Failed, request_id=command.request_id)
            if isinstance(event, TextDelta):
                ids.extend(event.token_ids)
            elif isinstance(event, Candidates):
                steps.append(event)
                self.engine.submit(Pick(command.request_id, on_candidates(event)))
            else:
                return event, ids, steps

    def close(self):
        self.engine.close()


@pytest.fixture(scope="module")
def driver(tiny_model_dir):
    d = Driver(tiny_model_dir)
    yield d
    d.close()


def gen(rid, preset=SAMPLE, seed=11, max_new=16, **kwargs) -> Generate:
    return Generate(rid, f"session-{rid}", PROMPT, preset, max_new, seed, **kwargs)


# ------------------------------------------------------------ forced tokens


def test_forcing_a_runs_own_tokens_gives_the_same_run(driver):
    done, plain, _ = driver.run(gen("plain"))
    assert isinstance(done, Done) and len(plain) >= 4
    forced = tuple(enumerate(plain))
    _, again, _ = driver.run(gen("forced", forced_tokens=forced))
    assert again == plain


def test_a_forced_token_changes_the_token_and_keeps_what_came_before(driver):
    _, plain, _ = driver.run(gen("a"))
    other = 5 if plain[2] != 5 else 6
    _, forced, _ = driver.run(gen("b", forced_tokens=((2, other),)))
    assert forced[:2] == plain[:2] and forced[2] == other
    # The same picks again give the same reply (what replay --verify relies on).
    _, again, _ = driver.run(gen("c", forced_tokens=((2, other),)))
    assert again == forced


class FlatDecoder:
    """A decoder whose next-token scores never depend on the context: then only the seeded
    generator decides each draw, so a forced token must leave every other draw as it was."""

    device = "cpu"

    def __init__(self, logits):
        self.logits = logits

    def advance(self, token):
        return self.logits


def test_a_forced_token_leaves_the_generator_where_it_would_be():
    logits = torch.randn(64, generator=torch.Generator().manual_seed(3))
    preset = Preset(name="s", method="sample", temperature=1.5)

    def draw(forced=None):
        return list(sample_tokens(FlatDecoder(logits), logits, preset=preset, prompt_ids=[1],
                                  max_new_tokens=40, eos_token_id=None, seed=5, forced=forced))

    plain = draw()
    assert len(set(plain)) > 5  # a real spread of draws
    forced = draw({3: 63, 17: 0})
    assert forced[3] == 63 and forced[17] == 0
    assert [t for i, t in enumerate(forced) if i not in (3, 17)] == \
        [t for i, t in enumerate(plain) if i not in (3, 17)]


def test_forced_tokens_are_checked(driver):
    done, _, _ = driver.run(gen("bad", forced_tokens=((1, 10**6),)))
    assert isinstance(done, Failed) and "vocabulary size" in done.error
    done, _, _ = driver.run(gen("beam", preset=Preset(name="b", method="beam", num_beams=2),
                                forced_tokens=((0, 3),)))
    assert isinstance(done, Failed) and "greedy or sampling" in done.error


# ------------------------------------------------------------ step mode


def test_taking_every_draw_gives_the_plain_run(driver):
    _, plain, _ = driver.run(gen("plain2"))
    done, stepped, steps = driver.run(gen("step", step_mode=True), lambda c: None)
    assert stepped == plain and done.n_tokens == len(plain)
    assert [c.position for c in steps][: len(plain)] == list(range(len(plain)))
    assert [c.drawn for c in steps][: len(plain)] == plain
    for c in steps:
        ids = [i for i, _, _ in c.top]
        assert c.drawn in ids
        # The top tokens, most likely first, and the draw after them when it is not one.
        top = c.top if ids.index(c.drawn) < STEP_TOP_K else c.top[:-1]
        assert len(top) == STEP_TOP_K
        probs = [p for _, _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
        assert all(c.top[-1][2] <= p for p in probs)
        assert all(isinstance(text, str) for _, text, _ in c.top)


def test_a_pick_is_the_same_as_forcing_it(driver):
    picks = {}

    def second_at_2(c: Candidates):
        if c.position == 2:
            picks[2] = next(i for i, _, _ in c.top if i != c.drawn)
            return picks[2]
        return None

    _, stepped, steps = driver.run(gen("pick", step_mode=True), second_at_2)
    assert stepped[2] == picks[2] != steps[2].drawn
    _, forced, _ = driver.run(gen("force", forced_tokens=((2, picks[2]),)))
    assert forced == stepped


def test_greedy_steps_draw_the_most_likely_token(driver):
    _, _, steps = driver.run(gen("g", preset=GREEDY, max_new=6, step_mode=True),
                                   lambda c: None)
    assert steps and all(c.drawn == c.top[0][0] for c in steps)


def test_cancel_while_waiting_ends_the_reply_before_that_token(driver):
    command = gen("cancel", step_mode=True)
    driver.engine.submit(command)
    ids = []
    while True:
        event = driver.next(TextDelta, Candidates, Done, request_id="cancel")
        if isinstance(event, TextDelta):
            ids.extend(event.token_ids)
        elif isinstance(event, Candidates) and event.position < 3:
            driver.engine.submit(Pick("cancel", None))
        elif isinstance(event, Candidates):
            driver.engine.submit(Cancel("cancel"))
        else:
            break
    assert event.reason == "cancelled" and event.n_tokens == 3 and len(ids) == 3


def test_the_worker_serves_other_commands_while_a_step_waits(driver):
    command = gen("wait", step_mode=True)
    driver.engine.submit(command)
    first = driver.next(Candidates, request_id="wait")
    driver.engine.submit(Pick("someone-else", 3))  # a stale pick changes nothing
    driver.engine.submit(CountTokens("count", "hello world"))
    count = driver.next(TokenCount, Failed, request_id="count")
    assert isinstance(count, TokenCount) and count.n_tokens > 0
    driver.engine.submit(DropSession("another-session"))  # served, the step goes on
    driver.engine.submit(Pick("wait", None))
    second = driver.next(Candidates, request_id="wait")
    assert (first.position, second.position) == (0, 1)
    # A new Generate ends the waiting step (as a cancel would) and then runs.
    driver.engine.submit(gen("after", max_new=3))
    done = driver.next(Done, request_id="wait")
    assert done.reason == "cancelled" and done.n_tokens == 1
    after = driver.next(Done, Failed, request_id="after")
    assert isinstance(after, Done) and after.n_tokens > 0


def test_a_pick_outside_the_vocabulary_fails_the_reply(driver):
    done, _, _ = driver.run(gen("badpick", step_mode=True), lambda c: 10**6)
    assert isinstance(done, Failed) and "vocabulary size" in done.error


def test_step_mode_is_refused_for_beam_search(driver):
    done, _, steps = driver.run(gen("beam2", preset=Preset(name="b", method="beam",
                                                          num_beams=2), step_mode=True),
                                lambda c: None)
    assert isinstance(done, Failed) and not steps
    assert done.error == ("step mode and hand-picked tokens need a greedy or sampling "
                          "preset, not beam")


class StubEngine:
    """An engine that loads anything and keeps the commands it gets."""

    def __init__(self, emit, *args):
        self.emit, self.got = emit, []

    def start(self):
        return self

    def submit(self, command):
        self.got.append(command)
        if isinstance(command, LoadModel):
            self.emit(ModelLoaded(command.name, "server", 128))

    def close(self, timeout=0.0):
        pass


def test_a_model_on_a_server_refuses_step_mode_and_picks_reach_their_engine():
    from gptterm.remote.routing import RoutingEngine

    events = []
    routing = RoutingEngine(events.append, StubEngine, backends={}, remote_factory=StubEngine)
    routing.submit(LoadModel("http://127.0.0.1:9"))
    remote = routing.active
    routing.submit(gen("srv", step_mode=True))
    routing.submit(gen("srv2", forced_tokens=((0, 1),)))
    assert [e.error for e in events if isinstance(e, Failed)] == [
        "step mode and hand-picked tokens need an in-process model, not a server"] * 2
    assert not [c for c in remote.got if isinstance(c, Generate)]
    routing.submit(gen("plain"))
    routing.submit(Pick("plain", 4))
    assert remote.got[-2:] == [gen("plain"), Pick("plain", 4)]
