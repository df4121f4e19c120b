"""The UI never imports torch or transformers, not even indirectly."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_ui_leaves_torch_and_transformers_out():
    code = (
        "import sys\n"
        "import gptterm.ui.app, gptterm.ui.commands, gptterm.ui.themes, gptterm.commands.tui\n"
        "app = gptterm.ui.app.make_app()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "print(','.join(heavy) or 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
