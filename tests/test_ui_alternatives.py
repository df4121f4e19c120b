"""Pilot tests of writing with alternatives (issue 14): Ctrl+R keeps every version of a
reply and Alt+Left/Right flip between them, any turn can be edited, a session branched
at any turn, a pinned memory set, and the last step undone."""

from __future__ import annotations

from ui_fakes import Engines, notifications, ready, until

from gptterm.protocol import Generate
from gptterm.ui.app import make_app
from gptterm.ui.screens.edit import EditTextScreen
from gptterm.ui.screens.turns import TurnPickerScreen
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 30)


async def send(pilot, text: str) -> None:
    pilot.app.main.query_one(PromptArea).focus()
    await pilot.press(*text, "enter")
    await until(pilot, lambda: pilot.app.main.gen is None and pilot.app.main.session_id)


def last_view(app):
    return app.main.transcript.views[-1]


async def test_regenerate_keeps_versions_and_the_chosen_one_is_continued(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["first"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "Once")
        engine = engines.one
        for text in ("second", "third"):
            engine.reply = [text]
            await pilot.press("ctrl+r")
            await until(pilot, lambda t=text: app.main.gen is None and last_view(app).text == t)
        assert last_view(app).alternative == (3, 3)
        assert len(app.main.transcript.views) == 2  # the prompt and one reply on screen
        await pilot.press("alt+left")
        await until(pilot, lambda: last_view(app).text == "second")
        assert last_view(app).alternative == (2, 3)
        engine.reply = [" on"]
        await send(pilot, " and")
        # The next turn continues from the chosen version.
        assert engine.sent_commands(Generate)[-1].text() == "Oncesecond and"
        texts = [t.text for t in app.store.turns(app.main.session_id)]
        assert texts == ["Once", "second", " and", " on"]


async def test_edit_a_turn_branch_memory_and_undo(ui_env):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(reply=["a reply"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "Begin")
        session = app.main.session_id
        user, model = app.store.turns(session)
        # Edit the model's turn: the old text stays as an alternative.
        await pilot.press("alt+r")
        assert isinstance(app.screen, TurnPickerScreen)
        app.screen.dismiss(model.id)
        await until(pilot, lambda: isinstance(app.screen, EditTextScreen))
        app.screen.dismiss("a better reply")
        await until(pilot, lambda: last_view(app).text == "a better reply")
        assert [t.text for t in app.store.alternatives(model.id)] == ["a reply",
                                                                     "a better reply"]
        # Undo the edit.
        await pilot.press("alt+u")
        await until(pilot, lambda: last_view(app).text == "a reply")
        assert any(n.startswith("Undone") for n in notifications(app))
        # Pinned memory: stored, and its size shown.
        await pilot.press("alt+m")
        assert isinstance(app.screen, EditTextScreen)
        app.screen.dismiss("A quiet premise")
        await until(pilot, lambda: app.main.status.info.memory == 3)  # the fake counts words
        assert app.store.get_session(session).memory == "A quiet premise"
        assert "mem 3" in str(app.main.status.render_info())
        # Branch at the user's turn: a new session holding just it.
        await pilot.press("alt+n")
        assert isinstance(app.screen, TurnPickerScreen)
        app.screen.dismiss(user.id)
        await until(pilot, lambda: app.main.session_id not in (None, session))
        branched = app.store.get_session(app.main.session_id)
        assert [t.text for t in app.store.turns(branched.id)] == ["Begin"]
        assert branched.branched_from == session


async def test_keys_say_why_when_there_is_nothing_to_flip_or_undo(ui_env):
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for key in ("alt+left", "alt+r", "alt+n", "alt+m", "alt+u"):
            before = len(notifications(app))
            await pilot.press(key)
            await pilot.pause()
            assert len(notifications(app)) == before + 1, key
        await send(pilot, "hello")
        await pilot.press("alt+right")
        assert "no alternatives" in notifications(app)[-1]


async def test_typing_then_ctrl_s_keeps_every_key_and_the_app_answers_after(ui_env):
    """Ctrl+S in the editor is a priority key: it must wait for the keys typed before it,
    and closing the editor that way must leave the app answering keys (it once hung)."""
    from textual import events

    app = make_app(engine_factory=Engines().factory(reply=["r"]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        app.post_message(events.Key("alt+r", "r"))
        await until(pilot, lambda: isinstance(app.screen, TurnPickerScreen))
        await pilot.press("enter")  # the last turn: the reply
        await until(pilot, lambda: isinstance(app.screen, EditTextScreen))
        await pilot.press(*" typed fast", "ctrl+s")
        await until(pilot, lambda: app.screen is app.main)
        assert app.store.turns(app.main.session_id)[-1].text == "r typed fast"
        app.post_message(events.Key("alt+n", "n"))
        await until(pilot, lambda: isinstance(app.screen, TurnPickerScreen))
