"""Preset files: the bundled set, user overrides, one-line errors, `--set`, and the
`gptterm presets` command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from gptterm import paths, presets
from gptterm.cli import main
from gptterm.presets import Preset, PresetError

REPO = Path(__file__).resolve().parent.parent
REQUIRED = ["greedy", "beam", "random", "top-k", "top-p", "top-p-0.5", "contrastive", "kogpt2",
            "typical", "min-p", "creative"]


def user_dir() -> Path:
    path = paths.user_presets_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write(name: str, text: str) -> Path:
    path = user_dir() / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the bundled presets ---------------------------------------------------------------


def test_bundled_presets_all_load():
    loaded, failed = presets.load_presets()
    assert failed == []
    assert set(REQUIRED) <= set(loaded)
    assert presets.DEFAULT_PRESET in loaded
    for p in loaded.values():
        assert p.description, p.name
        assert Path(p.source).parent == paths.bundled_presets_dir()


def test_bundled_files_hold_only_non_default_keys():
    neutral = Preset()
    for path in sorted(paths.bundled_presets_dir().glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert "description" in data, path
        for key, value in data.items():
            if key != "description":
                default = getattr(neutral, key)
                assert value != (list(default) if isinstance(default, tuple) else default), (
                    f"{path.name}: {key} repeats the neutral default")


def test_bundled_presets_have_the_settings_the_tutorials_use():
    p, _ = presets.load_presets()
    assert (p["greedy"].method, p["greedy"].summary()) == ("greedy", "greedy")
    assert (p["beam"].method, p["beam"].num_beams) == ("beam", 5)
    assert p["random"].values() == Preset(name="random", method="sample",
                                          description=p["random"].description).values()
    assert (p["top-k"].method, p["top-k"].top_k) == ("sample", 10)
    assert (p["top-p"].method, p["top-p"].top_p, p["top-p"].top_k) == ("sample", 0.9, 0)
    assert (p["top-p-0.5"].method, p["top-p-0.5"].top_p) == ("sample", 0.5)
    assert (p["contrastive"].method, p["contrastive"].top_k,
            p["contrastive"].penalty_alpha) == ("contrastive", 4, 0.6)
    assert (p["kogpt2"].method, p["kogpt2"].repetition_penalty) == ("greedy", 2.0)
    assert p["typical"].method == "sample" and p["typical"].typical_p < 1
    assert p["min-p"].method == "sample" and p["min-p"].min_p > 0
    assert p["creative"].method == "sample"


def test_wheel_ships_the_bundled_presets():
    """pyproject maps presets/ into the package, where paths looks first when installed."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    force = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force["presets"] == "gptterm/_bundled/presets"
    assert (REPO / "presets" / f"{presets.DEFAULT_PRESET}.toml").is_file()


# --- loading: overrides and failures ---------------------------------------------------


def test_user_file_wins_and_adds():
    write("top-k", 'description = "mine"\nmethod = "sample"\ntop_k = 3\n')
    write("mine", 'description = "new"\nmethod = "sample"\ntemperature = 0.5\n')
    loaded, failed = presets.load_presets()
    assert failed == []
    assert loaded["top-k"].top_k == 3 and loaded["top-k"].source.startswith(str(user_dir()))
    assert loaded["mine"].temperature == 0.5
    assert loaded["top-p"].top_p == 0.9  # the others are still there


@pytest.mark.parametrize("text,key,expected", [
    ("top_q = 0.9", "top_q", "expected one of"),
    ("name = 'x'", "name", "file name"),
    ("top_k = 'ten'", "top_k", "expected an integer"),
    ("top_k = 2.5", "top_k", "expected an integer"),
    ("temperature = 'hot'", "temperature", "expected a number"),
    ("early_stopping = 1", "early_stopping", "expected true or false"),
    ("stop = 3", "stop", "expected a list of strings"),
    ("stop = ['']", "stop", "non-empty"),
    ("seed = -1", "seed", "0 <= seed < 2**63"),
    (f"seed = {10**23}", "seed", "0 <= seed < 2**63"),
    (f"seed = {2**63}", "seed", "0 <= seed < 2**63"),
    ("seed = 1.5", "seed", "an integer"),
    ("method = 'nucleus'", "method", "greedy | sample | beam | contrastive"),
    ("method = 'sample'\ntop_p = 1.5", "top_p", "(0, 1]"),
    ("method = 'sample'\ntop_p = 0", "top_p", "(0, 1]"),
    ("method = 'sample'\ntemperature = 0", "temperature", "> 0 when sampling"),
    ("temperature = -1", "temperature", "in [0, 100]"),
    ("temperature = 1e309", "temperature", "a finite number"),
    ("temperature = inf", "temperature", "a finite number"),
    ("temperature = 1e6", "temperature", "in [0, 100]"),
    ("length_penalty = nan", "length_penalty", "a finite number"),
    ("length_penalty = -1e300", "length_penalty", "in [-100, 100]"),
    ("top_p = -inf", "top_p", "a finite number"),
    (f"repetition_penalty = {10**400}", "repetition_penalty", "a finite number"),
    ("typical_p = 0", "typical_p", "(0, 1]"),
    ("min_p = 1.5", "min_p", "[0, 1]"),
    ("top_k = -1", "top_k", "in [0, 2147483647]"),
    (f"top_k = {2**31}", "top_k", "in [0, 2147483647]"),
    ("repetition_penalty = 0", "repetition_penalty", "in (0, 100]"),
    ("no_repeat_ngram_size = -2", "no_repeat_ngram_size", "in [0, 2147483647]"),
    ("method = 'beam'\nnum_beams = 0", "num_beams", "in [1, 64]"),
    ("method = 'beam'\nnum_beams = 100000", "num_beams", "in [1, 64]"),
    ("method = 'contrastive'\ntop_k = 4", "penalty_alpha", "contrastive"),
    ("penalty_alpha = 2.0", "penalty_alpha", "[0, 1]"),
    ("max_new_tokens = 0", "max_new_tokens", "in [1, 2147483647]"),
    (f"max_new_tokens = {10**23}", "max_new_tokens", "in [1, 2147483647]"),
    ("min_new_tokens = -1", "min_new_tokens", "in [0, 2147483647]"),
    ("order = ['top_k', 'warp']", "order", "expected steps from"),
    ("order = ['top_k', 'top_k']", "order", "once"),
    ("method = 'sample'\ntop_p = 0.5\norder = ['top_k']", "order", "'top_p'"),
])
def test_bad_file_is_one_line_naming_file_key_expected(text, key, expected):
    path = write("broken", text + "\n")
    loaded, failed = presets.load_presets()
    assert "broken" not in loaded and "greedy" in loaded  # one bad file hides nothing
    assert len(failed) == 1
    line = failed[0]
    assert "\n" not in line
    assert str(path) in line and key in line and expected in line


