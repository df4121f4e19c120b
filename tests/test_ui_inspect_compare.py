"""Pilot tests of the token inspector (Ctrl+L) and compare presets (Ctrl+F), on the fake engine."""

from __future__ import annotations

from textual.widgets import SelectionList
from ui_fakes import Engines, notifications, ready, until

from gptterm.protocol import Cancel, Done, DropSession, Generate, TextDelta
from gptterm.store import Store
from gptterm.ui.app import make_app
from gptterm.ui.screens.main import INSPECT_TOP_K
from gptterm.ui.screens.compare import CompareScreen
from gptterm.ui.screens.dialogs import ChooseManyScreen
from gptterm.ui.screens.help import HelpScreen
from gptterm.ui.widgets.inspector import InspectedToken, render_row, split_tokens
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 30)
THEE = ((" thee", 0.41), (" the", 0.22), (" you", 0.09))


async def type_prompt(pilot, text: str) -> None:
    pilot.app.main.query_one(PromptArea).focus()
    await pilot.press(*text)
    await pilot.press("enter")


def shown(app) -> str:
    return str(app.main.inspector.render())


# ---------------------------------------------------------------- token inspector

def test_rows_show_the_chosen_token_among_its_candidates():
    row = render_row(InspectedToken(" thee", THEE))
    assert str(row) == "' thee' 0.41 │ ' the' 0.22 │ ' you' 0.09"
    # A sampled token outside the top candidates comes first, bounded by the least shown.
    assert str(render_row(InspectedToken(" art", THEE))).startswith("' art' ≤0.09 │ ' thee'")
    assert str(render_row(InspectedToken("\n", (("\n", 0.5),)))) == "'\\n' 0.50"


def test_several_tokens_in_one_delta_are_split_by_their_candidates():
    alts = [((" my", 0.5), (" m", 0.1)), ((" lord", 0.3),)]
    assert split_tokens(" my lord", 2, alts) == [" my", " lord"]
    assert split_tokens("é", 2, [(("\ufffd", 0.9),), (("\ufffd", 0.8),)]) == [None, "é"]
    assert split_tokens(" x", 1, [()]) == [" x"]


async def test_the_inspector_asks_for_alternatives_only_while_shown(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        engine = engines.one
        assert not app.main.inspector.display
        await type_prompt(pilot, "a")
        await until(pilot, lambda: engine.active is not None)
        engine.finish()
        await until(pilot, lambda: app.main.gen is None)

        await pilot.press("ctrl+l")
        assert app.main.inspector.display and app.main.inspecting
        assert "top 5 candidates" in shown(app)
        await type_prompt(pilot, "Shall I")
        await until(pilot, lambda: engine.active is not None)
        engine.stream(" thee", alternatives=(THEE,))
        engine.emit(TextDelta(engine.active.request_id, " my lord", (7, 8),
                              (((" my", 0.5), (" a", 0.2)), ((" lord", 0.3), (" lady", 0.2)))))
        await until(pilot, lambda: "' lord' 0.30" in shown(app))
        assert shown(app).splitlines() == ["' thee' 0.41 │ ' the' 0.22 │ ' you' 0.09",
                                           "' my' 0.50 │ ' a' 0.20",
                                           "' lord' 0.30 │ ' lady' 0.20"]
        engine.finish()
        await until(pilot, lambda: app.main.gen is None)

        await pilot.press("ctrl+l")
        assert not app.main.inspector.display
        await type_prompt(pilot, "b")
        await until(pilot, lambda: len(engine.sent_commands(Generate)) == 3)
        engine.finish()
        assert [g.inspect_top_k for g in engine.sent_commands(Generate)] == [0, INSPECT_TOP_K, 0]


async def test_the_inspector_keeps_the_last_tokens_and_says_when_a_method_has_none(ui_env):
    (ui_env / "presets" / "delta.toml").write_text('method = "beam"\nnum_beams = 2\n')
    alternatives = [((f" w{i}", 0.5), (" x", 0.25)) for i in range(20)]
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=[f" w{i}" for i in range(20)],
                                                  alternatives=alternatives))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+l")
        await type_prompt(pilot, "count")
        await until(pilot, lambda: app.main.gen is None and "' w19'" in shown(app))
        lines = shown(app).splitlines()
        assert len(lines) == 12 and lines[0].startswith("' w8' 0.50")
        assert engines.one.sent_commands(Generate)[-1].inspect_top_k == INSPECT_TOP_K
        app.main.set_preset("delta")
        await type_prompt(pilot, " more")
        await until(pilot, lambda: len(engines.one.sent_commands(Generate)) == 2
                    and app.main.gen is None)
        assert shown(app) == "no alternatives for this method (beam)"


