"""gptterm train / finetune / perplexity on tiny corpora and tiny models (seconds each)."""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from gptterm import cli
from gptterm.training import TrainingError
from gptterm.training.run import Settings, run
from gptterm.training.trainer import Interrupted

WORDS = ("the king is dead and the queen is sad . to be or not to be , that is the question . "
         "my lord , the night is long and the sea is cold . shall i compare thee to a summer day . ")
TINY = ["--vocab-size", "300", "--layers", "1", "--width", "32", "--heads", "2",
        "--context", "32", "--batch-size", "4", "--lr", "0.005", "--val-fraction", "0.1"]


def corpus_file(tmp_path, name="corpus.txt", repeat=40, text=WORDS):
    path = tmp_path / name
    lines = [" ".join(text.split()[i % 7:]) for i in range(repeat)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def settings(corpus, out, **kw) -> Settings:
    base = {"corpus": [str(corpus)], "out": str(out), "vocab_size": 300, "n_layer": 1,
            "n_embd": 32, "n_head": 2, "n_ctx": 32, "batch_size": 4, "lr": 0.005,
            "val_fraction": 0.1, "sample_tokens": 8, "max_steps": 30}
    base.update(kw)
    return Settings(**base)


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, local_files_only=True),
            AutoTokenizer.from_pretrained(path, local_files_only=True))


