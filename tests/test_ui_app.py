"""Pilot tests of the TUI against a scripted fake engine: streaming, cancel, presets,
models, sessions, keys, replay."""

from __future__ import annotations

from textual.widgets._footer import FooterKey
from textual.command import CommandPalette
from textual.widgets import Input, OptionList
from ui_fakes import Engines, notifications, ready, until

from gptterm import config
from gptterm.protocol import (
    Cancel,
    Done,
    DropSession,
    Generate,
    LoadModel,
    Started,
    TextDelta,
)
from gptterm.store import Store
from gptterm.ui.app import make_app
from gptterm.ui.messages import EngineEvent
from gptterm.ui.screens.dialogs import AskScreen, ConfirmScreen, PickerScreen
from gptterm.ui.screens.help import HelpScreen
from gptterm.ui.screens.replay import ReplayScreen
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 30)


def views(app):
    return [(v.role, v.text, v.status) for v in app.main.transcript.views]


async def type_prompt(pilot, text: str) -> None:
    pilot.app.main.query_one(PromptArea).focus()
    await pilot.press(*text)
    await pilot.press("enter")


async def test_submit_streams_into_the_transcript_and_the_store(ui_env):
    engines = Engines()
    seen = []
    app = make_app(engine_factory=engines.factory(reply=["Hello", " world", "!"]))
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "Once upon")
        await until(pilot, lambda: app.main.gen is None and len(app.main.transcript.views) == 2)
        await pilot.pause(0.1)
        assert views(app) == [("user", "Once upon", "complete"),
                              ("model", "Hello world!", "complete")]
        engine = engines.one
        assert engine.sent_commands(LoadModel) == [LoadModel("fake-model")]
        (gen,) = engine.sent_commands(Generate)
        assert gen.text() == "Once upon" and gen.session_id == app.main.session_id
        assert gen.preset.name == "alpha" and gen.seed is not None
        kinds = [type(m.event) for m in seen if isinstance(m, EngineEvent)]
        assert kinds[-5:] == [Started, TextDelta, TextDelta, TextDelta, Done]
        user, model = app.store.turns(app.main.session_id)
        assert (user.role, user.text) == ("user", "Once upon")
        assert (model.role, model.text, model.status) == ("model", "Hello world!", "complete")
        assert model.seed == gen.seed and model.preset["name"] == "alpha"
        assert model.model == "fake-model" and model.token_ids == [1, 2, 3]
        assert [c[1] for c in model.chunks] == ["Hello", " world", "!"]
        assert model.stats["n_tokens"] == 3 and model.stats["reason"] == "eos"
        assert app.store.list_sessions()[0].title == "Once upon"
        status = str(app.main.status.render_info())
        # protocol.decode_rate: 2 tokens after the first in 0.5 - 0.05 s.
        assert "fake-model (cpu)" in status and "4.4 tok/s" in status and "TTFT 50 ms" in status
        assert model.stats["tokens_per_second"] == 4.44

        # The next prompt carries the whole session as context.
        await type_prompt(pilot, " Then")
        await until(pilot, lambda: len(engine.sent_commands(Generate)) == 2 and app.main.gen is None)
        assert engine.sent_commands(Generate)[1].text() == "Once uponHello world! Then"
    # Quitting closes the engine and remembers the session.
    assert engine.closed
    assert config.load_settings()[0].session == gen.session_id


async def test_escape_cancels_and_saves_what_was_written(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "Tell me")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        engine.stream("a partial")
        engine.stream(" reply")
        await until(pilot, lambda: app.main.gen is not None and app.main.gen.reply.text == "a partial reply")
        await pilot.press("escape")
        await until(pilot, lambda: app.main.gen is None)
        (gen,) = engine.sent_commands(Generate)
        assert engine.sent_commands(Cancel) == [Cancel(gen.request_id)]
        model = app.store.turns(app.main.session_id)[-1]
        assert (model.text, model.status) == ("a partial reply", "cancelled")
        assert model.stats["reason"] == "cancelled"
        assert views(app)[-1] == ("model", "a partial reply", "cancelled")
        # A late event of the cancelled request is dropped.
        engine.emit(TextDelta(gen.request_id, " late", (9,)))
        await pilot.pause(0.1)
        assert app.store.turns(app.main.session_id)[-1].text == "a partial reply"


