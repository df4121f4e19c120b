"""Pilot tests of what a daily user relies on (issue 11): every status figure belongs to
the session on screen, sessions keep their model, preset and settings, local models are
reachable from the picker, navigation follows the sidebar, and the small things (empty
session keys, new preset files, the footer at 60 columns, prompt history, search, export,
copying any turn, the prompt's token count)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets._footer import FooterKey
from textual.widgets._toast import Toast
from ui_fakes import Engines, notifications, ready, until

from gptterm import local_models, paths
from gptterm.protocol import CountTokens, Generate, LoadModel
from gptterm.ui.app import make_app
from gptterm.ui.screens.dialogs import AskScreen, PickerScreen
from gptterm.ui.screens.export import ExportScreen
from gptterm.ui.screens.search import SearchScreen
from gptterm.ui.screens.settings import SessionSettingsScreen
from gptterm.ui.screens.turns import TurnPickerScreen
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 30)


def status(app) -> str:
    return str(app.main.status.render_info())


def model_dir(root: Path, name: str) -> str:
    """A folder the catalog takes for a local checkpoint (the fake engine loads any name)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    return str(folder)


async def send(pilot, text: str) -> None:
    pilot.app.main.query_one(PromptArea).focus()
    await pilot.press(*text, "enter")
    await until(pilot, lambda: pilot.app.main.gen is None and pilot.app.main.session_id)


