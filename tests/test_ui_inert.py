"""Untrusted text reaches the terminal inert (issue 10, item 6, TUI side).

Session titles and names (imported or renamed), stored turn text and a model's streamed
output may hold escape sequences. Textual drops only BEL, BS, VT, FF and CR: ESC, the C1
controls and bidi overrides went to the terminal as they were, so a title could set the
window title, write the clipboard (OSC 52) or clear the screen. The first test runs the
real app in a pseudo-terminal and reads the bytes a terminal would get.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from textual.widgets import Static
from ui_fakes import Engines, ready, until

from gptterm import config
from gptterm.store import Store
from gptterm.textsafe import inert, is_inert
from gptterm.ui.app import make_app
from gptterm.ui.screens.replay import ReplayScreen
from gptterm.ui.widgets.sessions import SessionList
from gptterm.ui.widgets.transcript import SEGMENT_CHARS, TurnView

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from ui_latency import Terminal, app_env  # the bench's pty driver

SIZE = (100, 30)
# One attack a line, each ending in a word that shows whether it reached the screen.
ATTACKS = ["\x1b]0;PWNTITLE\x07", "\x1b]52;c;UFdOCg==\x07CLIP", "\x1b[2J\x1b[HFORGED",
           "\x9b2JCSIC1", "\x9d0;OSCC1\x9c", "\u202eRTL", "\x1b]8;;http://x\x1b\\LINK"]
HOSTILE = "\n".join(ATTACKS)
SHORT = "\x1b]0;PWN\x07T"  # a title that fits the sidebar's line


def hostile_store(path: Path) -> tuple[str, str]:
    """A session imported with hostile id, title and turns, one renamed to a hostile title,
    and one known only by a hostile name. Returns (imported id, renamed id)."""
    with Store(path) as store:
        imported = store.import_json({
            "format": "gptterm-session", "version": 1,
            "session": {"id": "evil\x1b]0;ID\x07", "title": SHORT, "name": "n\x1b[2J"},
            "turns": [{"role": "user", "text": "U\n" + HOSTILE},
                      {"role": "model", "text": "M\n" + HOSTILE, "model": "m\x1b]0;X\x07"}]})
        renamed = store.create_session("plain")
        store.rename_session(renamed.id, "R" + SHORT)
        store.import_json({"format": "gptterm-session", "version": 1,
                           "session": {"id": "named", "name": "N" + SHORT}})
    return imported.id, renamed.id


def own_sequences_removed(output: bytes) -> bytes:
    """The output less Textual's own escape sequences: every CSI, and OSC 22 (pointer shape)."""
    output = re.sub(rb"\x1b\[[0-?]*[ -/]*[@-~]", b"", output)
    return re.sub(rb"\x1b\]22;[^\x07\x1b]*(\x07|\x1b\\)", b"", output)


def test_hostile_sessions_and_replies_reach_the_terminal_inert(tmp_path):
    env = app_env(tmp_path)
    imported, _ = hostile_store(Path(env["GPTTERM_DATA_DIR"]) / "sessions.db")
    config.save_settings(config.Settings(session=imported, model="fake-model"),
                         Path(env["GPTTERM_CONFIG_DIR"]) / config.CONFIG_NAME)
    child = ("import sys; sys.path.insert(0, 'tests')\n"
             "from ui_fakes import FakeEngine\nfrom gptterm.ui.app import make_app\n"
             f"reply = ['S\\n', *({HOSTILE!r} + '\\nEND').splitlines(keepends=True)]\n"
             "make_app(model='fake-model', engine_factory=lambda emit: FakeEngine(emit, "
             "reply=reply)).run()\n")
    term = Terminal([sys.executable, "-c", child], env)
    try:
        term.wait_for("\u25cf ".encode(), timeout=60)  # "● fake-model": the engine is up
        term.send(b"go\r")
        term.wait_for(b"END", timeout=60)
        term.drain(0.5)
    finally:
        term.close()
    out = bytes(term.output)
    # Nothing a terminal would act on came from the data.
    assert b"\x1b" not in own_sequences_removed(out)
    assert re.findall(rb"\x1b\](\d*)", out) == [b"22"]  # no OSC but Textual's pointer shape
    assert not re.search(rb"\xc2[\x80-\x9f]", out)  # no C1 control (UTF-8 encoded)
    assert "\u202e".encode() not in out
    # Every hostile string was on screen, made visible: sidebar, stored turns, stream.
    for shown in (inert(SHORT), "R" + inert(SHORT), "N" + inert(SHORT),
                  *(inert(a) for a in ATTACKS)):
        assert shown.encode() in out, shown
    for attack in ATTACKS:
        assert attack.replace("\x07", "").encode() not in out  # (Textual drops BEL itself)


def segments_text(view: TurnView) -> str:
    return "".join(str(s.content) for s in view.query(Static))


async def test_sidebar_transcript_stream_and_replay_show_inert_text(ui_env):
    imported, _ = hostile_store(Path(ui_env).parent / "data" / "sessions.db")
    engines = Engines()
    app = make_app(engine_factory=engines.factory(auto=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.main.open_session(imported)
        await pilot.pause()
        sidebar = app.main.query_one(SessionList)
        labels = [str(sidebar.get_option_at_index(i).prompt)
                  for i in range(sidebar.option_count)]
        assert any(inert(SHORT) in label for label in labels)
        assert all(is_inert(label.replace("\n", " "), single_line=True) for label in labels)

        user, model = app.main.transcript.views
        assert user.text == "U\n" + HOSTILE  # the turn keeps its text; only the screen differs
        assert segments_text(user) == inert(user.text)
        assert segments_text(model).startswith(inert(model.text))

        # A streamed reply long enough to freeze blocks: every block is inert.
        await pilot.press(*"go", "enter")
        await until(pilot, lambda: app.main.gen is not None and app.main.gen.view is not None)
        reply = app.main.gen.view
        await until(pilot, lambda: reply._live.is_attached)
        pieces = ["A\x1b[31m" * (SEGMENT_CHARS // 3), "\nB\x9d0;T\x9c", "\n" + HOSTILE]
        for piece in pieces:
            engines.one.stream(piece)
            await until(pilot, lambda piece=piece: reply.text.endswith(piece))
        engines.one.finish()
        await until(pilot, lambda: app.main.gen is None)
        assert reply.text == "".join(pieces)
        assert len(reply.query(Static)) > 1
        assert segments_text(reply) == inert(reply.text) + f"  seed {reply.seed}"

        app.push_screen(ReplayScreen("R" + SHORT, app.store.turns(imported)))

        def replay_bar() -> str:
            found = app.screen.query("#replay-bar")
            return str(found.first(Static).content) if found else ""

        await until(pilot, lambda: "replay" in replay_bar())
        assert "R" + inert(SHORT) in replay_bar() and is_inert(replay_bar(), single_line=True)