async def test_cycling_the_preset_changes_the_next_generate(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.main.preset_name == "alpha"
        await pilot.press("f2")
        assert app.main.preset_name == "beta" and "beta" in str(app.main.status.render_info())
        await type_prompt(pilot, "x")
        await until(pilot, lambda: app.main.gen is None and engines.one.sent_commands(Generate))
        (gen,) = engines.one.sent_commands(Generate)
        assert gen.preset.name == "beta" and gen.preset.temperature == 0.7
        assert app.store.turns(app.main.session_id)[-1].preset["method"] == "sample"
        # The preset with a fixed seed sends (and stores) that seed.
        await pilot.press("f2")
        await type_prompt(pilot, "y")
        await until(pilot, lambda: len(engines.one.sent_commands(Generate)) == 2 and app.main.gen is None)
        assert engines.one.sent_commands(Generate)[1].seed == 7
        assert app.store.turns(app.main.session_id)[-1].seed == 7
    assert config.load_settings()[0].preset == "gamma"


async def test_preset_picker_and_the_palette_pick_presets(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f3")
        assert isinstance(app.screen, PickerScreen)
        choices = app.screen.query_one(OptionList)
        assert choices.highlighted == 0  # the current preset, alpha
        await pilot.press("down", "down", "enter")
        assert app.main.preset_name == "gamma"
        await pilot.press("ctrl+p")
        await pilot.press(*"Preset: beta")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.main.preset_name == "beta")


async def test_a_model_that_fails_to_load_keeps_the_old_one(ui_env):
    engines = Engines()
    reason = "distilgpt2 is not in the local cache: run `gptterm download distilgpt2`"
    app = make_app(engine_factory=engines.factory(fail_models={"distilgpt2": reason}))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        ids = [ident for ident, _, _ in picker.items]
        assert "gpt2" in ids and "distilgpt2" in ids
        picker.query_one(OptionList).highlighted = ids.index("distilgpt2")
        await pilot.press("enter")
        await until(pilot, lambda: app.loading_model is None)
        assert engines.one.sent_commands(LoadModel)[-1] == LoadModel("distilgpt2")
        assert app.model_name == "fake-model"
        assert any(reason in n and "still using fake-model" in n for n in notifications(app))
        assert "fake-model" in str(app.main.status.render_info())
        # A model that loads replaces it and is remembered.
        app.load_model("gpt2")
        await until(pilot, lambda: app.model_name == "gpt2")
    assert config.load_settings()[0].model == "gpt2"


async def test_swapping_the_model_mid_generation_cancels_it(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "go")
        await until(pilot, lambda: engines.one.active is not None)
        engines.one.stream("some")
        await until(pilot, lambda: app.main.gen is not None and app.main.gen.reply.text == "some")
        await pilot.press("f4")  # cycle model: no other model is on this machine
        assert any("No other model" in n for n in notifications(app))
        app.load_model("gpt2")
        await until(pilot, lambda: app.model_name == "gpt2")
        assert app.main.gen is None
        assert app.store.turns(app.main.session_id)[-1].status == "cancelled"


async def test_switching_sessions_mid_stream_loses_nothing(ui_env):
    store = Store()
    other = store.create_session("other")
    store.add_turn(other.id, "user", "Other text")
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "Mine")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        mine = app.main.session_id
        engine.stream("one ")
        await until(pilot, lambda: app.main.gen.reply.text == "one ")
        await pilot.press("alt+down")  # next session: the other one
        assert app.main.session_id == other.id
        assert views(app) == [("user", "Other text", "complete")]
        engine.stream("two ")
        engine.stream("three")
        await pilot.pause(0.1)
        assert views(app) == [("user", "Other text", "complete")]
        await pilot.press("alt+up")  # back: the reply is live here
        assert app.main.session_id == mine
        await until(pilot, lambda: views(app)[-1][1] == "one two three")
        engine.finish()
        await until(pilot, lambda: app.main.gen is None)
        assert views(app)[-1] == ("model", "one two three", "complete")
        turn = store.turns(mine)[-1]
        assert (turn.text, turn.status) == ("one two three", "complete")
        assert [t.text for t in store.turns(other.id)] == ["Other text"]


