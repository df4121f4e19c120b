"""`gptterm diff A B FILE`: both perplexities as `gptterm perplexity` gives them, the tokens
where B gains and loses most, a tokenizer mismatch and bad files as one line, and the
ranking function property-tested."""

from __future__ import annotations

import json
import math
import re

import pytest
from diff_models import build_other_tokenizer, build_pair
from hypothesis import given
from hypothesis import strategies as st

from gptterm import cli
from gptterm.training.diffing import Change, context_of, rank

REQUIRED = {"perplexity_a", "perplexity_b", "gains", "losses"}
ROW = {"context", "token", "delta"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_pair(tmp_path_factory.mktemp("diff"))


def run_json(capsys, *argv) -> dict:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("gptterm: "), lines
    return lines[0]


# ------------------------------------------------------------ the command


def test_json_shape_and_perplexities_are_gptterm_perplexitys(pair, capsys):
    a, b, text = pair
    result = run_json(capsys, "diff", str(a), str(b), str(text), "--json", "--top", "4")
    assert REQUIRED <= set(result)
    assert result["perplexity_a"] == run_json(capsys, "perplexity", str(a), str(text),
                                              "--json")["perplexity"]
    assert result["perplexity_b"] == run_json(capsys, "perplexity", str(b), str(text),
                                              "--json")["perplexity"]
    # B was finetuned on this text: it predicts it better, and gains on some tokens.
    assert result["perplexity_b"] < result["perplexity_a"]
    gains, losses = result["gains"], result["losses"]
    assert 1 <= len(gains) <= 4 and len(losses) <= 4
    for row in gains + losses:
        assert ROW <= set(row) and isinstance(row["context"], str) and row["token"]
    assert [r["delta"] for r in gains] == sorted((r["delta"] for r in gains), reverse=True)
    assert [r["delta"] for r in losses] == sorted(r["delta"] for r in losses)
    assert all(r["delta"] > 0 for r in gains) and all(r["delta"] < 0 for r in losses)
    # Each token and its context are the file's text at that place.
    body = text.read_text(encoding="utf-8")
    assert all((r["context"] + r["token"]).rstrip("\ufffd") in body for r in gains + losses)


def test_text_output_prints_the_perplexity_lines(pair, capsys):
    a, b, text = pair
    assert cli.main(["perplexity", str(a), str(text)]) == 0
    ppl_a = re.match(r"perplexity (\S+) ", capsys.readouterr().out).group(1)
    assert cli.main(["perplexity", str(b), str(text)]) == 0
    ppl_b = re.match(r"perplexity (\S+) ", capsys.readouterr().out).group(1)
    assert cli.main(["diff", str(a), str(b), str(text), "--top", "1000"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"perplexity A: {ppl_a}" in lines and f"perplexity B: {ppl_b}" in lines
    # With every token listed, the escape sequence of the text is among them, made inert.
    assert "\x1b" not in out and "\x07" not in out and "␛" in out
    assert "B gains most over A" in out and "B loses most to A" in out


def test_a_window_shorter_than_the_text_lines_the_tokens_up(pair, capsys):
    a, b, text = pair
    short = run_json(capsys, "diff", str(a), str(b), str(text), "--json", "--context", "8")
    assert short["perplexity_a"] == run_json(capsys, "perplexity", str(a), str(text), "--json",
                                             "--context", "8")["perplexity"]
    full = run_json(capsys, "diff", str(a), str(b), str(text), "--json")
    assert short["tokens"] == full["tokens"] > 8 and short["perplexity_a"] != full["perplexity_a"]


def test_diff_of_a_model_with_itself_has_no_gains_or_losses(pair, capsys):
    a, _, text = pair
    result = run_json(capsys, "diff", str(a), str(a), str(text), "--json")
    assert result["perplexity_a"] == result["perplexity_b"]
    assert result["gains"] == [] and result["losses"] == []


def test_per_token_losses_average_to_the_perplexity_loss(pair):
    from gptterm.training.perplexity import score_file

    a, _, text = pair
    scored = score_file(str(a), str(text), context=16)
    assert len(scored.losses) == scored.result["tokens"] == len(scored.ids) - 1
    mean = sum(scored.losses) / len(scored.losses)
    assert mean == pytest.approx(scored.result["loss"], abs=1e-5)


def test_tokenizer_mismatch_is_one_line_exit_1(pair, tmp_path, capsys):
    a, _, text = pair
    other = build_other_tokenizer(tmp_path)
    assert cli.main(["diff", str(a), str(other), str(text)]) == 1
    line = one_line_error(capsys)
    assert "do not share a tokenizer" in line and "vocabularies differ" in line


@pytest.mark.parametrize("content, why", [
    (None, "no such file"), (b"", "empty"), (b"\xff\xfe bad", "not UTF-8"),
    (b"a", "too short"),
])
def test_bad_files_are_one_line(pair, tmp_path, capsys, content, why):
    a, b, _ = pair
    path = tmp_path / "f.txt"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["diff", str(a), str(b), str(path)]) == 2
    line = one_line_error(capsys)
    assert why in line and str(path) in line


def test_bad_model_is_one_line(pair, tmp_path, capsys):
    a, _, text = pair
    assert cli.main(["diff", str(a), str(tmp_path), str(text)]) == 2
    assert "cannot load" in one_line_error(capsys)


# ------------------------------------------------------------ the pure parts

logprob = st.floats(min_value=-40, max_value=0, allow_nan=False)
any_float = st.one_of(logprob, st.sampled_from([math.nan, -math.inf, math.inf]))


@st.composite
def two_arrays(draw, element=logprob):
    n = draw(st.integers(0, 40))
    a = draw(st.lists(element, min_size=n, max_size=n))
    # Many equal pairs and repeated deltas, so ties and zeros are tried.
    b = draw(st.lists(st.one_of(element, st.sampled_from(a) if a else element),
                      min_size=n, max_size=n))
    return a, b


@given(two_arrays(any_float), st.integers(0, 50))
def test_rank_lists_the_largest_changes_in_order(arrays, top):
    a, b = arrays
    gains, losses = rank(a, b, top)
    deltas = {i: y - x for i, (x, y) in enumerate(zip(a, b))
              if math.isfinite(x) and math.isfinite(y)}
    positive = [i for i, d in deltas.items() if d > 0]
    negative = [i for i, d in deltas.items() if d < 0]
    assert len(gains) == min(top, len(positive)) and len(losses) == min(top, len(negative))
    for change in gains + losses:
        assert change.delta == deltas[change.position]
    # Gains: largest first, ties by position; none left out is larger than the last kept.
    assert [(-c.delta, c.position) for c in gains] == sorted((-c.delta, c.position)
                                                             for c in gains)
    assert [(c.delta, c.position) for c in losses] == sorted((c.delta, c.position)
                                                             for c in losses)
    kept = {c.position for c in gains}
    if gains:
        assert all(deltas[i] <= gains[-1].delta for i in positive if i not in kept)
    kept = {c.position for c in losses}
    if losses:
        assert all(deltas[i] >= losses[-1].delta for i in negative if i not in kept)


@given(two_arrays(), st.integers(0, 50))
def test_swapping_the_models_swaps_gains_and_losses(arrays, top):
    a, b = arrays
    gains, losses = rank(a, b, top)
    back_gains, back_losses = rank(b, a, top)

    def flip(changes):
        return [Change(c.position, -c.delta) for c in changes]

    assert back_gains == flip(losses) and back_losses == flip(gains)


def test_rank_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        rank([0.0, -1.0], [0.0], 5)


def test_context_ends_where_the_token_begins(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Once upon a time 안녕하세요 床前明月光 the end"
    ids = tokenizer(text)["input_ids"]
    for position in range(len(ids) - 1):
        context, token = context_of(tokenizer, ids, position)
        # Whole characters: the context never ends inside one (a character the token
        # leaves incomplete shows as U+FFFD in the token's text).
        assert token and (context + token).rstrip("\ufffd") in text
        assert "\ufffd" not in context


def test_the_command_module_loads_neither_torch_nor_textual():
    import subprocess
    import sys

    code = ("import sys, gptterm.commands.diff, gptterm.training.diffing; "
            "print(sorted({'torch', 'transformers', 'textual'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