async def test_every_status_figure_is_the_open_sessions(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["a", "b", "c"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "one two three")
        first = app.main.session_id
        filled = status(app)
        assert "tok/s" in filled and "TTFT 50 ms" in filled and "ctx 6/128" in filled
        # A new session has no figures of its own.
        await pilot.press("ctrl+n")
        empty = status(app)
        assert "tok/s" not in empty and "TTFT" not in empty and "reused" not in empty
        assert "ctx 0/128" in empty
        engines.one.reply = ["x"]
        await send(pilot, "four")
        assert "ctx 2/128" in status(app)
        # Stepping back shows the first session's own figures, read from its stored reply.
        await pilot.press("alt+down")
        await until(pilot, lambda: app.main.session_id == first)
        assert "ctx 6/128" in status(app) and "TTFT 50 ms" in status(app)
    # A restored session shows what its last reply left, not ctx 0.
    app2 = make_app(engine_factory=Engines().factory())
    async with app2.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app2.main.session_id == first
        assert "ctx 6/128" in status(app2) and "reused 0" in status(app2)


async def test_a_session_keeps_its_model_and_preset_and_undo_goes_back(ui_env, tmp_path):
    english, korean = model_dir(tmp_path, "english"), model_dir(tmp_path, "korean")
    engines = Engines()
    app = make_app(english, engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "in english")
        en_session = app.main.session_id
        await pilot.press("ctrl+n")
        app.main.choose_model(korean)
        await until(pilot, lambda: app.model_name == korean)
        app.main.set_preset("beta")
        await send(pilot, "in korean")
        ko_session = app.main.session_id
        assert app.store.get_session(ko_session).model == korean
        # The sidebar names each session's model.
        sidebar = app.main.sidebar
        labels = [str(sidebar.get_option_at_index(i).prompt) for i in range(2)]
        assert any("korean" in label for label in labels)
        assert any("english" in label for label in labels)
        # Opening the English session switches back to its model and preset, and says so.
        app.main.open_session(en_session)
        await until(pilot, lambda: app.model_name == english)
        assert app.main.preset_name == "alpha"
        assert any("Switched to english" in n and "alt+z" in n for n in notifications(app))
        await send(pilot, " more")
        gen = engines.one.sent_commands(Generate)[-1]
        assert gen.session_id == en_session and gen.preset.name == "alpha"
        assert app.store.turns(en_session)[-1].model == english
        # Undo: the session goes on with the model used before the switch.
        app.main.open_session(ko_session)
        await until(pilot, lambda: app.model_name == korean)
        app.main.open_session(en_session)
        await until(pilot, lambda: app.model_name == english)
        await pilot.press("alt+z")
        await until(pilot, lambda: app.model_name == korean)
        assert app.store.get_session(en_session).model == english  # until its next reply
        await send(pilot, " on korean")
        assert app.store.get_session(en_session).model == korean
    # At the next start the open session's model loads first, unless --model says otherwise.
    engines2 = Engines()
    app2 = make_app(engine_factory=engines2.factory())
    async with app2.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert engines2.one.sent_commands(LoadModel)[0].name == korean
    engines3 = Engines()
    app3 = make_app(english, "gamma", engine_factory=engines3.factory())
    async with app3.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert [c.name for c in engines3.one.sent_commands(LoadModel)] == [english]
        assert app3.main.preset_name == "gamma"


async def test_a_session_whose_model_is_gone_stays_on_the_current_one(ui_env, tmp_path):
    gone = model_dir(tmp_path, "gone")
    engines = Engines()
    app = make_app(gone, engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        session = app.main.session_id
        (Path(gone) / "config.json").unlink()
        await pilot.press("ctrl+n")
        app.main.choose_model("fake-model")
        await until(pilot, lambda: app.model_name == "fake-model")
        app.main.open_session(session)
        await pilot.pause()
        assert app.model_name == "fake-model" and app.loading_model is None
        assert any("not on this machine" in n for n in notifications(app))


async def test_the_model_picker_lists_trained_folders_and_takes_a_path(ui_env, tmp_path):
    trained = model_dir(tmp_path, "my-poems")
    local_models.remember(trained, how="trained")
    typed = model_dir(tmp_path, "typed")
    with open(ui_env / "config.toml", "a") as conf:
        conf.write('[backends.box]\nurl = "http://127.0.0.1:9"\nflavor = "llama.cpp"\n')
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        ids = [ident for ident, _, _ in picker.items]
        assert str(Path(trained).resolve()) in ids and picker.current == "fake-model"
        assert "remote:box" in ids  # the servers of config.toml [backends]
        assert "fake-model" in ids  # the one in use is listed (and marked) too
        # The last row asks for a folder.
        await pilot.press("end", "enter")
        assert isinstance(app.screen, AskScreen)
        await pilot.press(*str(tmp_path / "nowhere"), "enter")
        await pilot.pause()
        assert any("no such folder" in n for n in notifications(app))
        await pilot.press("f5", "end", "enter", *typed, "enter")
        await until(pilot, lambda: app.model_name == typed)
        # A server URL is passed on as it is (the server says whether it answers).
        await pilot.press("f5", "end", "enter", *"http://127.0.0.1:9/", "enter")
        await until(pilot, lambda: app.model_name == "http://127.0.0.1:9/")
        # A folder loaded once is offered from then on; a server is not a folder.
        remembered = [r.path for r in local_models.remembered()]
        assert typed in remembered and not any("127.0.0.1" in p for p in remembered)
        await pilot.press("f5")
        assert typed in [ident for ident, _, _ in app.screen.items]


async def test_alt_up_down_follow_the_sidebar_order(ui_env):
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        made = []
        for text in ("first", "second", "third"):
            await pilot.press("ctrl+n")
            await send(pilot, text)
            made.append(app.main.session_id)
        shown = list(app.main.sidebar.order)
        assert shown == made[::-1]
        # Writing in the bottom session does not move it.
        app.main.open_session(made[0])
        await send(pilot, " again")
        assert app.main.sidebar.order == shown
        await pilot.press("alt+up")
        assert app.main.session_id == made[1]
        await pilot.press("alt+up")
        assert app.main.session_id == made[2]
        await pilot.press("alt+down", "alt+down")
        assert app.main.session_id == made[0]


async def test_keys_in_an_empty_session_say_why_they_do_nothing(ui_env):
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for key in ("ctrl+r", "ctrl+g", "ctrl+t", "f8", "alt+e"):
            before = len(notifications(app))
            await pilot.press(key)
            await pilot.pause()
            assert len(notifications(app)) == before + 1, key


async def test_a_preset_file_added_while_running_is_offered(ui_env):
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        (paths.config_dir() / "presets" / "delta.toml").write_text(
            'description = "added later"\nmethod = "greedy"\n')
        await pilot.press("f3")
        assert "delta" in [ident for ident, _, _ in app.screen.items]


async def test_at_60x15_the_transcript_keeps_the_room_and_the_bar_keeps_ctx(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["a", "b"]))
    async with app.run_test(size=(60, 15)) as pilot:
        await ready(pilot)
        await send(pilot, "some words here")
        assert not app.main.query_one("#sidebar").display
        text = status(app)
        assert "ctx 5/128" in text and "reused 0" in text and "fake-model" in text
        keys = [k for k in app.main.query(FooterKey) if k.display]
        palette = next(k for k in keys if "command_palette" in k.action)
        shown = [k for k in keys if k is not palette]
        assert {k.description for k in shown} >= {"Help", "New", "Model"}
        assert max(k.region.right for k in shown) <= palette.region.x  # nothing clipped
        # Ctrl+S still shows the sidebar when asked.
        await pilot.press("ctrl+s")
        assert app.main.query_one("#sidebar").display


async def test_toasts_leave_the_status_bar_and_footer_visible(ui_env):
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await ready(pilot)
        app.notify("hello there")
        await pilot.pause(0.2)
        await until(pilot, lambda: app.screen.query(Toast))
        (toast,) = app.screen.query(Toast)
        assert 0 < toast.region.bottom <= app.main.status.region.y


async def test_session_settings_apply_to_the_next_reply_and_are_remembered(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, SessionSettingsScreen)
        app.screen.dismiss({"max_new_tokens": 7, "seed": 42})
        await pilot.pause()
        await send(pilot, " again")
        gen = engines.one.sent_commands(Generate)[-1]
        assert gen.preset.max_new_tokens == 7 and gen.seed == 42 and gen.preset.name == "alpha"
        assert "seed 42" in status(app)
        assert app.main.transcript.views[-1].seed == 42
        assert app.store.get_session(app.main.session_id).sampling == {"max_new_tokens": 7,
                                                                         "seed": 42}


async def test_prompt_history_search_export_and_copy_a_turn(ui_env, tmp_path, monkeypatch):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["reply"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "a walrus")
        await pilot.press("ctrl+n")
        await send(pilot, "a penguin")
        penguin = app.main.session_id
        # Up in the empty prompt: this session's prompt, then the other session's.
        await pilot.press("up")
        assert app.main.prompt.text == "a penguin"
        await pilot.press("up")
        assert app.main.prompt.text == "a walrus"
        await pilot.press("down", "down")
        assert app.main.prompt.text == ""
        # Search finds the other session's turn and opens it there.
        await pilot.press("alt+s")
        assert isinstance(app.screen, SearchScreen)
        walrus_session = app.store.search("walrus")[0][0].id
        walrus_turn = app.store.search("walrus")[0][1].id
        app.screen.dismiss((walrus_session, walrus_turn))
        await until(pilot, lambda: app.main.session_id == walrus_session)
        found = [v for v in app.main.transcript.views if v.has_class("-found")]
        assert [v.turn_id for v in found] == [walrus_turn]
        # Copy any turn.
        await pilot.press("alt+c")
        assert isinstance(app.screen, TurnPickerScreen)
        app.screen.dismiss(walrus_turn)
        await pilot.pause()
        assert app.clipboard == "a walrus"
        # Export: each format's text is the session's.
        monkeypatch.chdir(tmp_path)
        await pilot.press("alt+e")
        assert isinstance(app.screen, ExportScreen)
        assert app.main.export_text("story") == "a walrusreply"  # exactly what the model saw
        assert "walrus" in app.main.export_text("md")
        assert '"a walrus"' in app.main.export_text("json")
        assert app.main.session_id != penguin


async def test_the_prompt_box_counts_its_tokens_and_the_room_left(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["a", "b"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "one two three")  # ctx 5/128 after the reply
        await pilot.press(*"four five")
        await until(pilot, lambda: "tokens" in str(app.main.prompt.border_title), timeout=5)
        (count,) = engines.one.sent_commands(CountTokens)[-1:]
        assert count.text == "\nfour five"  # as it will be sent: with its separator
        subtitle = str(app.main.prompt.border_title)
        assert subtitle.startswith("2 tokens")  # the fake counts words
        assert f"{128 - 5 - 2} left" in subtitle


async def test_alt_keys_from_a_real_terminal_run_their_action_and_type_nothing(ui_env):
    """A terminal sends Alt+C as the character "c" with the alt flag (a pilot's press does
    not): the prompt must not take the "c", the binding must run."""
    from textual import events

    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        app.main.prompt.focus()
        app.post_message(events.Key("alt+c", "c"))
        await until(pilot, lambda: isinstance(app.screen, TurnPickerScreen))
        assert app.main.prompt.text == ""


async def test_the_cut_marker_follows_a_window_that_slid_during_the_reply(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.prompt.focus()
        await pilot.press(*"long", "enter")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        engine.stream("text")
        engine.window["window_start"] = 40  # the window slid while the reply was written
        engine.finish("length")
        await until(pilot, lambda: app.main.gen is None)
        assert "✂40" in status(app)


async def test_picking_a_model_before_a_new_session_leaves_the_old_one_as_it_was(ui_env, tmp_path):
    english, korean = model_dir(tmp_path, "english"), model_dir(tmp_path, "korean")
    app = make_app(english, engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "in english")
        old = app.main.session_id
        app.main.choose_model(korean)  # then Ctrl+N: the usual order of a writer's hands
        await until(pilot, lambda: app.model_name == korean)
        await pilot.press("ctrl+n")
        await send(pilot, "in korean")
        assert app.store.get_session(old).model == english
        app.main.open_session(old)
        await until(pilot, lambda: app.model_name == english)
