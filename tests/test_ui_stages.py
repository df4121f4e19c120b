"""The stage panel (Alt+I): every chain stage of each token of a reply, side by side, with a
heat strip; live from the engine's events, and for old replies from the store. Pilot tests
on the fake engine, and a snapshot (pytest-textual-snapshot; `--snapshot-update` refreshes)."""

from __future__ import annotations

from ui_fakes import Engines, ready, until

from gptterm.protocol import StageTop, TextDelta, TokenInspect
from gptterm.store import Store
from gptterm.ui.app import make_app
from gptterm.ui.keymap import KEY_ACTIONS
from gptterm.ui.screens.stages import StageScreen, chosen_probability, heat, strip_content
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 30)
WAIT = 20.0  # a generous deadline: the machine may be busy


def token(chosen: int, text: str, p: float, rival: str = " the") -> TokenInspect:
    """A token whose top-k step kept it and one rival, each stage most probable first."""
    def stage(name, mine, theirs):
        top = sorted(((chosen, text, round(mine, 3)), (90, rival, round(theirs, 3))),
                     key=lambda c: -c[2])
        return StageTop(name, tuple(top))

    return TokenInspect(chosen, (stage("model", p * 0.6, 0.2), stage("temperature", p * 0.8, 0.15),
                                 stage("top_k", p, 1 - p), stage("final", p, 1 - p)), text)


SONNET = [token(1, " thee", 0.55), token(2, " to", 0.93), token(3, " a", 0.41),
          token(4, " summer", 0.12, rival=" winter"), token(5, "'s", 0.71),
          token(6, " day", 0.88), token(7, "?", 0.64)]


def panel(app) -> StageScreen:
    assert isinstance(app.screen, StageScreen)
    return app.screen


def shown(app, part: str) -> str:
    return str(panel(app).query_one(f"#stages-{part}").render())


def stored_session():
    store = Store()
    session = store.create_session("sonnet")
    store.add_turn(session.id, "user", "Shall I compare")
    writer = store.begin_turn(session.id, model="fake-model", preset={"name": "alpha"}, seed=1)
    writer.append("".join(t.text for t in SONNET), [t.chosen for t in SONNET])
    turn = writer.finish("complete")
    store.save_inspect(turn.id, 2, SONNET)
    return store, session


def test_the_heat_and_the_chosen_probability():
    assert chosen_probability(SONNET[3]) == (0.12, True)
    outside = TokenInspect(99, (StageTop("final", ((1, "a", 0.6), (2, "b", 0.3))),), "z")
    assert chosen_probability(outside) == (0.3, False)  # at most the least shown
    assert heat(0.95) != heat(0.3) != heat(0.01)
    strip = strip_content(SONNET, 2)
    assert str(strip) == " thee to a summer's day?"
    styles = {str(s.style) for s in strip.spans}
    assert heat(0.12) in styles and heat(0.93) in styles


async def test_an_old_reply_opens_from_the_store_and_the_keys_move_along_it(ui_env):
    store, session = stored_session()
    app = make_app(engine_factory=Engines().factory(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.open_session(session.id)
        await pilot.press("alt+i")
        await until(pilot, lambda: isinstance(app.screen, StageScreen), WAIT)
        assert "token 1 of 7" in shown(app, "bar") and "' thee'" in shown(app, "bar")
        table = shown(app, "table").splitlines()
        assert [c.strip() for c in table[0].split("│")] == ["model", "temperature", "top_k",
                                                            "final"]
        assert [c.strip() for c in table[1].split("│")] == [
            "' thee' 0.330", "' thee' 0.440", "' thee' 0.550", "' thee' 0.550"]
        await pilot.press("right", "right", "right")
        assert "token 4 of 7" in shown(app, "bar") and "final p 0.120" in shown(app, "bar")
        assert "' winter' 0.880" in shown(app, "table")
        await pilot.press("end")
        assert "token 7 of 7" in shown(app, "bar")
        await pilot.press("right")  # stays on the last
        assert "token 7 of 7" in shown(app, "bar")
        await pilot.press("home", "left")
        assert "token 1 of 7" in shown(app, "bar")
        # A click on a token of the heat strip picks it: " day" starts after
        # " thee to a summer's" (19 cells), inside the strip's border and padding.
        await pilot.click("#stages-strip", offset=(2 + 19 + 1, 1))
        await until(pilot, lambda: "token 6 of 7" in shown(app, "bar"), WAIT)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, StageScreen), WAIT)


async def test_the_reply_being_written_fills_the_panel_from_its_events(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+l")  # the inspector on: replies ask for their stages
        app.main.query_one(PromptArea).focus()
        await pilot.press(*"Shall I", "enter")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None, WAIT)
        rid = engine.active.request_id
        engine.emit(TextDelta(rid, " thee to", (1, 2), inspect=tuple(SONNET[:2])))
        await until(pilot, lambda: app.main.gen.reply.token_ids == [1, 2], WAIT)
        await pilot.press("alt+i")
        await until(pilot, lambda: isinstance(app.screen, StageScreen), WAIT)
        assert "token 2 of 2" in shown(app, "bar") and "writing" in shown(app, "bar")
        engine.emit(TextDelta(rid, " a", (3,), inspect=tuple(SONNET[2:3])))
        await until(pilot, lambda: "token 3 of 3" in shown(app, "bar"), WAIT)
        assert "' a' 0.410" in shown(app, "table")
        engine.finish()
        await until(pilot, lambda: "writing" not in shown(app, "bar"), WAIT)
        await pilot.press("left")
        assert "token 2 of 3" in shown(app, "bar")
        await pilot.press("escape")
        # Kept with the reply: the panel opened again reads it from the store.
        await until(pilot, lambda: app.main.gen is None, WAIT)
        turn = app.store.turns(app.main.session_id)[-1]
        assert app.store.turn_inspect(turn.id) == (5, tuple(SONNET[:3]))
        await pilot.press("alt+i")
        await until(pilot, lambda: isinstance(app.screen, StageScreen), WAIT)
        assert "token 1 of 3" in shown(app, "bar") and "writing" not in shown(app, "bar")


async def test_a_reply_without_stages_says_how_to_get_them(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.query_one(PromptArea).focus()
        await pilot.press(*"Hello", "enter")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id, WAIT)
        await pilot.press("alt+i")
        await until(pilot, lambda: isinstance(app.screen, StageScreen), WAIT)
        assert "Ctrl+L" in shown(app, "table")


async def test_the_panel_is_a_key_action_in_the_palette(ui_env):
    assert any(a.id == "stages" and a.keys == "alt+i" for a in KEY_ACTIONS)
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "Stages" in {a.label for a in app.palette_actions()}


def test_stage_panel_snapshot(snap_compare, ui_env):
    store, session = stored_session()
    app = make_app(engine_factory=Engines().factory(), store=store)
    app.seed_source = lambda: 1234

    async def run_before(pilot):
        await ready(pilot)
        app.main.open_session(session.id)
        await pilot.press("alt+i")
        await until(pilot, lambda: isinstance(app.screen, StageScreen), WAIT)
        await pilot.press("right", "right", "right")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(72, 14), run_before=run_before)
