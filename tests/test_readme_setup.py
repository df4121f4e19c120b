"""The README's "Set up" has exactly two commands, and CI runs the test one as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Set up"):]
    section = section[:section.index("\n## ", 1)]
    return [block.strip() for block in re.findall(r"```\n(.*?)```", section, re.S)]


def test_two_set_up_commands_and_ci_runs_the_test_one():
    install, tests = setup_commands()
    assert "pip install -e" in install and install.endswith("gptterm")
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
