"""Pilot tests of the self-contained panels (issue 11): session settings, search, export,
the turn picker and the prompt's history. Each runs in a tiny host app with gptterm's
stylesheet, pushed as the lead's main screen will push it, and checks what it dismisses
with, what it shows and what it writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Input, Label, OptionList
from ui_fakes import until

import gptterm.ui
from gptterm.presets import Preset, PresetError
from gptterm.store import Store, StoreError
from gptterm.ui.screens import export as export_mod
from gptterm.ui.screens.export import ExportScreen, slug, with_extension
from gptterm.ui.screens.search import SearchScreen
from gptterm.ui.screens.settings import SessionSettingsScreen, overrides
from gptterm.ui.screens.turns import TurnPickerScreen
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 32)
NO_RESULT = object()


class Host(App[None]):
    """Pushes `panel` on mount and keeps what it dismisses with."""

    CSS_PATH = Path(gptterm.ui.__file__).parent / "gptterm.tcss"

    def __init__(self, panel: Screen) -> None:
        super().__init__()
        self.panel = panel
        self.result: object = NO_RESULT

    def on_mount(self) -> None:
        self.push_screen(self.panel, self._done)

    def _done(self, result: object) -> None:
        self.result = result


def text_of(screen: Screen, selector: str) -> str:
    return str(screen.query_one(selector, Label).content)


def options(screen: Screen) -> list[str]:
    choices = screen.query_one(OptionList)
    return [str(choices.get_option_at_index(i).prompt) for i in range(choices.option_count)]


async def type_into(pilot, widget_id: str, text: str) -> None:
    """Replace an Input's text by typing `text`."""
    box = pilot.app.screen.query_one(f"#{widget_id}", Input)
    box.focus()
    box.value = ""
    await pilot.press(*text) if text else None


async def set_value(pilot, widget_id: str, text: str) -> None:
    """Put `text` in an Input at once (a long path typed key by key takes seconds)."""
    pilot.app.screen.query_one(f"#{widget_id}", Input).value = text
    await pilot.pause()


def closed(app: Host) -> bool:
    return app.result is not NO_RESULT


# ---------------------------------------------------------------- session settings

SAMPLE = Preset(name="beta", method="sample", temperature=0.7).values()


async def test_settings_save_only_what_differs_from_the_preset():
    panel = SessionSettingsScreen({**SAMPLE, "top_k": 40}, SAMPLE)
    app = Host(panel)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        shown = {k: screen.query_one(f"#{k}", Input).value
                 for k in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")}
        assert shown == {"max_new_tokens": "80", "temperature": "0.7", "top_k": "40",
                         "top_p": "1.0", "seed": ""}
        await type_into(pilot, "temperature", "0.5")
        await type_into(pilot, "seed", "12")
        await pilot.press("enter")
        await until(pilot, lambda: closed(app))
    # top_k keeps the session's override; the preset's own values are not repeated.
    assert app.result == {"temperature": 0.5, "top_k": 40, "seed": 12}


async def test_settings_show_a_bad_value_inline_and_stay_open():
    app = Host(SessionSettingsScreen(SAMPLE, SAMPLE))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "temperature", "hot")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not closed(app)
        assert text_of(app.screen, "#settings-error") == (
            "session settings: temperature = 'hot': expected a number")
        # A rule that joins two fields: this preset samples, so temperature must be > 0.
        await type_into(pilot, "temperature", "0")
        await pilot.press("enter")
        await pilot.pause()
        assert "temperature = 0.0: expected > 0 when sampling" in text_of(
            app.screen, "#settings-error")
        await type_into(pilot, "top_p", "1.5")
        await type_into(pilot, "temperature", "1")
        await pilot.press("enter")
        await pilot.pause()
        assert "top_p = 1.5: expected in (0, 1]" in text_of(app.screen, "#settings-error")
        await type_into(pilot, "top_p", "")  # blank: the preset's value
        await pilot.press("enter")
        await until(pilot, lambda: closed(app))
    assert app.result == {"temperature": 1.0}


@pytest.mark.parametrize(("key", "result"), [("ctrl+r", {}), ("escape", None)])
async def test_settings_reset_clears_overrides_and_escape_cancels(key, result):
    app = Host(SessionSettingsScreen({**SAMPLE, "seed": 3}, SAMPLE))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "temperature", "bad")  # never read by reset or escape
        await pilot.press(key)
        await until(pilot, lambda: closed(app))
    assert app.result == result