async def test_regenerate_continue_and_copy(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["first"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        engine = engines.one
        await type_prompt(pilot, "Begin.")
        await until(pilot, lambda: app.main.gen is None and len(views(app)) == 2)
        engine.reply = ["second"]
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.main.gen is None and views(app)[-1][1] == "second")
        assert [t.text for t in app.store.turns(app.main.session_id)] == ["Begin.", "second"]
        assert engine.sent_commands(Generate)[-1].text() == "Begin."
        engine.reply = [" third"]
        await pilot.press("ctrl+g")
        await until(pilot, lambda: app.main.gen is None and len(views(app)) == 3)
        assert engine.sent_commands(Generate)[-1].text() == "Begin.second"
        assert [t.text for t in app.store.turns(app.main.session_id)] == ["Begin.", "second", " third"]
        await pilot.press("ctrl+t")
        # The screen shows the reply and its continuation as one: both are copied.
        assert app.clipboard == "second third"


async def test_sessions_rename_delete_and_reopen(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "Keep me")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id)
        first = app.main.session_id
        await pilot.press("ctrl+n")
        assert app.main.session_id is None and views(app) == []
        await type_prompt(pilot, "Delete me")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id not in (None, first))
        second = app.main.session_id
        await pilot.press("f9")
        assert isinstance(app.screen, AskScreen)
        await pilot.press(*" renamed", "enter")
        assert app.store.find_session(second).title == "Delete me renamed"
        await pilot.press("f10")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # declined: nothing happens
        assert {s.id for s in app.store.list_sessions()} == {first, second}
        await pilot.press("f10", "y")
        await pilot.pause()
        assert [s.id for s in app.store.list_sessions()] == [first]
        assert DropSession(second) in engines.one.commands
        assert app.main.session_id is None
        # Picking a session in the sidebar opens it.
        await pilot.click("#sessions", offset=(2, 0))
        await until(pilot, lambda: app.main.session_id == first)
        assert views(app)[0] == ("user", "Keep me", "complete")
    # Reopening gptterm shows the last session and continues with its text as context.
    engines2 = Engines()
    app2 = make_app(engine_factory=engines2.factory())
    async with app2.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app2.main.session_id == first and views(app2)[0][1] == "Keep me"
        await type_prompt(pilot, " more")
        await until(pilot, lambda: app2.main.gen is None and engines2.one.sent_commands(Generate))
        assert engines2.one.sent_commands(Generate)[0].text() == "Keep meHello world more"


async def test_keys_rebind_from_config_and_help_lists_them(ui_env):
    (ui_env / "config.toml").write_text(
        'preset = "alpha"\nmodel = "fake-model"\n[keys]\nnew_session = "f12"\nbogus = "x"\n')
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert any("unknown action 'bogus'" in n for n in notifications(app))
        await type_prompt(pilot, "abc")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id)
        # The footer shows the new key in place of the default one.
        footer = {key.description: key.key for key in app.main.query(FooterKey)}
        assert footer["New"] == "f12"
        await pilot.press("f12")
        assert app.main.session_id is None
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        # The help screen names each key as config.toml [keys] does.
        rows = {name: keys for keys, name, _ in app.screen.rows}
        assert rows["new_session"] == "f12"
        assert rows["cancel"] == "escape" and rows["pick_model"] == "f5"
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_a_broken_config_is_a_notification_not_a_crash(ui_env):
    (ui_env / "config.toml").write_text("preset = [broken\n")
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine is not None)
        assert any("not valid TOML" in n for n in notifications(app))


async def test_the_screen_is_interactive_before_the_model_loads(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(answer_loads=False))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine is not None)
        await pilot.pause(0.05)
        assert app.model_name is None and "loading fake-model 25%" in str(app.main.status.render_info())
        await pilot.press(*"typing works")
        assert app.main.query_one(PromptArea).text == "typing works"
        await pilot.press("ctrl+j", *"line two")
        assert app.main.query_one(PromptArea).text == "typing works\nline two"


