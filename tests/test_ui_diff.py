"""The checkpoint diff view: opened by its key and from the palette, it runs `gptterm diff
--json` as a child process (no torch in the UI), shows both perplexities and the tables,
a failure as its one line, and Esc kills a running diff."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from diff_models import build_pair
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input, Select, Static
from ui_fakes import Engines, ready, until

from gptterm import cli, local_models
from gptterm.ui.app import make_app
from gptterm.ui.screens.diff import DiffScreen, tail

SIZE = (100, 28)
RESULT = {  # as `gptterm diff --json` gives it
    "perplexity_a": 412.3456, "perplexity_b": 77.6912, "model_a": "fake-model",
    "model_b": "gpt2", "file": "poems.txt", "tokens": 512,
    "gains": [{"context": "The quick brown fox jumps over the lazy", "token": " dog",
               "delta": 2.0761, "position": 20},
              {"context": "To be, or not to be, that is the", "token": " question",
               "delta": 1.5032, "position": 12},
              {"context": "안녕하세요. 오늘은", "token": " 날씨", "delta": 0.8123, "position": 40}],
    "losses": [{"context": "床前明月光，疑是地上霜。\n", "token": "举", "delta": -0.5551,
                "position": 77},
               {"context": "the sea and the\x1b]0;x\x07", "token": " sky", "delta": -0.1234,
                "position": 60}],
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_pair(tmp_path_factory.mktemp("uidiff"))


def app_with_models(*folders):
    """An app on the fake engine whose model picker also lists `folders`."""
    for folder in folders:
        local_models.remember(folder, how="trained")
    engines = Engines()
    return make_app(engine_factory=engines.factory())


async def open_diff(pilot) -> DiffScreen:
    await ready(pilot)
    await pilot.press("alt+d")
    await until(pilot, lambda: isinstance(pilot.app.screen, DiffScreen))
    return pilot.app.screen


def status(screen: DiffScreen) -> str:
    return str(screen.query_one("#diff-status", Static).render())


def cells(screen: DiffScreen, table: str) -> list[list[str]]:
    grid = screen.query_one(f"#diff-{table}", DataTable)
    return [[str(cell) for cell in grid.get_row_at(i)] for i in range(grid.row_count)]


async def test_the_view_runs_the_diff_and_shows_the_cli_numbers(pair, ui_env, capsys):
    a, b, text = pair
    assert cli.main(["diff", str(a), str(b), str(text), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    app = app_with_models(a, b)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_diff(pilot)
        assert screen.query_one("#diff-a", Select).value == "fake-model"  # the current model
        screen.query_one("#diff-a", Select).value = str(a.resolve())
        screen.query_one("#diff-b", Select).value = str(b.resolve())
        screen.query_one("#diff-file", Input).value = str(text)
        await pilot.press("enter")
        await until(pilot, lambda: screen.running)
        assert "scoring" in status(screen)
        await until(pilot, lambda: not screen.running, timeout=180)
        assert screen.error is None and screen.result is not None
        shown = str(screen.query_one("#diff-perplexity", Static).render())
        assert f"perplexity A: {expected['perplexity_a']:.2f}" in shown
        assert f"perplexity B: {expected['perplexity_b']:.2f}" in shown
        # The same tokens and deltas (a child process may sum in another order: the
        # last bits may differ, near-ties swap places only between equal repeats).
        for key in ("gains", "losses"):
            got, want = screen.result[key], expected[key]
            assert [r["token"] for r in got] == [r["token"] for r in want]
            assert [r["delta"] for r in got] == pytest.approx([r["delta"] for r in want],
                                                              abs=1e-3)
        gains = cells(screen, "gains")
        assert len(gains) == len(expected["gains"]) >= 1
        first = screen.result["gains"][0]
        assert gains[0] == [f"{first['delta']:+.3f}", tail(first["context"]), repr(first["token"])]
        assert first["context"].endswith(gains[0][1].lstrip("…"))
        await pilot.press("escape")  # nothing running: closes
        await until(pilot, lambda: not isinstance(app.screen, DiffScreen))


async def test_a_failure_shows_its_one_line(pair, ui_env, tmp_path):
    a, b, _ = pair
    app = app_with_models(a, b)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_diff(pilot)
        screen.query_one("#diff-b", Select).value = str(b.resolve())
        screen.query_one("#diff-file", Input).value = str(tmp_path / "missing.txt")
        await pilot.press("enter")
        await until(pilot, lambda: screen.error is not None, timeout=120)
        assert screen.error == f"gptterm: {tmp_path / 'missing.txt'}: no such file"
        assert screen.error in status(screen) and cells(screen, "gains") == []


async def test_escape_kills_a_running_diff_then_closes(pair, ui_env):
    a, b, text = pair
    app = app_with_models(a, b)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_diff(pilot)
        screen.query_one("#diff-a", Select).value = str(a.resolve())
        screen.query_one("#diff-b", Select).value = str(b.resolve())
        screen.query_one("#diff-file", Input).value = str(text)
        await pilot.press("enter")
        await until(pilot, lambda: screen.running)
        proc = screen.proc
        await pilot.press("escape")
        await until(pilot, lambda: not screen.running, timeout=60)
        assert proc.returncode == -9  # killed, not finished
        assert isinstance(app.screen, DiffScreen) and "stopped" in status(screen)
        assert screen.result is None and screen.error is None
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DiffScreen))


async def test_the_palette_opens_the_view(ui_env):
    app = app_with_models()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        app.screen.query_one(Input).value = "Checkpoint diff"
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count >= 1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))


def test_the_view_never_imports_torch():
    code = ("import sys, gptterm.ui.app, gptterm.ui.screens.diff; "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_snapshot(snap_compare, ui_env):
    app = app_with_models()

    async def run_before(pilot):
        screen = await open_diff(pilot)
        field = screen.query_one("#diff-file", Input)
        field.value = "poems.txt"
        field.cursor_blink = False
        screen.show(RESULT)
        screen.query_one("#diff-status", Static).update("512 tokens of poems.txt")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(110, 30), run_before=run_before)
