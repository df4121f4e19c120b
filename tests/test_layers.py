"""Layering rules from DESIGN.md, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["protocol", "presets", "catalog", "paths", "config", "store", "replay", "recorder", "textsafe", "cli_types",
        "cli", "engine.engine", "engine.client",
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
