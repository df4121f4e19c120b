"""Model folders the user trained, finetuned or loaded are remembered (models.json in the
data dir) and listed by the catalog between the shipped and the hub models."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gptterm import catalog, local_models
from gptterm.cli import main
from gptterm.local_models import LocalModelsError, Remembered, remember, remembered


def models_json() -> Path:
    """Where the list lives (the data dir is created, as gptterm's first use does)."""
    folder = Path(os.environ["GPTTERM_DATA_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "models.json"


def model_folder(root: Path, name: str, language: str | None = None) -> Path:
    """A folder that looks like a model (config.json), with a gptterm card."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if language is not None:
        (folder / "README.md").write_text(
            f"---\nlicense: mit\nlanguage: {language}\ntags: [gpt2, gptterm]\n---\n\n# {name}\n")
    return folder


def test_newest_first_one_entry_per_folder_at_most_fifty(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    remember(a, how="trained")
    remember(str(b), how="finetuned")
    assert [(r.path, r.how) for r in remembered()] == [(str(b), "finetuned"),
                                                       (str(a), "trained")]
    trained_at = remembered()[1].when
    # The same folder by another spelling moves to the front; loading it again keeps
    # how it was made.
    remember(tmp_path / "b" / ".." / "a", how="loaded")
    first = remembered()[0]
    assert (first.path, first.how) == (str(a), "trained") and first.when >= trained_at
    assert len(remembered()) == 2
    remember(tmp_path / "c", how="loaded")
    assert remembered()[0] == Remembered(str(tmp_path / "c"), "loaded", remembered()[0].when)
    for i in range(60):
        remember(tmp_path / f"m{i}", how="trained")
    paths = [r.path for r in remembered()]
    assert len(paths) == 50 and paths[0] == str(tmp_path / "m59")
    with pytest.raises(ValueError, match="how 'made'"):
        remember(a, how="made")


def test_a_relative_folder_is_remembered_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    remember("mine", how="trained")
    assert remembered()[0].path == str(tmp_path / "mine")


@pytest.mark.parametrize("content", ["{not json", '{"version": 2, "models": []}', "[]",
                                     '{"version": 1, "models": {}}', "\xff\xfe"])
def test_a_damaged_file_is_ignored_and_left_alone_until_the_next_remember(tmp_path, content):
    file = models_json()
    file.write_bytes(content.encode("latin-1"))
    entries, problem = local_models.load()
    assert entries == [] and problem.startswith(f"{file}: ") and "ignored" in problem
    assert "\n" not in problem
    assert remembered() == [] and catalog.remembered_models() == []
    assert file.read_bytes() == content.encode("latin-1")  # reading never rewrites it
    remember(tmp_path / "new", how="trained")
    assert [r.path for r in remembered()] == [str(tmp_path / "new")]
    assert local_models.load()[1] == ""


def test_bad_entries_are_skipped_and_counted(tmp_path):
    good = {"path": str(tmp_path / "ok"), "how": "trained", "when": 1.7e9}
    bad = [{"path": "relative/x", "how": "trained", "when": 1.7e9},
           {"path": str(tmp_path / "y"), "how": "stolen", "when": 1.7e9},
           {"path": str(tmp_path / "z"), "how": "loaded", "when": True},
           {"path": str(tmp_path / "w"), "how": "loaded", "when": 1e300},
           {"path": "/a\ud800", "how": "loaded", "when": 1.7e9},
           {"path": "/a\0b", "how": "loaded", "when": 1.7e9}, "x", None]
    models_json().write_text(json.dumps({"version": 1, "models": [good, *bad]}))
    entries, problem = local_models.load()
    assert entries == [Remembered(good["path"], "trained", 1.7e9)]
    assert problem == (f"{models_json()}: 8 entries skipped (expected an absolute path, how: "
                       "trained | finetuned | loaded, and a time)")


def test_a_file_that_cannot_be_written_is_one_line(tmp_path, capsys):
    models_json().mkdir()  # a folder where the file should be
    with pytest.raises(LocalModelsError) as info:
        remember(tmp_path / "m", how="trained")
    assert str(info.value).startswith(f"{models_json()}: cannot save the remembered models")
    local_models.remember_or_say(tmp_path / "m", how="trained")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gptterm: note: ")


def test_the_catalog_lists_remembered_folders_that_still_hold_a_model(tmp_path):
    ko = model_folder(tmp_path, "ko-model", language="ko")
    plain = model_folder(tmp_path, "plain")
    (plain / "README.md").write_text("# no front matter\nlanguage: xx\n")
    gone = model_folder(tmp_path, "gone")
    odd = model_folder(tmp_path, "odd", language="[en, ko]")
    shipped = catalog.shipped_models()[0]
    for folder in (gone, Path(shipped.source), odd, plain, ko):
        remember(folder, how="trained")
    (gone / "config.json").unlink()
    specs = catalog.remembered_models()
    today = time.strftime("%Y-%m-%d")
    assert [(s.name, s.source, s.language, s.description, s.local) for s in specs] == [
        (str(ko), str(ko), "ko", f"trained {today}", True),
        (str(plain), str(plain), "?", f"trained {today}", True),
        (str(odd), str(odd), "?", f"trained {today}", True)]
    assert specs[0].label == "ko-model" and shipped.label == shipped.name

    names = [s.name for s in catalog.all_models()]
    n_shipped = len(catalog.shipped_models())
    assert names[n_shipped:n_shipped + 3] == [str(ko), str(plain), str(odd)]
    assert names[-len(catalog.HUB_MODELS):] == [s.name for s in catalog.HUB_MODELS]
    assert len(names) == len(set(names))
    assert catalog.resolve(str(ko)) == specs[0]
    assert catalog.resolve(shipped.name) == shipped


def test_generate_remembers_a_model_folder_it_loaded(tiny_model_dir, capsys):
    assert main(["generate", "hi", "--model", str(tiny_model_dir), "--preset", "greedy",
                 "--max-new-tokens", "2"]) == 0
    first = remembered()[0]
    assert (first.path, first.how) == (str(tiny_model_dir.resolve()), "loaded")
    spec = catalog.remembered_models()[0]
    assert spec.name == str(tiny_model_dir.resolve()) and spec.description.startswith("loaded ")
    # A model that fails to load is not remembered.
    assert main(["generate", "hi", "--model", str(tiny_model_dir.parent / "nothing")]) == 2
    assert len(remembered()) == 1


def test_generate_does_not_remember_shipped_models():
    shipped = catalog.shipped_models()[0]
    assert main(["generate", "hi", "--model", shipped.source, "--preset", "greedy",
                 "--max-new-tokens", "2"]) == 0
    assert main(["generate", "hi", "--model", shipped.name, "--preset", "greedy",
                 "--max-new-tokens", "2"]) == 0
    assert remembered() == []


def test_train_and_finetune_remember_their_folders(tmp_path):
    from test_training import TINY, corpus_file

    corpus = corpus_file(tmp_path)
    trained, tuned = tmp_path / "trained", tmp_path / "tuned"
    assert main(["train", str(corpus), "--out", str(trained), *TINY, "--max-steps", "2"]) == 0
    assert main(["finetune", str(trained), str(corpus), "--out", str(tuned), "--max-steps",
                 "2", "--batch-size", "4"]) == 0
    assert [(r.path, r.how) for r in remembered()] == [(str(tuned), "finetuned"),
                                                       (str(trained), "trained")]
    assert [s.name for s in catalog.remembered_models()] == [str(tuned), str(trained)]
