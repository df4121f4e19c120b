"""Training reports: a few validation samples a run (not one per tiny epoch), and samples
of whole characters, never U+FFFD from a character that byte-level BPE split."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from gptterm import cli
from gptterm.training.trainer import MAX_REPORTS, report_every, sample_text

# Korean and Chinese: 3 UTF-8 bytes a character, so a tiny byte-level BPE splits them.
TEXT = ("the king is dead and the queen is sad . 한국어 문장을 생성합니다 . "
        "床前明月光 , 疑是地上霜 . to be or not to be , that is the question .")
TINY = ["--vocab-size", "300", "--layers", "1", "--width", "32", "--heads", "2",
        "--context", "32", "--batch-size", "4", "--lr", "0.005", "--val-fraction", "0.1",
        "--sample-prompt", "the king"]


def small_corpus(tmp_path, lines: int = 3):
    """A corpus of a few lines: an epoch of a few steps."""
    path = tmp_path / "small.txt"
    words = TEXT.split()
    path.write_text("\n".join(" ".join(words[i % 7:]) for i in range(lines)) + "\n",
                    encoding="utf-8")
    return path


def report_steps(total: int, per_epoch: int) -> list[int]:
    every = report_every(total, per_epoch)
    return [s for s in range(1, total + 1) if s % every == 0 or s == total]


def test_reports_are_few_and_at_epoch_ends():
    for total in range(1, 80):
        for per_epoch in range(1, 12):
            steps = report_steps(total, per_epoch)
            assert steps[-1] == total
            assert len(steps) <= MAX_REPORTS + 1, (total, per_epoch, steps)
            assert all(s % per_epoch == 0 for s in steps[:-1])
    assert report_steps(30, 3) == [6, 12, 18, 24, 30]
    assert report_steps(6, 3) == [3, 6]  # few epochs: a report each, as before
    assert report_steps(1000, 1000) == [1000]


def test_small_corpus_run_prints_a_few_samples_of_whole_characters(tmp_path, capsys):
    out = tmp_path / "m"
    rc = cli.main(["train", str(small_corpus(tmp_path)), "--out", str(out), *TINY,
                   "--max-steps", "30"])
    assert rc == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "gptterm_training.json").read_text())
    per_epoch = info["history"][0]["step"] / info["history"][0]["epoch"]
    assert per_epoch < 10  # the corpus makes short epochs: many more than 5 in 30 steps
    samples = [line for line in printed.splitlines() if line.startswith("  sample: ")]
    assert 2 <= len(samples) <= MAX_REPORTS + 1
    assert len(samples) == len(info["history"]) == printed.count("val perplexity") - 1
    assert info["history"][-1]["step"] == 30  # the last step always reports
    assert all(s.startswith("  sample: the king") for s in samples)
    assert "\ufffd" not in printed
    assert "\ufffd" not in (out / "README.md").read_text(encoding="utf-8")  # the card's sample


def test_sentencepiece_samples_have_no_replacement_characters(tmp_path, capsys):
    rc = cli.main(["train", str(small_corpus(tmp_path, lines=12)), "--out", str(tmp_path / "sp"),
                   *TINY, "--tokenizer", "sentencepiece", "--vocab-size", "400",
                   "--max-steps", "8"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "  sample: the king" in printed and "\ufffd" not in printed


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_sample_text_drops_a_character_cut_at_the_end(tok):
    ids = tok("dawn 霜").input_ids
    assert len(tok("霜").input_ids) > 1  # split over byte tokens in the tiny vocabulary
    assert sample_text(tok, ids) == "dawn 霜"
    assert sample_text(tok, ids[:-1]) == "dawn "
    assert "\ufffd" in tok.decode(ids[:-1])  # what a plain decode printed


def test_sample_text_leaves_out_invalid_bytes_and_special_tokens(tok):
    lead = tok("霜").input_ids[0]  # a lead byte, then no continuation: not UTF-8
    ids = tok("a").input_ids + [lead, lead] + tok(" b").input_ids + [tok.eos_token_id]
    assert "\ufffd" in tok.decode(ids)
    assert sample_text(tok, ids) == "a b"
