"""Reduced precision (engine/precision.py): each precision against fp32, `auto`'s rule and
its remembered decision, the config key, the flags, and one line for what cannot run."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from gptterm import cli, config
from gptterm.engine import precision
from gptterm.engine.client import EngineClient
from gptterm.engine.runner import runner_for


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def own_rows(model):
    return precision.own_text(runner_for(model), 0, 128, tokens=200)


def test_own_text_is_seeded_rows_of_the_window(model):
    rows = precision.own_text(runner_for(model), 0, 64, tokens=150)
    assert [len(x) for x, _ in rows] == [63, 63, 24]  # each row starts at the start token
    assert all(x[0] == 0 and x[1:] == y[:-1] for x, y in rows)
    assert rows == precision.own_text(runner_for(model), 0, 64, tokens=150)


@pytest.mark.parametrize("name", ["bf16", "fp16", "int8"])
def test_each_precision_stays_close_to_fp32(model, own_rows, name):
    runner = precision.build(model, name)
    assert runner.precision == name
    ids = torch.tensor([own_rows[0][0][:40]])
    low = runner.forward(ids, runner.new_cache(), all_logits=True)
    exact = runner_for(model).forward(ids, runner_for(model).new_cache(), all_logits=True)
    assert low.dtype == torch.float32
    assert (low - exact).abs().max() < 0.1 * exact.abs().max()
    base = precision.perplexity(runner_for(model), own_rows)
    assert abs(precision.perplexity(runner, own_rows) / base - 1) < precision.AUTO_TOLERANCE


def test_int8_rows_round_trip_within_half_a_step():
    w = torch.randn(48, 80)
    q, scale = precision.quantize_rows(w)
    assert q.dtype == torch.int8 and q.is_contiguous() and scale.shape == (48,)
    step = scale.float()[:, None]
    assert ((q.float() * step - w).abs() <= step * 0.51 + 1e-3).all()


def test_pick_takes_the_fastest_within_tolerance_else_fp32():
    table = {"fp32": {"ms": 10, "ppl": 100, "ok": True},
             "bf16": {"ms": 6, "ppl": 101, "ok": True},
             "int8": {"ms": 4, "ppl": 110, "ok": False},
             "fp16": {"error": "no"}}
    assert precision.pick(table) == "bf16"
    assert precision.pick({"fp32": table["fp32"], "int8": table["int8"]}) == "fp32"


def test_auto_measures_once_per_weights_file(model, tiny_model_dir, monkeypatch):
    calls = []
    real = precision.measure

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(precision, "measure", counting)
    monkeypatch.setattr(precision, "SAMPLE_TOKENS", 64)
    kwargs = {"model_dir": str(tiny_model_dir), "device": "cpu", "threads": 1,
              "start_token": 0, "n_ctx": 128}
    first = precision.resolve(model, "auto", **kwargs)
    second = precision.resolve(model, "auto", **kwargs)
    assert calls == [1] and first.precision == second.precision
    saved = json.loads((config.paths.data_dir() / precision.CACHE_NAME).read_text())
    (entry,) = saved.values()
    assert entry["precision"] == first.precision
    assert set(entry["measured"]) == set(precision.PRECISIONS)
    precision.resolve(model, "auto", **{**kwargs, "threads": 2})  # another setup: measured
    assert calls == [1, 1]


def test_a_precision_the_machine_cannot_run_is_one_line(model, tiny_model_dir, monkeypatch,
                                                        capsys):
    def broken(*args):
        raise RuntimeError("no kernel for this\nand more detail")

    # Both int8 kernels (fbgemm's on x86 CPUs, the weight-only one elsewhere) fail.
    monkeypatch.setattr(torch, "_weight_int8pack_mm", broken)
    monkeypatch.setattr(precision, "_dynamic_int8", broken)
    with pytest.raises(precision.PrecisionError, match=r"^precision int8: this CPU cannot run "
                                                      r"it with this torch \(no kernel for "
                                                      r"this\); use fp32 or auto$"):
        precision.build(model, "int8")
    assert cli.main(["generate", "hi", "--model", str(tiny_model_dir), "--precision",
                     "int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gptterm: precision int8: this CPU")
    # auto never fails: int8 drops out of the race
    monkeypatch.setattr(precision, "SAMPLE_TOKENS", 64)
    table = precision.measure(model, 0, 64)
    assert "error" in table["int8"] and precision.pick(table) != "int8"


def test_engine_reports_its_precision_and_decodes_at_it(tiny_model_dir):
    with EngineClient(device="cpu", precision="bf16") as client:
        loaded = client.load(str(tiny_model_dir))
        assert loaded.precision == "bf16"
        assert client.engine.local._lm.runner.precision == "bf16"
    with EngineClient(device="cpu") as client:
        assert client.load(str(tiny_model_dir)).precision == "fp32"  # the CPU default


def test_config_precision_is_read_and_a_bad_one_is_one_problem(tiny_model_dir):
    path = config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('precision = "int8"\n')
    settings, problems = config.load_settings()
    assert settings.precision == "int8" and problems == []
    with EngineClient(device="cpu") as client:  # no flag: the config's
        assert client.load(str(tiny_model_dir)).precision == "int8"
    with EngineClient(device="cpu", precision="fp32") as client:  # the flag wins
        assert client.load(str(tiny_model_dir)).precision == "fp32"
    path.write_text('precision = "fp8"\n')
    settings, problems = config.load_settings()
    assert settings.precision is None
    assert problems == [(f"{path}: precision = 'fp8': expected one of auto, fp32, bf16, "
                         "fp16, int8")]


def test_generate_stats_and_perplexity_name_the_precision(tiny_model_dir, tmp_path, capsys):
    assert cli.main(["generate", "Once", "--model", str(tiny_model_dir), "--precision", "bf16",
                     "--max-new-tokens", "3", "--stats"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(" precision=bf16")
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    results = {}
    for name in ("fp32", "int8"):
        assert cli.main(["perplexity", str(tiny_model_dir), str(text), "--precision", name,
                         "--json"]) == 0
        results[name] = json.loads(capsys.readouterr().out)
    assert results["int8"]["precision"] == "int8"
    assert results["fp32"]["tokens"] == results["int8"]["tokens"]
    assert abs(results["int8"]["perplexity"] / results["fp32"]["perplexity"] - 1) < 0.02
    assert cli.main(["perplexity", str(tiny_model_dir), str(text), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)  # transformers at fp32, as before
    assert "precision" not in plain
    assert plain["perplexity"] == pytest.approx(results["fp32"]["perplexity"], rel=1e-4)


def test_status_bar_names_the_precision_after_the_device():
    from gptterm.ui.widgets.status import StatusBar, StatusInfo

    bar = StatusBar()
    bar.info = StatusInfo(model="tiny", device="cpu", precision="bf16")
    assert "tiny (cpu bf16)" in str(dict(bar.parts())["model"])
    bar.info = StatusInfo(model="tiny", device="cpu")
    assert "tiny (cpu)" in str(dict(bar.parts())["model"])
