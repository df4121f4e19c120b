"""Snapshot tests of the main screens (pytest-textual-snapshot; `--snapshot-update` to refresh).

Everything on screen is pinned: a fake engine, test presets, no shipped or hub
models, a frozen clock for the speed figures, and sessions created "now".
"""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.widgets import Input
from ui_fakes import Engines, ready, until

from gptterm.protocol import Generate
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
    app.seed_source = lambda: 1234  # every reply shows its seed
    return app, engines


async def settle(pilot) -> None:
    prompt = pilot.app.main.query_one(PromptArea)
    if prompt.text:  # its token count shows a moment after typing stops
        await until(pilot, lambda: "tokens" in str(prompt.border_title))
    await pilot.pause(0.2)
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
        await until(pilot, lambda: app.main.gen.reply.text.endswith("nobler"))
        await pilot.press(*"next [line]")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_command_palette(snap_compare, ui_env):
    app, _ = pinned_app()

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        search = app.screen.query_one(Input)
        search.cursor_blink = False  # a blinking cursor makes the picture depend on timing
        search.value = "Preset:"  # one search, as if typed
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
        app.main.open_session(session.id)
        app.main.query_one(PromptArea).focus()
        await pilot.press(*"가나다라마바사아자차카타파하 " * 5)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(72, 24), run_before=run_before)


def test_token_inspector(snap_compare, ui_env):
    alternatives = [((" thee", 0.41), (" the", 0.22), (" you", 0.09), (" my", 0.05), (" a", 0.03)),
                    ((" to", 0.62), (" unto", 0.11), (" with", 0.08), (" as", 0.04), (",", 0.02)),
                    ((" a", 0.35), (" the", 0.31), (" my", 0.06), (" thy", 0.05), (" some", 0.04)),
                    ((" winter", 0.07), (" fair", 0.06), (" rose", 0.05), (" spring", 0.03),
                     (" day", 0.02)),  # a sampled token outside the top 5
                    (("'s", 0.48), (" day", 0.25), (" night", 0.12), (" morn", 0.05),
                     (" sun", 0.04)),
                    ((" day", 0.66), (" morning", 0.10), (" evening", 0.05), (" eve", 0.03),
                     (" noon", 0.02)),
                    (("?", 0.71), (",", 0.12), (".", 0.06), (";", 0.03), ("!", 0.02))]
    app, engines = pinned_app(reply=[" thee", " to", " a", " summer", "'s", " day", "?"],
                              alternatives=alternatives)

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("ctrl+l")
        app.main.query_one(PromptArea).focus()
        await pilot.press(*"Shall I compare", "enter")
        await until(pilot, lambda: app.main.gen is None and engines.one.sent_commands(Generate))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_compare_presets(snap_compare, ui_env):
    store = Store()
    session = store.create_session("sonnet")
    store.add_turn(session.id, "user", "Shall I compare thee")
    store.add_turn(session.id, "model", " to a summer's day?")
    app, _ = pinned_app(store=store, replies={
        "alpha": [" Thou", " art", " more", " lovely", " and", " more", " temperate."],
        "beta": [" Rough", " winds", " do", " shake", " the", " darling", " buds", " of", " May,"],
        "gamma": [" And", " summer's", " lease", " hath", " all", " too", " short", " a", " date."],
    })
    app.seed_source = lambda: 1234

    async def run_before(pilot):
        await ready(pilot)
        app.main.open_session(session.id)
        await pilot.press("ctrl+f", "down", "down", "space", "enter")
        await until(pilot, lambda: app.main.compare is not None
                    and all(r.state == "done" for r in app.main.compare.runs))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def two_sessions(pilot, app, engines) -> None:
    """Two finished sessions on the fake model, the second open, a prompt typed."""
    await ready(pilot)
    prompt = app.main.query_one(PromptArea)
    for text in ("The moon rose over the quiet harbour", "노래하는 새"):
        prompt.focus()
        await pilot.press("ctrl+n", *text, "enter")
        await until(pilot, lambda: app.main.gen is None and app.main.session_id)
    await pilot.press(*"and then")
    await settle(pilot)


def test_main_screen_at_60x15(snap_compare, ui_env):
    """Narrow: the sidebar steps aside, the bar keeps the model, ctx and reuse, the footer
    is not clipped."""
    app, engines = pinned_app(reply=["Far", " away", " the", " bells"])

    async def run_before(pilot):
        await two_sessions(pilot, app, engines)

    assert snap_compare(app, terminal_size=(60, 15), run_before=run_before)


def test_main_screen_at_200x50(snap_compare, ui_env):
    """Wide: sessions with their models in the sidebar, every status figure, seeds."""
    app, engines = pinned_app(reply=["Far", " away", " the", " bells"])

    async def run_before(pilot):
        await two_sessions(pilot, app, engines)

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)
