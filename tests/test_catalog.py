"""The model catalog: names, quirks, offline availability, and `gptterm models`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from gptterm import catalog
from gptterm.cli import main


def test_catalog_names_and_tokenizer_quirks():
    names = {m.name: m for m in catalog.all_models()}
    assert {"gpt2", "distilgpt2", "gpt2-medium", "kogpt2", "gpt2-chinese-poem",
            "deep-haiku"} <= set(names)
    ko = catalog.resolve("skt/kogpt2-base-v2")
    assert ko.special_tokens == {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>",
                                 "pad_token": "<pad>", "mask_token": "<mask>"}
    assert catalog.resolve("uer/gpt2-chinese-poem").strip_cjk_spaces


def test_resolve_directory_and_unknown_hub_id(tmp_path):
    spec = catalog.resolve(str(tmp_path))
    assert spec.local and spec.source == str(tmp_path)
    hub = catalog.resolve("someone/some-model")
    assert not hub.local and hub.source == "someone/some-model"
    assert not hub.available_offline()


def test_models_command_lists_offline_state(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("kogpt2 "))
    assert "hub:skt/kogpt2-base-v2" in line and " no " in line


def test_hub_model_in_local_cache_loads_offline(tiny_model_dir, tmp_path):
    # Lay the tiny model out as the Hugging Face cache would after `gptterm download`.
    snapshot = tmp_path / "hub" / "models--someone--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    (tmp_path / "hub" / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny" / "refs" / "main").write_text("abc123")
    code = ("from gptterm import catalog; from gptterm.engine.loading import load; "
            "s = catalog.resolve('someone/tiny'); assert s.available_offline(); "
            "lm = load(s, 'cpu'); print(lm.n_ctx)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "128"