async def test_inspector_and_compare_are_in_help_and_rebindable(ui_env):
    (ui_env / "config.toml").write_text('preset = "alpha"\nmodel = "fake-model"\n'
                                        '[keys]\ntoggle_inspector = "f12"\n')
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f12")
        assert app.main.inspecting
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = {what.split(":")[0]: keys for keys, _, what in app.screen.rows}
        assert rows["Inspector"] == "f12" and rows["Compare"] == "ctrl+f"
        labels = {a.label for a in app.palette_actions()}
        assert {"Inspector", "Compare"} <= labels


# ---------------------------------------------------------------- compare presets

def story(store: Store) -> str:
    session = store.create_session("story")
    store.add_turn(session.id, "user", "Once upon")
    store.add_turn(session.id, "model", " a time")
    store.add_turn(session.id, "user", " Then")
    store.add_turn(session.id, "model", " nothing")
    return session.id


def column_texts(screen: CompareScreen) -> list[str]:
    return [str(s.render()) for s in screen.query(".compare-text")]


async def test_compare_runs_each_preset_with_one_seed_and_drops_its_sessions(ui_env):
    store = Store()
    sid = story(store)
    engines = Engines()
    app = make_app(engine_factory=engines.factory(
        replies={"alpha": [" A1", " A2"], "beta": [" B1"]}), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.open_session(sid)
        await pilot.press("ctrl+f")
        picker = app.screen
        assert isinstance(picker, ChooseManyScreen)
        # Default: the current preset, and (no greedy or top-p here) the next one.
        assert picker.query_one(SelectionList).selected == ["alpha", "beta"]
        await pilot.press("enter")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await until(pilot, lambda: all(r.state == "done" for r in compare.runs))
        await pilot.pause(0.1)
        gens = engines.one.sent_commands(Generate)
        assert [g.preset.name for g in gens] == ["alpha", "beta"]
        # The last user prompt with the context before it; one seed, one budget, no reply stored.
        assert {g.text() for g in gens} == {"Once upon a time Then"}
        assert len({g.seed for g in gens}) == 1 and gens[0].seed is not None
        assert {g.max_new_tokens for g in gens} == {20}  # the current preset's (alpha)
        assert [g.session_id for g in gens] == [f"compare:{sid}:alpha", f"compare:{sid}:beta"]
        assert column_texts(compare) == [" A1 A2", " B1"]
        stats = [str(s.render()) for s in compare.query(".compare-stats")]
        assert stats == ["2 tok · 2.2 tok/s · eos", "1 tok · eos"]  # protocol.decode_rate
        assert "1-3 keeps that column" in str(compare.query_one("#compare-subtitle").render())
        assert len(store.turns(sid)) == 4 and app.main.gen is None
        await pilot.press("escape")
        assert app.screen is app.main and app.main.compare is None
        drops = engines.one.sent_commands(DropSession)
        assert drops == [DropSession(f"compare:{sid}:alpha"), DropSession(f"compare:{sid}:beta")]
        assert not engines.one.sent_commands(Cancel)


async def test_compare_uses_the_prompt_box_and_asks_for_two_or_three(ui_env):
    store = Store()
    sid = story(store)
    engines = Engines()
    app = make_app(engine_factory=engines.factory(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.open_session(sid)
        await pilot.press(*" And")
        await pilot.press("ctrl+f")
        picker = app.screen
        await pilot.press("space")  # alpha off: one left is too few
        await pilot.press("enter")
        assert app.screen is picker and "Pick 2 to 3 (now 1)" in str(
            picker.query_one("#hint").render())
        await pilot.press("down", "down", "space", "up", "up", "space", "enter")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await until(pilot, lambda: all(r.state == "done" for r in compare.runs))
        gens = engines.one.sent_commands(Generate)
        assert [g.preset.name for g in gens] == ["alpha", "beta", "gamma"]
        # gamma's own seed (7) gives way to the shared one.
        assert {g.text() for g in gens} == {"Once upon a time Then nothing And"}
        assert len({g.seed for g in gens}) == 1
        assert app.main.query_one(PromptArea).text == " And"  # kept for sending later


async def test_escape_stops_the_running_preset_and_closes(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press(*"Fresh start")  # a new session: the prompt box alone
        await pilot.press("ctrl+f", "enter")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        engine.stream("half")
        await until(pilot, lambda: column_texts(compare)[0] == "half")
        assert column_texts(compare)[1] == ""
        first = engine.active
        assert (first.text(), first.session_id) == ("Fresh start", "compare:new:alpha")
        await pilot.press("escape")
        assert app.screen is app.main
        assert engine.sent_commands(Cancel) == [Cancel(first.request_id)]
        assert engine.sent_commands(DropSession) == [DropSession("compare:new:alpha")]
        assert len(engine.sent_commands(Generate)) == 1  # beta never started
        engine.emit(Done(first.request_id, "cancelled", 1, 0.1, 0.05))  # late: ignored
        await pilot.pause(0.1)
        assert app.main.session_id is None and app.store.list_sessions() == []



async def test_comparing_stops_a_reply_in_progress_first(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+f")
        assert app.screen is app.main  # nothing to compare yet
        assert any("Write a prompt" in n for n in notifications(app))
        await type_prompt(pilot, "Go on")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        engine.stream("so far")
        main_request = engine.active.request_id
        await pilot.press("ctrl+f", "enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert engine.sent_commands(Cancel)[0] == Cancel(main_request)
        assert app.main.gen is None and app.store.turns(app.main.session_id)[-1].status == "cancelled"
        assert engine.active.text() == "Go on"  # the last user prompt, not the cut reply


# ---------------------------------------------------------------- with the real engine

async def test_the_real_engine_fills_the_inspector_and_runs_a_comparison(ui_env, tiny_model_dir):
    from gptterm.ui.app import default_engine_factory

    seen: list[Generate] = []

    def factory(emit):
        engine = default_engine_factory(emit)
        submit = engine.submit
        engine.submit = lambda command: (seen.append(command), submit(command))[1]
        return engine

    app = make_app(str(tiny_model_dir), "alpha", engine_factory=factory)  # alpha: greedy
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.model_name is not None, timeout=60)
        await pilot.press("ctrl+l")
        await type_prompt(pilot, "hello world")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id, timeout=30)
        await pilot.pause(0.1)
        rows = list(app.main.inspector.rows)
        assert rows and all(len(r.alternatives) == INSPECT_TOP_K for r in rows)
        # Greedy picks the most likely token: the first candidate of every row.
        assert all(r.chosen in (None, r.alternatives[0][0]) for r in rows)
        assert all(r.alternatives[0][1] >= r.alternatives[-1][1] for r in rows)

        await pilot.press("ctrl+f", "enter")  # alpha and beta
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await until(pilot, lambda: all(r.state == "done" for r in compare.runs), timeout=30)
        await pilot.pause(0.1)
        assert all(r.reply.n_tokens > 0 and r.text for r in compare.runs)
        await pilot.press("escape")
        gens = [c for c in seen if isinstance(c, Generate)]
        assert [g.session_id.split(":")[-1] for g in gens[1:]] == ["alpha", "beta"]
        assert [c for c in seen if isinstance(c, DropSession)] == [
            DropSession(g.session_id) for g in gens[1:]]


async def test_a_kept_column_becomes_a_version_of_the_reply(ui_env):
    store = Store()
    sid = story(store)
    engines = Engines()
    app = make_app(engine_factory=engines.factory(
        replies={"alpha": [" A1", " A2"], "beta": [" B1"]}), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.open_session(sid)
        old_reply = store.turns(sid)[-1]
        await pilot.press("ctrl+f", "enter")
        compare = app.screen
        await until(pilot, lambda: all(r.state == "done" for r in compare.runs))
        await pilot.press("2")
        await until(pilot, lambda: app.screen is app.main)
        versions = store.alternatives(old_reply.id)
        assert [t.text for t in versions] == [old_reply.text, " B1"]
        kept = store.turns(sid)[-1]
        assert kept.text == " B1" and kept.preset["name"] == "beta"
        assert kept.seed == engines.one.sent_commands(Generate)[-1].seed
        assert app.main.transcript.views[-1].text == " B1"