def test_settings_overrides_rules():
    gamma = Preset(name="gamma", method="sample", seed=7).values()
    typed = {"max_new_tokens": "", "temperature": "1", "top_k": "0", "top_p": "1",
             "seed": ""}
    # Blank seed over a preset with a fixed seed: a new seed each reply is an override.
    assert overrides(gamma, typed) == {"seed": None}
    assert overrides(gamma, {**typed, "seed": "7", "max_new_tokens": "1_000"}) == {
        "max_new_tokens": 1000}
    with pytest.raises(PresetError, match=r"max_new_tokens = 1\.5: expected an integer"):
        overrides(gamma, {**typed, "max_new_tokens": "1.5"})
    with pytest.raises(PresetError, match=r"seed = -1: expected an integer with 0 <= seed"):
        overrides(gamma, {**typed, "seed": "-1"})


# ---------------------------------------------------------------- search


class Session:
    def __init__(self, id: str, title: str) -> None:
        self.id, self.title, self.name = id, title, None


class Turn:
    def __init__(self, id: int, role: str) -> None:
        self.id, self.role = id, role


HITS = [(Session("aaaa0001", "Tale \x1b]0;PWN\x07"), Turn(11, "user"), "a [cat] sat"),
        (Session("aaaa0002", "Second"), Turn(22, "model"), "the [cat]\x1b[2J ran")]


def fake_search(asked: list[str]):
    def search(query: str):
        asked.append(query)
        if query == "bad":
            raise StoreError("sessions.db: search: malformed MATCH expression")
        return [h for h in HITS if query in h[2]]
    return search


