"""The live beam view (Alt+B): every hypothesis of a beam search reply with its score, the
best highlighted, finished ones marked; on the fake engine, the real one, and a snapshot."""

from __future__ import annotations

from test_ui_snapshots import SIZE, pinned_app, settle
from ui_fakes import Engines, ready, until

from gptterm.protocol import BeamView, TextDelta
from gptterm.ui.app import make_app
from gptterm.ui.widgets.beams import BeamPanel, render_beam, tail
from gptterm.ui.widgets.prompt import PromptArea

BEAM_PRESET = ('description = "beam test preset"\nmethod = "beam"\nnum_beams = 3\n'
               'length_penalty = 0.5\nmax_new_tokens = 8\n')
STEP = (
    BeamView(" that is the question", (5, 6, 7, 8), -1.25, False),
    BeamView(" that is all", (5, 6, 9, 0), -1.5, True),
    BeamView(" that was\x1b[2J the", (5, 10, 7, 11), -2.0, False),
)


def with_beam_preset(config) -> None:
    (config / "presets" / "wide.toml").write_text(BEAM_PRESET)


async def send(pilot, text: str) -> None:
    pilot.app.main.query_one(PromptArea).focus()
    await pilot.press(*text)
    await pilot.press("enter")


def stream_beams(engine, beams: tuple[BeamView, ...]) -> None:
    """A beam search step as the engine sends it: the best hypothesis as the reply."""
    best = next(b for b in beams if not b.finished)
    engine.emit(TextDelta(engine.active.request_id, best.text, best.token_ids, replace=True,
                          beams=beams))


def lines(app) -> list[str]:
    return str(app.main.beam_panel.render()).splitlines()


def test_rows_mark_the_best_and_the_finished_and_show_the_end_of_a_long_text():
    assert str(render_beam(STEP[0], True)) == "▶     -1.250   that is the question"
    assert str(render_beam(STEP[1], False)) == "  ✓   -1.500   that is all"
    assert "\x1b" not in str(render_beam(STEP[2], False))  # inert: the escape is shown
    assert str(render_beam(STEP[0], False, width=20)) == "      -1.250  …stion"
    assert tail("가나다", 4) == "…다" and tail("abc", 3) == "abc"


async def test_beams_show_live_stay_after_the_reply_and_hide_with_alt_b(ui_env):
    with_beam_preset(ui_env)
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        engine = engines.one
        panel = app.main.query_one(BeamPanel)
        assert not panel.display
        app.main.set_preset("wide")
        await send(pilot, "To be")
        await until(pilot, lambda: engine.active is not None)
        assert panel.display and "live" in panel.border_title
        assert "length^0.5" in panel.border_title

        stream_beams(engine, STEP[:1] + STEP[2:])
        await until(pilot, lambda: len(lines(app)) == 2)
        stream_beams(engine, STEP)
        await until(pilot, lambda: len(lines(app)) == 3)
        rows = lines(app)
        assert rows[0].startswith("▶") and "question" in rows[0]
        assert rows[1].startswith("  ✓") and "that is all" in rows[1]
        assert "␛[2J" in rows[2] and not rows[2].startswith("▶")
        assert app.main.gen.reply.text == " that is the question"

        engine.finish("length")
        await until(pilot, lambda: app.main.gen is None)
        assert panel.display and "at the end" in panel.border_title and len(lines(app)) == 3

        await pilot.press("alt+b")
        assert not panel.display
        await pilot.press("alt+b")
        assert panel.display

        # Another method's reply: nothing to show, and the token inspector has its place.
        await pilot.press("ctrl+l")
        assert not app.main.inspector.display  # the beams are shown instead
        app.main.set_preset("alpha")
        await send(pilot, "Go on")
        await until(pilot, lambda: engine.active is not None)
        assert not panel.display and app.main.inspector.display


async def test_hidden_beams_come_back_with_the_next_beam_reply(ui_env):
    with_beam_preset(ui_env)
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        engine = engines.one
        panel = app.main.beam_panel
        await pilot.press("alt+b")  # hide before any beam reply: says when they will show
        await pilot.press("alt+b")
        assert any("next beam search reply" in n.message for n in app._notifications)
        await pilot.press("alt+b")
        app.main.set_preset("wide")
        await send(pilot, "To be")
        await until(pilot, lambda: engine.active is not None)
        assert not panel.display and panel.active  # hidden, still collecting
        stream_beams(engine, STEP)
        await until(pilot, lambda: panel.beams == STEP)
        await pilot.press("alt+b")
        assert panel.display
        await until(pilot, lambda: len(lines(app)) == 3)


async def test_the_real_engine_shows_the_finished_beams_of_a_reply(ui_env, tiny_model_dir):
    from gptterm.ui.app import default_engine_factory

    with_beam_preset(ui_env)
    app = make_app(str(tiny_model_dir), "wide", engine_factory=default_engine_factory)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.model_name is not None, timeout=60)
        await send(pilot, "To be, or not")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id, timeout=60)
        await pilot.pause(0.1)
        panel = app.main.beam_panel
        beams = panel.beams
        assert panel.display and len(beams) == 3 and all(b.finished for b in beams)
        assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
        turns = app.store.turns(app.main.session_id)
        assert turns[-1].text == beams[0].text  # the reply is the best beam
        assert len(lines(app)) == 3 and lines(app)[0].startswith("▶ ✓")


def test_snapshot_of_live_beams(snap_compare, ui_env):
    with_beam_preset(ui_env)
    app, engines = pinned_app(auto=False)

    async def run_before(pilot):
        await ready(pilot)
        app.main.set_preset("wide")
        await send(pilot, "To be, or not to be:")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        stream_beams(engine, STEP)
        await until(pilot, lambda: len(lines(app)) == 3)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