def test_unreadable_and_invalid_toml_files_are_reported():
    write("syntax", "top_k = = 3\n")
    (user_dir() / "binary.toml").write_bytes(b"\xff\xfe\x00bad")
    loaded, failed = presets.load_presets()
    assert len(failed) == 2 and all("\n" not in line for line in failed)
    assert any("syntax.toml: not valid TOML" in line for line in failed)
    assert any("binary.toml" in line for line in failed)
    assert set(REQUIRED) <= set(loaded)


def test_load_file_raises_preset_error():
    path = write("x", "top_k = 'a'\n")
    with pytest.raises(PresetError, match="x.toml: top_k"):
        presets.load_file(path)


def test_stop_accepts_a_single_string():
    path = write("stops", 'stop = "\\n\\n"\n')
    assert presets.load_file(path).stop == ("\n\n",)


# --- --set -----------------------------------------------------------------------------


def test_set_assignments_validate_like_files():
    base = presets.load_presets()[0]["top-p"]
    changed = presets.apply_assignments(
        base, ["temperature=0.7", "top_k=40", 'stop=["\\n", "END"]', "seed=5", "method=sample"])
    assert (changed.temperature, changed.top_k, changed.stop, changed.seed) == (
        0.7, 40, ("\n", "END"), 5)
    assert changed.source == base.source and changed.name == "top-p"
    assert presets.apply_assignments(base, []) is base
    for bad, words in [("top_p=2", ["--set", "top_p", "(0, 1]"]),
                       ("top_q=1", ["--set", "top_q", "expected one of"]),
                       ("name=x", ["--set", "name"]),
                       ("temperature", ["--set", "key=value"]),
                       ("top_k=many", ["--set", "top_k", "integer"]),
                       ("temperature=inf", ["--set", "temperature", "finite"]),
                       ("temperature=1e309", ["--set", "temperature", "finite"]),
                       ("length_penalty=nan", ["--set", "length_penalty", "finite"]),
                       (f"seed={10**23}", ["--set", "seed", "0 <= seed < 2**63"]),
                       ("top_k=" + "9" * 5000, ["--set", "top_k", "expected an integer"])]:
        with pytest.raises(PresetError) as info:
            presets.apply_assignments(base, [bad])
        assert all(w in str(info.value) for w in words), str(info.value)


def test_replace_revalidates():
    with pytest.raises(PresetError, match="temperature"):
        Preset(method="sample").replace(temperature=0.0)


# --- the command -----------------------------------------------------------------------


def test_presets_command_lists_name_source_summary(capsys):
    write("broken", "top_p = 7\n")
    assert main(["presets"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in REQUIRED:
        assert name in rows
    assert "presets/top-k.toml" in rows["top-k"] and "top_k=10" in rows["top-k"]
    assert rows["creative"].split()[1] == "*"  # the default is marked
    assert "broken.toml: top_p = 7" in err and len(err.strip().splitlines()) == 1


def test_presets_command_json(capsys):
    assert main(["presets", "--json"]) == 0
    data = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert data["beam"]["summary"] == "beam num_beams=5 early_stopping=True"
    assert data[presets.DEFAULT_PRESET]["default"] is True


def test_show_prints_a_valid_preset_file(capsys):
    assert main(["presets", "show", "contrastive"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# preset 'contrastive' from ")
    path = write("copy", out)
    again = presets.load_file(path)
    original = presets.load_presets()[0]["contrastive"]
    assert again.values() == {**original.values(), "name": "copy"}


def test_show_with_set_and_json(capsys):
    assert main(["presets", "show", "top-p", "--set", "temperature=0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["top_p"], data["temperature"], data["seed"]) == (0.9, 0.5, None)
    assert data["source"].endswith("top-p.toml")


def test_show_errors_are_one_line_exit_2(capsys):
    assert main(["presets", "show", "nope"]) == 2
    assert capsys.readouterr().err.startswith("gptterm: no preset named 'nope'")
    path = write("broken", "top_k = 'x'\n")
    assert main(["presets", "show", "broken"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"gptterm: {path}: top_k = 'x': expected an integer"
    assert main(["presets", "show", "greedy", "--set", "num_beams=0"]) == 2
    assert "num_beams" in capsys.readouterr().err