async def test_search_follows_typing_and_enter_opens_the_chosen_hit():
    asked: list[str] = []
    app = Host(SearchScreen(fake_search(asked)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"cat")
        await until(pilot, lambda: len(options(app.screen)) == 2)
        assert asked[-1] == "cat"
        # Every part inert, on one line.
        assert options(app.screen) == ["Tale ␛]0;PWN␇ · user · a [cat] sat",
                                       "Second · model · the [cat]␛[2J ran"]
        assert text_of(app.screen, "#search-state") == "2 turns"
        await pilot.press("down", "enter")
        await until(pilot, lambda: closed(app))
    assert app.result == ("aaaa0002", 22)


async def test_search_shows_a_refused_query_as_one_line_and_recovers():
    asked: list[str] = []
    app = Host(SearchScreen(fake_search(asked)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"bad")
        await until(pilot, lambda: "malformed" in text_of(app.screen, "#search-state"))
        assert text_of(app.screen, "#search-state") == (
            "sessions.db: search: malformed MATCH expression")
        assert options(app.screen) == []
        await pilot.press("enter")  # nothing to open: stays
        await pilot.pause()
        assert not closed(app)
        await pilot.press("backspace", "backspace", "backspace", *"dog")
        await until(pilot, lambda: text_of(app.screen, "#search-state") == "No turn matches")
        await pilot.press("escape")
        await until(pilot, lambda: closed(app))
    assert app.result is None


async def test_search_a_slow_answer_to_older_text_never_replaces_a_newer_one():
    release = threading.Event()
    asked: list[str] = []
    answered: list[str] = []

    def search(query: str):
        asked.append(query)
        if query == "cat":
            release.wait(10)  # answers after the newer query did
        answered.append(query)
        return [h for h in HITS if query in h[2]]

    app = Host(SearchScreen(search))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"cat")
        await until(pilot, lambda: "cat" in asked)
        await pilot.press("backspace", "backspace", "backspace", *"sat")
        await until(pilot, lambda: options(app.screen) == [
            "Tale ␛]0;PWN␇ · user · a [cat] sat"])
        release.set()
        await until(pilot, lambda: "cat" in answered)
        await pilot.pause()  # its answer reaches the screen, which drops it
        await pilot.pause()
        assert len(options(app.screen)) == 1 and text_of(app.screen, "#search-state") == "1 turn"


async def test_search_a_real_store_and_enter_before_the_results(tmp_path):
    with Store(tmp_path / "s.db") as store:
        first = store.create_session("orchard")
        store.add_turn(first.id, "user", "an apple tree")
        other = store.create_session("other")
        store.add_turn(other.id, "user", "no fruit here")
        wanted = store.add_turn(other.id, "model", "one apple fell")
        app = Host(SearchScreen(store.search))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            # Enter at once searches now; the next Enter opens the highlighted (first) hit.
            await pilot.press(*"apple", "enter")
            await until(pilot, lambda: len(options(app.screen)) == 2)
            assert options(app.screen)[0].startswith("other · model · one [apple] fell")
            await pilot.press("enter")
            await until(pilot, lambda: closed(app))
    assert app.result == (other.id, wanted.id)


# ---------------------------------------------------------------- export


def renderer(calls: list[str]):
    def render(fmt: str) -> str:
        calls.append(fmt)
        return f"text as {fmt}\n"
    return render


async def test_export_writes_the_default_path_in_the_chosen_format(tmp_path):
    calls: list[str] = []
    app = Host(ExportScreen("Once upon: a time!", tmp_path, renderer(calls)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        path_box = app.screen.query_one("#export-path", Input)
        assert path_box.value == str(tmp_path / "once-upon-a-time.md")
        await pilot.press("down")  # Up/Down in the path box pick the format
        assert path_box.value == str(tmp_path / "once-upon-a-time.json")
        await pilot.press("down")
        assert path_box.value == str(tmp_path / "once-upon-a-time.txt")
        await pilot.press("enter")
        await until(pilot, lambda: closed(app))
    assert app.result == tmp_path / "once-upon-a-time.txt"
    assert calls == ["story"]
    assert (tmp_path / "once-upon-a-time.txt").read_text() == "text as story\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once-upon-a-time.txt"]


async def test_export_replaces_an_existing_file_only_on_a_second_enter(tmp_path):
    target = tmp_path / "tale.md"
    target.write_text("the user's notes")
    app = Host(ExportScreen("Tale", tmp_path, renderer([])))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert text_of(app.screen, "#export-state") == (
            f"{target} exists: press Enter again to replace it")
        assert target.read_text() == "the user's notes" and not closed(app)
        # Editing the path asks again.
        await pilot.press("backspace", "d")
        await pilot.press("enter")
        await pilot.pause()
        assert "exists" in text_of(app.screen, "#export-state") and not closed(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: closed(app))
    assert app.result == target and target.read_text() == "text as md\n"


async def test_export_refuses_paths_it_cannot_write_as_one_line(tmp_path, monkeypatch):
    (tmp_path / "folder.md").mkdir()
    (tmp_path / "real.md").write_text("kept")
    (tmp_path / "link.md").symlink_to(tmp_path / "real.md")
    app = Host(ExportScreen("x", tmp_path, renderer([])))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()

        async def attempt(path: str) -> str:
            await set_value(pilot, "export-path", path)
            await pilot.press("enter")
            await pilot.pause()
            assert not closed(app)
            return text_of(app.screen, "#export-state")

        missing = tmp_path / "nowhere" / "x.md"
        assert await attempt(str(missing)) == f"{missing.parent}: no such folder"
        assert await attempt(str(tmp_path / "folder.md")) == (
            f"{tmp_path / 'folder.md'}: is a folder: expected a file name")
        assert "is a link" in await attempt(str(tmp_path / "link.md"))
        assert await attempt(str(tmp_path) + "/") == f"{tmp_path}/: expected a file name"

        def denied(path: Path, text: str) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(export_mod, "replace_file", denied)
        assert await attempt(str(tmp_path / "new.md")) == (
            f"{tmp_path / 'new.md'}: cannot write: Permission denied")
        await pilot.press("escape")
        await until(pilot, lambda: closed(app))
    assert app.result is None
    assert (tmp_path / "real.md").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.md", "link.md", "real.md"]


async def test_export_a_relative_path_lands_under_the_export_folder(tmp_path):
    app = Host(ExportScreen("x", tmp_path, renderer([])))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_into(pilot, "export-path", "mine.json")
        assert text_of(app.screen, "#export-state") == f"writes {tmp_path / 'mine.json'}"
        await pilot.press("enter")
        await until(pilot, lambda: closed(app))
    assert app.result == tmp_path / "mine.json"
    assert (tmp_path / "mine.json").read_text() == "text as md\n"


async def test_export_shows_a_render_failure_and_writes_nothing(tmp_path):
    def broken(fmt: str) -> str:
        raise StoreError("no session with id 'gone'")

    app = Host(ExportScreen("x", tmp_path, broken))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert text_of(app.screen, "#export-state") == (
            "cannot export: no session with id 'gone'")
    assert list(tmp_path.iterdir()) == []


def test_slug_and_extension():
    assert slug("Once upon: a time!") == "once-upon-a-time"
    assert slug("봄날 / 春眠不覺曉") == "봄날-春眠不覺曉"
    assert slug("\x1b]0;PWN\x07 ../etc") == "0-pwn-etc"
    assert slug("...") == slug("") == "session"
    assert len(slug("word " * 50)) <= 60
    assert with_extension("/t/a.md", "json") == "/t/a.json"
    assert with_extension("/t/notes.org", "json") == "/t/notes.org"
    assert with_extension("/t/.md", "json") == "/t/.md"


# ---------------------------------------------------------------- turn picker

TURNS = [(5, "user", "\n\nOnce upon\na time"), (6, "model", "x" * 100),
         (7, "user", "\x1b[2Jhi")]


@pytest.mark.parametrize(("keys", "result"), [(("enter",), 7), (("up", "up", "enter"), 5),
                                              (("escape",), None)])
async def test_turn_picker_dismisses_with_the_turn_id(keys, result):
    app = Host(TurnPickerScreen(TURNS, "Copy a turn"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert [line.strip() for line in options(app.screen)] == [
            "user · Once upon  (18 chars)",
            "model · " + "x" * 49 + "…  (100 chars)",
            "user · ␛[2Jhi  (6 chars)"]
        await pilot.press(*keys)
        await until(pilot, lambda: closed(app))
    assert app.result == result


# ---------------------------------------------------------------- prompt history


class PromptHost(App[None]):
    def __init__(self, history) -> None:
        super().__init__()
        self.history = history
        self.sent: list[str] = []

    def compose(self) -> ComposeResult:
        yield PromptArea(history=self.history, id="prompt")

    def on_mount(self) -> None:
        self.query_one(PromptArea).focus()

    def on_prompt_area_submitted(self, message: PromptArea.Submitted) -> None:
        self.sent.append(message.text)


async def test_up_and_down_walk_the_history_from_an_empty_prompt():
    entries = ["first", "second\nline"]
    app = PromptHost(lambda: list(entries))
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(PromptArea)
        await pilot.press("up")
        assert prompt.text == "second\nline" and prompt.cursor_location == (1, 4)
        await pilot.press("up")  # within the entry: the cursor goes up first
        assert prompt.text == "second\nline" and prompt.cursor_location[0] == 0
        await pilot.press("up")
        assert prompt.text == "first"
        await pilot.press("up")  # the oldest stays
        assert prompt.text == "first"
        await pilot.press("down")
        assert prompt.text == "second\nline" and prompt.cursor_location == (0, 6)
        await pilot.press("down")  # to the entry's last line, then past the newest
        assert prompt.text == "second\nline"
        await pilot.press("down")
        assert prompt.text == ""
        await pilot.press("down")
        assert prompt.text == ""


async def test_typing_ends_browsing_and_enter_still_sends():
    app = PromptHost(lambda: ["one", "two"])
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(PromptArea)
        await pilot.press("up", "up")
        assert prompt.text == "one"
        await pilot.press("!")
        assert prompt.text == "one!" and not prompt.browsing
        await pilot.press("up", "down")  # now they only move the cursor
        assert prompt.text == "one!"
        await pilot.press("shift+enter", *"more", "enter")
        assert app.sent == ["one!\nmore"] and prompt.text == ""
        # After sending, Up starts again from the newest.
        await pilot.press("up")
        assert prompt.text == "two"


async def test_up_in_a_prompt_with_text_or_without_history_moves_the_cursor():
    app = PromptHost(None)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(PromptArea)
        await pilot.press("up")
        assert prompt.text == ""
        await pilot.press(*"ab", "ctrl+j", "c", "up")
        assert prompt.text == "ab\nc" and prompt.cursor_location[0] == 0
    asked: list[int] = []
    app = PromptHost(lambda: asked.append(1) or ["old"])
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(PromptArea)
        await pilot.press("x", "up")
        assert prompt.text == "x" and asked == []
