"""Snapshot tests of the main screens (pytest-textual-snapshot; `--snapshot-update` to refresh).

Everything on screen is pinned: a fake engine, test presets, no shipped or hub
models, a frozen clock for the speed figures, and sessions created "now".
"""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.widgets import Input
from ui_fakes import Engines, ready, until

from gptterm.store import Store
from gptterm.ui.app import make_app
from gptterm.ui.widgets.prompt import PromptArea

SIZE = (100, 28)
KOREAN_PROMPT = "옛날 옛적에 한 마을에"
KOREAN_REPLY = (" 작은 소녀가 살고 있었습니다. 그녀는 매일 아침 바닷가에 나가 파도 소리를 "
                "들으며 노래를 불렀습니다. 마을 사람들은 그 노래를 좋아했습니다. 中文也可以：床前明月光。")


def pinned_app(store=None, **engine_kwargs):
    engines = Engines()
    app = make_app(engine_factory=engines.factory(**engine_kwargs), store=store)
    ticks = iter([100.0, 100.25, 101.25])  # start, first token, later frames
    last = [100.0]

    def clock():
        last[0] = next(ticks, last[0])
        return last[0]

    app.clock = clock
    return app, engines


async def settle(pilot) -> None:
    await pilot.pause(0.2)
    prompt = pilot.app.main.query_one(PromptArea)
    prompt.cursor_blink = False


def test_main_screen_mid_stream(snap_compare, ui_env):
    app, engines = pinned_app(auto=False)

    async def run_before(pilot):
        await ready(pilot)
        prompt = app.main.query_one(PromptArea)
        prompt.focus()
        await pilot.press(*"To be, or not to be:")
        await pilot.press("enter")
        engine = engines.one
        await until(pilot, lambda: engine.active is not None)
        for word in [" that", " is", " the", " question", ",", " whether", " 'tis", " nobler"]:
            engine.stream(word)
        await until(pilot, lambda: app.gen.text.endswith("nobler"))
        await pilot.press(*"next [line]")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_command_palette(snap_compare, ui_env):
    app, _ = pinned_app()

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        app.screen.query_one(Input).value = "Preset:"  # one search, as if typed
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count == 3
                    and not app.screen._show_busy)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_preset_picker(snap_compare, ui_env):
    app, _ = pinned_app()

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("f3", "down")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, ui_env):
    app, _ = pinned_app()

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("f1")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(100, 36), run_before=run_before)


def test_korean_transcript_wraps_wide_characters(snap_compare, ui_env):
    store = Store()
    session = store.create_session("한국어 이야기")
    store.add_turn(session.id, "user", KOREAN_PROMPT)
    store.add_turn(session.id, "model", KOREAN_REPLY)
    app, _ = pinned_app(store=store)

    async def run_before(pilot):
        await ready(pilot)
        app.open_session(session.id)
        app.main.query_one(PromptArea).focus()
        await pilot.press(*"가나다라마바사아자차카타파하 " * 5)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(72, 24), run_before=run_before)