def generate(model, tok, prompt="to be", n=6):
    import torch

    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False,
                             pad_token_id=tok.eos_token_id)
    return out, tok.decode(out[0][ids.shape[1]:])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny model trained for 40 steps, with the losses it saw."""
    tmp = tmp_path_factory.mktemp("trained")
    losses = []
    summary = run(settings(corpus_file(tmp), tmp / "model", max_steps=40),
                  on_step=lambda t, step, loss: losses.append(loss), echo=lambda *a: None)
    return tmp / "model", losses, summary


def test_train_lowers_loss_and_output_loads_in_plain_transformers(trained):
    out, losses, summary = trained
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert summary["history"][-1]["val_perplexity"] < 300  # far below uniform guessing
    model, tok = load(out)
    ids, text = generate(model, tok)
    assert ids.shape[1] > tok("to be", return_tensors="pt")["input_ids"].shape[1]
    assert isinstance(text, str)
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == \
        "GPT2TokenizerFast"
    card = (out / "README.md").read_text()
    assert "gptterm train" in card and "val perplexity" in card and "## Sample" in card
    assert not (out / "checkpoint").exists()


def test_train_command_prints_epochs_samples_and_progress(tmp_path, capsys):
    corpus = corpus_file(tmp_path)
    rc = cli.main(["train", str(corpus), "--out", str(tmp_path / "m"), *TINY,
                   "--epochs", "2", "--sample-prompt", "the king"])
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.out.count("val perplexity") >= 2  # one report per epoch (+ summary)
    assert captured.out.count("sample: the king") == 2
    assert "tok/s" in captured.err and "ETA" in captured.err and "loss" in captured.err
    assert (tmp_path / "m" / "config.json").is_file()


def test_sentencepiece_tokenizer_is_kogpt2_style_and_loads_with_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    korean = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.\n"
    corpus = corpus_file(tmp_path, text=korean * 3 + WORDS)
    out = tmp_path / "ko"
    rc = cli.main(["train", str(corpus), "--out", str(out), *TINY, "--tokenizer",
                   "sentencepiece", "--vocab-size", "400", "--max-steps", "5"])
    assert rc == 0
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token, tok.mask_token) == \
        ("</s>", "</s>", "<unk>", "<pad>", "<mask>")
    assert {"<usr>", "<sys>"} <= set(tok.all_special_tokens)
    text = "대한민국은 민주공화국이다.\n모든 권력은 국민으로부터 나온다."
    ids = tok(text)["input_ids"]
    assert any(p.startswith("▁") for p in tok.convert_ids_to_tokens(ids))
    assert tok.decode(ids) == text
    load(out)


def test_finetune_lowers_loss_on_its_corpus_and_keeps_the_tokenizer(trained, tmp_path):
    base, _, _ = trained
    poems = corpus_file(tmp_path, "poems.txt", text="o rose , o rose , thy thorn is sweet . " * 3)
    out = tmp_path / "ft"
    summary = run(Settings(mode="finetune", base=str(base), corpus=[str(poems)], out=str(out),
                           n_ctx=10**6, batch_size=4, lr=0.003, max_steps=20,
                           val_fraction=0.1, sample_tokens=4), echo=lambda *a: None)
    assert summary["history"][-1]["val_loss"] < summary["before"]["loss"]
    assert (out / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    assert "before" in (out / "README.md").read_text()
    load(out)


def test_interrupted_run_leaves_loadable_checkpoint_that_resumes(tmp_path, capsys):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "m"

    def ctrl_c(trainer, step, loss):
        if step == 5:
            signal.raise_signal(signal.SIGINT)  # what Ctrl+C delivers

    with pytest.raises(Interrupted) as stopped:
        run(settings(corpus, out, max_steps=12), on_step=ctrl_c, echo=lambda *a: None)
    assert stopped.value.step == 5
    assert not (out / "config.json").exists()  # not mistaken for a finished model
    model, tok = load(out / "checkpoint")
    generate(model, tok)
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 5

    # Without --resume the unfinished run is protected; with it, training finishes.
    args = ["train", str(corpus), "--out", str(out), *TINY, "--max-steps", "12"]
    assert cli.main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(args + ["--resume"]) == 0
    info = json.loads((out / "gptterm_training.json").read_text())
    assert info["steps"] == 12
    load(out)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    corpus = corpus_file(tmp_path)
    straight = run(settings(corpus, tmp_path / "a", max_steps=8, precision="fp32"),
                   echo=lambda *a: None)

    def stop(trainer, step, loss):
        if step == 4:
            trainer.request_stop()

    with pytest.raises(Interrupted):
        run(settings(corpus, tmp_path / "b", max_steps=8, precision="fp32"), on_step=stop,
            echo=lambda *a: None)
    resumed = run(settings(corpus, tmp_path / "b", max_steps=8, precision="fp32",
                           resume=True), echo=lambda *a: None)
    assert resumed["steps"] == 8
    assert resumed["history"][-1]["val_loss"] == pytest.approx(
        straight["history"][-1]["val_loss"], abs=1e-3)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gptterm: "), err
    return err[0]


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "m"
    assert cli.main(["train", str(tmp_path / "nope.txt"), "--out", str(out), *TINY]) == 2
    assert "nope.txt" in one_line_error(capsys)
    assert not out.exists()


def test_non_utf8_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait\n".encode("latin-1"))
    out = tmp_path / "m"
    assert cli.main(["train", str(bad), "--out", str(out), *TINY]) == 2
    line = one_line_error(capsys)
    assert "latin1.txt" in line and "UTF-8" in line
    assert not out.exists()


def test_empty_corpus_is_one_line_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    assert cli.main(["train", str(empty), "--out", str(tmp_path / "m"), *TINY]) == 2
    assert "empty" in one_line_error(capsys)
    assert not (tmp_path / "m").exists()


def test_base_that_does_not_load_is_one_line_exit_2(tmp_path, capsys):
    corpus = corpus_file(tmp_path)
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text("{not json", encoding="utf-8")
    for base in (str(tmp_path / "missing-dir"), str(not_a_model), "no-such-org/no-such-model"):
        out = tmp_path / "ft"
        assert cli.main(["finetune", base, str(corpus), "--out", str(out)]) == 2
        assert "base model" in one_line_error(capsys)
        assert not out.exists()


def test_out_dir_holding_a_different_model_is_refused(tmp_path, capsys, tiny_model_dir):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "other"
    shutil.copytree(tiny_model_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(["train", str(corpus), "--out", str(out), *TINY, "--max-steps", "2"]) == 2
    assert f"--out {out}: already holds a trained model" in one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # Nor does --overwrite replace a model that gptterm did not write.
    assert cli.main(["train", str(corpus), "--out", str(out), *TINY, "--max-steps", "2",
                     "--overwrite"]) == 2
    assert "gptterm did not write" in one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_trained_model_is_replaced_only_with_overwrite_and_only_its_files(tmp_path, capsys):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "m"
    args = ["train", str(corpus), "--out", str(out), *TINY, "--max-steps", "2"]
    assert cli.main(args) == 0
    capsys.readouterr()
    (out / "notes.txt").write_text("my notes")
    before = snapshot(out)
    # Same recipe with other steps, learning rate or corpus text: refused, nothing touched.
    corpus.write_text(corpus.read_text() + "more words .\n")
    for extra in (["--max-steps", "3"], ["--lr", "0.002"], []):
        assert cli.main([*args, *extra]) == 2
        line = one_line_error(capsys)
        assert str(out) in line and "--overwrite" in line
        assert snapshot(out) == before
    assert cli.main([*args, "--max-steps", "3", "--overwrite"]) == 0
    capsys.readouterr()
    assert (out / "notes.txt").read_text() == "my notes"
    assert json.loads((out / "gptterm_training.json").read_text())["steps"] == 3
    load(out)


@pytest.mark.parametrize("intruder", ["README.md", "checkpoint/mine.txt", "model-00001.safetensors"])
def test_overwrite_never_deletes_a_file_gptterm_did_not_write(tmp_path, capsys, intruder):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "m"
    args = ["train", str(corpus), "--out", str(out), *TINY, "--max-steps", "2"]
    assert cli.main(args) == 0
    capsys.readouterr()
    path = out / intruder
    path.parent.mkdir(exist_ok=True)
    path.write_text("the user's own words")  # README.md: the card, edited by the user
    before = snapshot(out)
    assert cli.main([*args, "--overwrite"]) == 2
    line = one_line_error(capsys)
    assert intruder.split("/")[0] in line and "gptterm did not write" in line
    assert snapshot(out) == before


@pytest.mark.parametrize("flag,value,expected", [
    ("--lr", "inf", "(0, 10]"), ("--lr", "nan", "(0, 10]"), ("--lr", "0", "(0, 10]"),
    ("--dropout", "5", "[0, 1)"), ("--val-fraction", "1", "[0, 1)"),
    ("--seed", str(2**63), "0 to 9223372036854775807"), ("--seed", "-1", "0 to"),
    ("--steps", "-1", "0 to 2147483647"), ("--batch-size", "0", "1 to 2147483647"),
    ("--batch-size", str(10**30), "1 to 2147483647"), ("--epochs", "1.5", "an integer"),
    ("--layers", "0", "1 to"), ("--context", "x", "an integer"),
    ("--sample-prompt", "caf\udce9", "not valid UTF-8 (byte 0xe9"),
])
def test_bad_training_flags_are_one_line_before_anything_runs(tmp_path, capsys, flag, value,
                                                              expected):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", str(corpus), "--out", str(out), *TINY, flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument " in err and flag in err and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("field,value", [("lr", float("inf")), ("dropout", 5.0),
                                         ("seed", 2**63), ("batch_size", 10**30),
                                         ("val_fraction", float("nan"))])
def test_settings_out_of_range_are_training_errors(tmp_path, field, value):
    with pytest.raises(TrainingError, match="expected"):
        run(settings(corpus_file(tmp_path), tmp_path / "m", **{field: value}))
    assert not (tmp_path / "m").exists()


def test_settings_errors_are_training_errors(tmp_path):
    corpus = corpus_file(tmp_path)
    with pytest.raises(TrainingError, match="divisible"):
        run(settings(corpus, tmp_path / "m", n_embd=30, n_head=4))


def test_perplexity_command(trained, tmp_path, capsys):
    model, _, _ = trained
    text = corpus_file(tmp_path, "eval.txt", repeat=5)
    assert cli.main(["perplexity", str(model), str(text), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 1 < result["perplexity"] < 300 and result["tokens"] > 20
    noise = tmp_path / "noise.txt"
    noise.write_text("zq xv jk wq " * 20, encoding="utf-8")
    assert cli.main(["perplexity", str(model), str(noise), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["perplexity"] > result["perplexity"]
    assert cli.main(["perplexity", str(model), str(tmp_path / "missing.txt")]) == 2
    one_line_error(capsys)
