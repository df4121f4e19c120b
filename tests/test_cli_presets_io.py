"""`gptterm presets import FILE` and `gptterm presets export NAME --format F`: the files
they write (in the user presets folder of the test's config dir), --force, one-line errors."""

from __future__ import annotations

import json
import tomllib

import yaml

from gptterm import paths, presets
from gptterm.cli import main

GPT2_CONFIG = {"_from_model_config": True, "bos_token_id": 50256, "eos_token_id": 50256,
               "transformers_version": "4.26.0", "do_sample": True, "top_p": 0.9,
               "max_new_tokens": 40}


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_writes_name_toml_to_the_user_presets_folder(tmp_path, capsys):
    src = write(tmp_path, "generation_config.json", json.dumps(GPT2_CONFIG))
    assert main(["presets", "import", str(src), "--name", "gpt2-hf"]) == 0
    out, err = capsys.readouterr()
    target = paths.user_presets_dir() / "gpt2-hf.toml"
    assert target.is_file() and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{src}: read as an HF generation_config.json"
    # One line per field it could not express, naming file, field and value.
    assert [ln for ln in lines if ": field " in ln] == [
        f"{src}: field {key} = 50256: not expressible in gptterm (a fact of the model, not a "
        "sampler setting: gptterm takes it from the model)"
        for key in ("bos_token_id", "eos_token_id")]
    assert lines[-1].startswith(f"wrote {target}: preset 'gpt2-hf': sample")
    preset = presets.load_presets()[0]["gpt2-hf"]
    assert (preset.method, preset.top_p, preset.top_k, preset.max_new_tokens) == (
        "sample", 0.9, 50, 40)
    data = tomllib.loads(target.read_text(encoding="utf-8"))
    assert "dry_base" not in data and data["method"] == "sample"  # only what differs


def test_default_name_is_the_file_stem_and_force_replaces(tmp_path, capsys):
    src = write(tmp_path, "Creative.yaml", "min_p: 0.02\nxtc_probability: 0.5\n")
    assert main(["presets", "import", str(src)]) == 0
    target = paths.user_presets_dir() / "Creative.toml"
    assert "read as a text-generation-webui preset (YAML)" in capsys.readouterr().out
    before = target.read_text(encoding="utf-8")
    write(tmp_path, "Creative.yaml", "min_p: 0.3\n")
    assert main(["presets", "import", str(src)]) == 2
    err = capsys.readouterr().err
    assert err == (f"gptterm: {target} exists: expected --force to replace it, or another "
                   "--name\n")
    assert target.read_text(encoding="utf-8") == before  # never rewritten unasked
    assert main(["presets", "import", str(src), "--force"]) == 0
    assert presets.load_presets()[0]["Creative"].min_p == 0.3


def test_import_errors_are_one_line_exit_2(tmp_path, capsys):
    odd = write(tmp_path, "odd.json", '{"colour": "blue"}')
    assert main(["presets", "import", str(odd)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gptterm: {odd}: ")
    assert "expected an HF generation_config.json, a text-generation-webui preset (YAML) or " \
           "a llama.cpp server request body (JSON)" in err
    assert main(["presets", "import", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot read" in capsys.readouterr().err
    bad = write(tmp_path, "bad.json", '{"n_predict": 5, "repeat_penalty": "lots"}')
    assert main(["presets", "import", str(bad)]) == 2
    assert capsys.readouterr().err == f"gptterm: {bad}: repeat_penalty = 'lots': expected a number\n"
    assert main(["presets", "import", str(bad), "--name", "../up"]) == 2
    assert capsys.readouterr().err.startswith("gptterm: --name '../up': expected")
    assert not paths.user_presets_dir().exists()  # nothing written on failure


def test_ambiguous_file_needs_format(tmp_path, capsys):
    src = write(tmp_path, "body.json", '{"temperature": 0.7}')
    assert main(["presets", "import", str(src)]) == 2
    assert "name one with --format" in capsys.readouterr().err
    assert main(["presets", "import", str(src), "--format", "llama.cpp"]) == 0
    out = capsys.readouterr().out
    assert "read as a llama.cpp server request body (JSON)" in out
    assert presets.load_presets()[0]["body"].top_k == 40  # llama-server's default


def test_export_formats_to_stdout_and_notes_to_stderr(capsys):
    assert main(["presets", "export", "creative", "--format", "llama.cpp"]) == 0
    out, err = capsys.readouterr()
    body = json.loads(out)
    assert (body["temperature"], body["top_k"], body["top_p"], body["repeat_penalty"],
            body["n_predict"]) == (0.8, 50, 0.95, 1.1, 80)
    assert err.startswith("creative: field description = ")  # the only thing lost
    assert main(["presets", "export", "creative", "--format", "hf"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["do_sample"] is True and config["top_k"] == 50
    assert main(["presets", "export", "beam", "--format", "webui"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["do_sample"] is False
    assert "beam: field method = 'beam': not expressible in text-generation-webui" in err
    assert "beam: field num_beams = 5: not expressible" in err


def test_export_to_a_file_then_import_gives_the_same_preset(tmp_path, capsys):
    out = tmp_path / "creative.yaml"
    assert main(["presets", "export", "creative", "--format", "webui", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert main(["presets", "export", "creative", "--format", "webui", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"gptterm: {out} exists: expected --force to replace it\n"
    assert main(["presets", "export", "creative", "--format", "webui", "-o", str(out),
                 "--force"]) == 0
    assert main(["presets", "import", str(out), "--name", "back"]) == 0
    capsys.readouterr()
    from gptterm.preset_formats import effective_values

    loaded = presets.load_presets()[0]
    assert effective_values(loaded["back"]) == effective_values(loaded["creative"])


def test_export_errors(capsys):
    assert main(["presets", "export", "nope", "--format", "hf"]) == 2
    assert capsys.readouterr().err.startswith("gptterm: no preset named 'nope'")