async def test_replay_plays_recorded_chunks_and_any_key_stops(ui_env):
    store = Store()
    session = store.create_session("replayed")
    store.add_turn(session.id, "user", "Start:")
    store.add_turn(session.id, "model", " a b c",
                   chunks=[[0.0, " a"], [0.2, " b"], [0.4, " c"]])
    engines = Engines()
    app = make_app(engine_factory=engines.factory(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.main.session_id == session.id or app.main.open_session(session.id) is None
        await pilot.press("f8")
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        await pilot.press("plus")
        assert replay.speed == 2.0
        await until(pilot, lambda: replay.finished)
        texts = [v.text for v in replay.query_one("#replay-transcript").views]
        assert texts == ["Start:", " a b c"]
        await pilot.press("x")
        assert app.screen is app.main


async def test_a_recovered_store_is_reported(ui_env, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    store = Store(bad)
    assert store.recovered_from is not None
    app = make_app(engine_factory=Engines().factory(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine is not None)
        assert any("damaged" in n for n in notifications(app))


async def test_toggle_sidebar_is_remembered(ui_env):
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+s")
        assert not app.main.query_one("#sidebar").display
    assert config.load_settings()[0].sidebar is False


async def test_long_replies_stream_in_blocks_and_replace_resets_them(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "Verse:")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        lines = [f"line {i} of a long poem about the sea\n" for i in range(400)]
        for i in range(0, 400, 20):  # 20 lines per frame
            engine.stream("".join(lines[i:i + 20]))
            await pilot.pause(0.05)
        await until(pilot, lambda: app.main.gen.reply.text == "".join(lines))
        await pilot.pause(0.1)
        view = app.main.transcript.views[-1]
        segments = list(view.query(".segment"))
        assert 2 <= len(segments) <= 4  # frozen blocks plus the live tail, not one per line
        assert view.text == "".join(lines)
        # Beam search replaces the whole reply: back to one segment, and stored so.
        engine.stream("a better hypothesis", replace=True)
        await until(pilot, lambda: app.main.transcript.views[-1].text == "a better hypothesis")
        await until(pilot, lambda: len(app.main.transcript.views[-1].query(".segment")) == 1)
        engine.finish()
        await until(pilot, lambda: app.main.gen is None)
        turn = app.store.turns(app.main.session_id)[-1]
        assert turn.text == "a better hypothesis" and turn.status == "complete"


async def test_palette_opens_sessions_themes_models_and_actions(ui_env):
    store = Store()
    old = store.create_session("An old story")
    store.add_turn(old.id, "user", "Long ago")
    engines = Engines()
    app = make_app(engine_factory=engines.factory(), store=store)

    async def palette(pilot, query: str) -> None:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        app.screen.query_one(Input).value = query  # as if typed, without a search per key
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.05)

    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await palette(pilot, "Theme: midnight")
        await until(pilot, lambda: app.theme == "midnight")
        app.main.open_session(None)
        await palette(pilot, "Session: An old story")
        await until(pilot, lambda: app.main.session_id == old.id)
        await palette(pilot, "Model: gpt2-medium")
        await until(pilot, lambda: app.model_name == "gpt2-medium")
        await palette(pilot, "New session")
        await until(pilot, lambda: app.main.session_id is None)


async def test_the_window_cap_and_cut_context_are_said_and_marked(ui_env):
    """Defects 2 and 4 of the conversation loop, seen from the TUI."""
    engines = Engines()
    window = dict(window_start=340, dropped_tokens=340, max_new_tokens=64,
                  requested_max_new_tokens=300, n_ctx=128)
    app = make_app(engine_factory=engines.factory(window=window))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await type_prompt(pilot, "A very long pasted letter")
        await until(pilot, lambda: app.main.gen is None and len(views(app)) == 2)
        said = notifications(app)
        assert any("max_new_tokens 300 is more than half" in n and "using 64" in n for n in said)
        assert any("the oldest 340 tokens are left out" in n for n in said)
        assert "✂340" in str(app.main.status.render_info())  # ctx carries the marker
        model = app.store.turns(app.main.session_id)[-1]
        assert (model.stats["window_start"], model.stats["max_new_tokens"]) == (340, 64)
        assert model.preset["max_new_tokens"] == 64  # what a re-run uses


async def test_notifications_are_plain_inert_text(ui_env):
    """A title or an engine error is never read as markup nor sent raw to the terminal."""
    engines = Engines()
    app = make_app(engine_factory=engines.factory(fail_models={
        "bad": "cannot load [link=http://x]weights[/link] \x1b]52;c;eA==\x07"}))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.load_model("bad")
        await until(pilot, lambda: any("weights" in n for n in notifications(app)))
        (said,) = [n for n in notifications(app) if "weights" in n]
        assert "[link=http://x]weights[/link]" in said and "\x1b" not in said and "␛" in said
