"""Layering rules from DESIGN.md, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["protocol", "presets", "catalog", "paths", "config", "store", "replay", "recorder",
        "textsafe", "cli_types", "safefile", "errors", "cli", "engine.engine", "engine.client",
        "commands.generate", "commands.models", "commands.sessions", "commands.replay",
        "commands.presets", "commands.tui"]


def imported_after(module: str) -> set[str]:
    code = (f"import sys, gptterm.{module}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", CORE)
def test_core_modules_import_neither_torch_nor_textual(module):
    heavy = imported_after(module) & {"torch", "transformers", "textual"}
    assert not heavy, f"gptterm.{module} imports {heavy}"


def test_import_contracts_hold():
    """The import-linter contracts in pyproject.toml (core and engine never import the UI
    or Textual; only the command line imports gptterm.commands; the UI never imports
    torch or transformers itself)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout
