"""torch's intra-op thread count: the pick rule, and that the engine, training and
perplexity apply it on the thread that runs the model; bad --threads is one error line."""

from __future__ import annotations

import threading

import pytest
import torch

from gptterm import cli
from gptterm.engine import threads as thr
from gptterm.engine.client import EngineClient
from gptterm.engine.threads import MAX_THREADS, pick_threads
from gptterm.presets import Preset
from gptterm.protocol import Failed, Generate

MINI = 4_800_000  # shakespeare-mini, the shipped default


def test_requested_wins_over_size_and_machine():
    assert pick_threads(50_000, requested=3, cpu_count=2) == 3
    assert pick_threads(10**10, requested=1, cpu_count=64) == 1
    with pytest.raises(ValueError, match="positive"):
        pick_threads(MINI, requested=0)


def test_small_models_decode_on_one_thread_even_on_many_cores():
    for n_params in (50_000, MINI, 20_000_000):
        assert pick_threads(n_params, cpu_count=64) == 1


def test_one_core_stays_free_and_the_count_is_bounded():
    for cpus in (1, 2, 3, 4, 16, 256):
        for n_params in (50_000, MINI, 124_000_000, 10**9, 10**12):
            for tokens in (1, 4096):
                n = pick_threads(n_params, cpu_count=cpus, tokens=tokens)
                assert 1 <= n <= max(1, cpus - 1) and n <= MAX_THREADS
    assert pick_threads(10**12, cpu_count=2, tokens=4096) == 1  # two cores: always one
    assert pick_threads(124_000_000, cpu_count=16) > 1  # a big model splits where it can
    assert pick_threads(MINI, cpu_count=8, tokens=16 * 256) == 7  # a training step splits


def test_requested_threads_falls_back_to_the_config(monkeypatch, tmp_path):
    assert thr.requested_threads(5) == 5
    assert thr.requested_threads(None) is None  # no config file: pick
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("threads = 3\n", encoding="utf-8")
    assert thr.requested_threads(None) == 3
    assert thr.requested_threads(2) == 2


@pytest.fixture
def default_two_threads():
    """Make 2 the count a fresh thread inherits, so only an applied pick can read 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def threads_on_worker(client, monkeypatch) -> int:
    """torch.get_num_threads() as read on the engine's worker during a Generate."""
    seen = []

    def probe(lm, caches, command, seed, cancel, emit):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        raise RuntimeError("probe done")  # the engine turns this into Failed

    monkeypatch.setattr("gptterm.engine.generation.run_generation", probe)
    result = client.generate(Generate("probe", "s", "hi", Preset(name="g", method="greedy"), 1))
    assert isinstance(result, Failed) and result.error == "probe done"
    (name, count), = seen
    assert name == "gptterm-engine"
    return count


@pytest.mark.parametrize("requested,expected", [(None, 1), (3, 3)])
def test_engine_applies_the_pick_on_its_worker_thread(tiny_model_dir, monkeypatch,
                                                      default_two_threads, requested,
                                                      expected):
    with EngineClient(device="cpu", threads=requested) as client:
        assert client.engine.threads_in_use is None
        client.load(str(tiny_model_dir))
        assert client.engine.threads_in_use == expected
        assert threads_on_worker(client, monkeypatch) == expected
    assert torch.get_num_threads() == 2  # the caller's own thread keeps its count


def test_training_runs_on_the_requested_threads(tmp_path, default_two_threads):
    from test_training import corpus_file, settings

    from gptterm.training.run import run

    seen, lines = [], []
    run(settings(corpus_file(tmp_path), tmp_path / "m", max_steps=2, threads=3),
        on_step=lambda t, step, loss: seen.append(torch.get_num_threads()), echo=lines.append)
    assert seen == [3, 3]
    assert "3 CPU threads" in lines[0]


def test_perplexity_applies_the_pick(tmp_path, tiny_model_dir, default_two_threads):
    from gptterm.training.perplexity import file_perplexity

    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question " * 4, encoding="utf-8")
    file_perplexity(str(tiny_model_dir), str(text), device="cpu")
    assert torch.get_num_threads() == 1  # tiny model, one window at a time
    file_perplexity(str(tiny_model_dir), str(text), device="cpu", threads=3)
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("command", [
    ["train", "c.txt", "--out", "o"], ["finetune", "base", "c.txt", "--out", "o"],
    ["perplexity", "model", "f.txt"]])
@pytest.mark.parametrize("value,expected", [("0", "got 0"), ("abc", "got 'abc'"),
                                            ("100000", "1 to 256")])
def test_bad_threads_flag_is_one_error_line(tmp_path, capsys, command, value, expected):
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--threads", value])
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--threads" in errors[0] and expected in errors[0], errors


def test_settings_threads_out_of_range_is_a_training_error(tmp_path):
    from test_training import corpus_file, settings

    from gptterm.training import TrainingError
    from gptterm.training.run import run

    with pytest.raises(TrainingError, match="--threads"):
        run(settings(corpus_file(tmp_path), tmp_path / "m", threads=0))
    assert not (tmp_path / "m").exists()


def test_the_app_gives_the_engine_its_threads(ui_env, monkeypatch):
    """`gptterm --threads N` wins over the config's `threads`, which wins over the pick."""
    import gptterm.engine.engine as engine_module
    from gptterm import config
    from gptterm.ui.app import make_app

    made = []
    monkeypatch.setattr(engine_module, "Engine", lambda emit, **kw: made.append(kw))
    make_app(threads=3).engine_factory(lambda event: None)
    config.save_settings(config.Settings(threads=2))
    make_app().engine_factory(lambda event: None)
    make_app(threads=1).engine_factory(lambda event: None)
    assert [kw["threads"] for kw in made] == [3, 2, 1]
