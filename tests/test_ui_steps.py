"""Step mode in the app: the candidates panel, picks by number key and Enter, the versions a
pick starts, and the picture of the panel (pytest-textual-snapshot)."""

from __future__ import annotations

from ui_fakes import Engines, notifications, ready, until

from gptterm.cli import main
from gptterm.protocol import Candidates, Generate, Pick
from gptterm.store import Store
from gptterm.ui.app import make_app
from gptterm.ui.widgets.prompt import PromptArea
from gptterm.ui.widgets.steps import StepPanel, bar, render_candidates

SIZE = (100, 30)


async def type_prompt(pilot, text: str) -> None:
    pilot.app.main.query_one(PromptArea).focus()
    await pilot.press(*text)
    await pilot.press("enter")


def waiting(app, position: int) -> bool:
    panel = app.main.steps
    return panel.display and panel.candidates is not None \
        and panel.candidates.position == position


# ---------------------------------------------------------------- with the real engine


async def test_stepping_a_reply_by_hand_on_the_real_engine(ui_env, tiny_model_dir, capsys):
    from gptterm.ui.app import default_engine_factory

    sent: list = []

    def factory(emit):
        engine = default_engine_factory(emit)
        submit = engine.submit
        engine.submit = lambda command: (sent.append(command), submit(command))[1]
        return engine

    app = make_app(str(tiny_model_dir), "alpha", engine_factory=factory)  # alpha: greedy
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.model_name is not None, timeout=60)
        await pilot.press("alt+p")
        assert app.main.stepping and "Step mode on" in notifications(app)[-1]
        await type_prompt(pilot, "hello world")
        await until(pilot, lambda: waiting(app, 0), timeout=30)
        first = app.main.steps.candidates
        assert app.main.steps.has_focus and len(first.top) >= 9
        assert first.drawn == first.top[0][0]  # greedy draws the most likely token
        shown = str(app.main.steps.render())
        assert "1 " in shown and "◀ drawn" in shown and "%" in shown

        await pilot.press("2")  # not the draw: the reply so far is kept as a version
        await until(pilot, lambda: waiting(app, 1), timeout=30)
        second = app.main.steps.candidates
        await pilot.press("enter")  # the sampler's own token
        await until(pilot, lambda: waiting(app, 2), timeout=30)
        await pilot.press("escape")  # ends the step; the reply so far is kept
        await until(pilot, lambda: app.main.gen is None, timeout=30)
        assert not app.main.steps.display and app.main.prompt.has_focus
        sid = app.main.session_id

    picks = [c for c in sent if isinstance(c, Pick)]
    assert [p.token_id for p in picks] == [first.top[1][0], None]
    generate = next(c for c in sent if isinstance(c, Generate))
    assert generate.step_mode
    store = Store()
    reply = store.turns(sid)[-1]
    versions = store.alternatives(reply.id)
    assert len(versions) == 2 and reply.id == versions[-1].id
    kept, stepped = versions
    assert (kept.token_ids, kept.status, kept.stats.get("picked")) == \
        ([first.drawn], "cancelled", None)
    assert stepped.token_ids == [first.top[1][0], second.drawn]
    assert stepped.status == "cancelled" and stepped.stats["picked"] == [0]
    assert stepped.text.startswith(first.top[1][1])
    store.close()
    # Both versions re-run to the same tokens, the pick given as it was.
    assert main(["replay", sid, "--verify"]) == 0
    assert "2 of 2 model turns identical" in capsys.readouterr().out


# ---------------------------------------------------------------- with the fake engine


CANDIDATES = Candidates("?", 3, 17, (
    (11, " thee", 0.41), (12, " the", 0.22), (13, " thy", 0.11), (14, "\n", 0.07),
    (15, " a\x1b[2J", 0.05), (16, ",", 0.04), (18, " my", 0.03), (19, " our", 0.02),
    (20, " his", 0.01), (17, " sweet", 0.004)))


async def start_stepping(pilot, engines) -> Candidates:
    """Step mode on, a prompt sent, three words in, and the fourth token's candidates."""
    app = pilot.app
    await ready(pilot)
    await pilot.press("alt+p")
    await type_prompt(pilot, "Shall I compare")
    engine = engines.one
    await until(pilot, lambda: engine.active is not None)
    for word in [" thee", " to", " a"]:
        engine.stream(word)
    candidates = Candidates(engine.active.request_id, *list(CANDIDATES.__dict__.values())[1:])
    engine.emit(candidates)
    await until(pilot, lambda: waiting(app, 3))
    return candidates


def test_the_panel_numbers_the_top_nine_and_marks_the_draw():
    lines = str(render_candidates(CANDIDATES)).splitlines()
    assert len(lines) == 10 and lines[0].startswith("1 ' thee'") and "41.00%" in lines[0]
    assert lines[9].startswith("  ' sweet'") and "drawn (outside the top 9)" in lines[9]
    # A model's text is shown, never sent: the escape is spelled out.
    assert "\x1b" not in "".join(lines) and "' a\\x1b[2J'" in lines[4]
    assert bar(1.0) == "█" * 12 and bar(0.0) == "" and bar(0.5) == "█" * 6


async def test_a_pick_answers_the_engine_and_escape_cancels(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        candidates = await start_stepping(pilot, engines)
        engine = engines.one
        assert engine.active.step_mode
        await pilot.press("9")
        await until(pilot, lambda: engine.sent_commands(Pick))
        assert engine.sent_commands(Pick) == [Pick(candidates.request_id, 20)]
        # The pick starts a new version: the one with the draw is kept, cancelled.
        versions = app.store.alternatives(app.main.gen.turn_id)
        assert len(versions) == 2 and versions[0].text == " thee to a sweet"
        assert versions[0].status == "cancelled"
        await pilot.press("9")  # one answer per step
        await pilot.pause(0.1)
        assert len(engine.sent_commands(Pick)) == 1
        await pilot.press("escape")
        await until(pilot, lambda: app.main.gen is None)
        assert not app.main.steps.display


async def test_step_mode_is_refused_for_beam_search(ui_env):
    (ui_env / "presets" / "delta.toml").write_text('method = "beam"\nnum_beams = 2\n')
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.set_preset("delta")
        await pilot.press("alt+p")
        await type_prompt(pilot, "hello")
        await pilot.pause(0.1)
        assert not engines.one.sent_commands(Generate)
        assert notifications(app)[-1].startswith(
            "Step mode needs a greedy or sampling preset, not beam")
        await pilot.press("alt+p")  # off: the same prompt goes out
        await type_prompt(pilot, "hello")
        await until(pilot, lambda: engines.one.sent_commands(Generate))
        assert not engines.one.sent_commands(Generate)[0].step_mode


def test_the_step_panel_snapshot(snap_compare, ui_env):
    from test_ui_snapshots import pinned_app

    app, engines = pinned_app(auto=False)

    async def run_before(pilot):
        await start_stepping(pilot, engines)
        pilot.app.clear_notifications()  # "Step mode on" would cover the panel
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_panel_is_a_focusable_widget_of_the_main_screen():
    assert StepPanel.can_focus
