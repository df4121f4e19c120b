"""A session of any size opens at once: the transcript reads and mounts its last page only,
and earlier turns a page at a time (issue 10, item 13)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ui_fakes import Engines, ready, until

from gptterm import config
from gptterm.store import Store, paging
from gptterm.ui.app import make_app
from gptterm.ui.widgets.prompt import PromptArea
from gptterm.ui.widgets.transcript import PAGE_TURNS, EarlierTurns

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from ui_latency import session_json  # the bench's big session, built the same way

SIZE = (100, 30)
N_TURNS = 40_000
OPEN_DEADLINE_S = 10.0  # generous for a shared 2-core machine; it took 99 s before paging


def turn_number(text: str) -> int:
    """The `[i]` a bench turn starts with."""
    return int(text.split("]")[0].split("[")[1])


def numbers(app) -> list[int]:
    return [turn_number(v.text) for v in app.main.transcript.views]


def open_big_session(ui_env: Path) -> str:
    """Store a 40,000-turn session (one bulk import) and make it the one the app opens."""
    with Store() as store:
        session = store.import_json(session_json(N_TURNS))
    settings, problems = config.load_settings()
    assert not problems
    settings.session = session.id
    config.save_settings(settings)
    return session.id


async def test_a_40000_turn_session_opens_at_once_and_shows_earlier_turns_on_demand(ui_env):
    session_id = open_big_session(ui_env)
    app = make_app(engine_factory=Engines().factory())
    started = time.monotonic()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.main.query_one(PromptArea)
        await until(pilot, lambda: app.main.session_id == session_id and prompt.has_focus,
                    timeout=OPEN_DEADLINE_S)
        await pilot.press("x")
        await until(pilot, lambda: prompt.text == "x", timeout=OPEN_DEADLINE_S)
        assert time.monotonic() - started < OPEN_DEADLINE_S
        # Only the last page is mounted, newest at the bottom, with the line above it.
        assert numbers(app) == list(range(N_TURNS - PAGE_TURNS, N_TURNS))
        line = app.main.transcript.query_one(EarlierTurns)
        assert f"{N_TURNS - PAGE_TURNS:,} earlier turns" in str(line.content)
        await ready(pilot)

        # A click on the line shows the page before, above the turns already shown.
        # The turn that was first stays in view (at the top) instead of jumping away.
        app.main.transcript.scroll_home(animate=False)
        await pilot.pause()
        was_first = app.main.transcript.views[0]
        await pilot.click(EarlierTurns)
        await until(pilot, lambda: len(app.main.transcript.views) == 2 * PAGE_TURNS)
        assert numbers(app) == list(range(N_TURNS - 2 * PAGE_TURNS, N_TURNS))
        await until(pilot, lambda: was_first.region.y == app.main.transcript.region.y)
        assert f"{N_TURNS - 2 * PAGE_TURNS:,} earlier turns" in str(line.content)
        # Enter on the focused line shows one more page.
        line.focus()
        await pilot.press("enter")
        await until(pilot, lambda: len(app.main.transcript.views) == 3 * PAGE_TURNS)
        assert numbers(app)[0] == N_TURNS - 3 * PAGE_TURNS

        # A reply still goes under the newest turn, and the page count stays bounded.
        prompt.focus()
        await pilot.press("enter")
        await until(pilot, lambda: app.main.gen is None and len(app.main.transcript.views) == 3 * PAGE_TURNS + 2)
        roles = [v.role for v in app.main.transcript.views[-2:]]
        assert roles == ["user", "model"] and app.main.transcript.views[-1].text == "Hello world"


async def test_the_line_goes_once_every_turn_is_shown(ui_env):
    with Store() as store:
        session = store.import_json(session_json(PAGE_TURNS + 3))
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        app.main.open_session(session.id)
        await pilot.pause()
        assert len(app.main.transcript.views) == PAGE_TURNS
        app.main.transcript.show_earlier()
        await until(pilot, lambda: not app.main.transcript.query(EarlierTurns))
        assert numbers(app) == list(range(PAGE_TURNS + 3))
        # A short session has no line at all.
        app.main.open_session(None)
        await pilot.pause()
        assert not app.main.transcript.query(EarlierTurns) and not app.main.transcript.views


def test_pages_follow_turn_positions_across_gaps():
    with Store() as store:
        session = store.import_json(session_json(7))
        turns = store.turns(session.id)
        store.delete_turn(turns[5].id)  # later turns keep their position: a gap at 5
        last = paging.turns_before(store, session.id, 3)
        assert [t.index for t in last] == [3, 4, 6]
        assert [t.text for t in last] == [turns[i].text for i in (3, 4, 6)]
        assert paging.count_before(store, session.id, last[0].index) == 3
        assert [t.index for t in paging.turns_before(store, session.id, 10, 3)] == [0, 1, 2]
        assert paging.turns_before(store, session.id, 10, 0) == []
        assert paging.count_before(store, session.id) == 6
        assert paging.count_before(store, "no-such-session") == 0
