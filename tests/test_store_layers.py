"""The store, replay and session commands stay light: no torch, transformers or textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT = ["store", "replay", "session_run", "commands.sessions", "commands.replay"]


@pytest.mark.parametrize("module", LIGHT)
def test_module_imports_neither_torch_nor_textual(module):
    code = (f"import sys, gptterm.{module}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    heavy = set(out.split()) & {"torch", "transformers", "textual"}
    assert not heavy, f"gptterm.{module} imports {heavy}"
