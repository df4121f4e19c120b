"""Shared fixtures: an isolated data/config dir for every test, and a tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Property tests explore new random inputs on every local run (that is how they find
# bugs); CI runs a fixed set, so a landing never depends on the luck of one draw.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Never touch the network, never wait on hub retries.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Point the data and config dirs at temporary folders."""
    monkeypatch.setenv("GPTTERM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPTTERM_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random GPT-2 with a byte-level BPE tokenizer (built once per run)."""
    from tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")


@pytest.fixture(scope="session")
def long_model_dir(tmp_path_factory) -> Path:
    """A small model with room for thousands of positions (a reply may use half), wide
    enough that a reply of 4000 tokens streams for several seconds even on a fast, idle
    machine: for tests that must stop a reply midway."""
    from tiny import build_model

    return build_model(tmp_path_factory.mktemp("long") / "tiny-long", n_positions=8192,
                       n_embd=256, n_layer=4, n_head=4)


@pytest.fixture
def ui_env(tmp_path, monkeypatch) -> Path:
    """UI tests: test presets in the config dir, no bundled presets, no shipped or hub models."""
    from ui_fakes import make_ui_env

    return make_ui_env(tmp_path, monkeypatch)
