"""`gptterm generate` as a user runs it: streaming, JSON events, stats, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from gptterm.cli import main


def gptterm(*args, input=None, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "", **(env_extra or {})}
    env.pop("HF_HUB_OFFLINE")  # the loader must be fast without it too
    return subprocess.run([sys.executable, "-m", "gptterm", *args], capture_output=True,
                          text=True, input=input, env=env, timeout=120)


def test_json_events_follow_the_contract(tiny_model_dir, capsys):
    code = main(["generate", "To be", "--model", str(tiny_model_dir), "--json",
                 "--max-new-tokens", "6", "--preset", "greedy", "--seed", "1"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "started"
    assert set(lines[0]) == {"event", "prompt_tokens", "reused_tokens", "window_start"}
    texts = [line for line in lines if line["event"] == "text"]
    assert texts and all(set(t) == {"event", "text", "token_ids"} for t in texts)
    done = lines[-1]
    assert done["event"] == "done" and done["reason"] in ("eos", "length")
    assert set(done) == {"event", "reason", "n_tokens", "seconds", "ttft", "max_new_tokens",
                         "prompt_tokens", "reused_tokens"}
    assert done["n_tokens"] == sum(len(t["token_ids"]) for t in texts)


def test_max_new_tokens_past_half_the_window_is_capped_and_said_once(tiny_model_dir, capsys):
    """Asking for more tokens than the window holds used to push the prompt out."""
    code = main(["generate", "Once upon a time in a land far away", "--model",
                 str(tiny_model_dir), "--json", "--max-new-tokens", "300", "--seed", "1"])
    assert code == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    started, done = lines[0], lines[-1]
    assert started["prompt_tokens"] > 1 and started["window_start"] == 0  # the prompt stays
    assert done["max_new_tokens"] == 64 and done["n_tokens"] <= 64  # half of 128
    notes = [line for line in err.splitlines() if "max_new_tokens" in line]
    assert notes == ["gptterm: max_new_tokens 300 is more than half of tiny-gpt2's "
                     "128-token window: using 64"]


def test_a_prompt_longer_than_the_window_says_what_was_left_out(tiny_model_dir, capsys):
    prompt = "A long pasted letter, line after line. " * 60  # far more than 128 tokens
    code = main(["generate", prompt, "--model", str(tiny_model_dir), "--json",
                 "--max-new-tokens", "4", "--preset", "greedy"])
    assert code == 0
    out, err = capsys.readouterr()
    started = json.loads(out.splitlines()[0])
    assert started["window_start"] > 0 and started["prompt_tokens"] <= 128
    assert (f"gptterm: the context is longer than tiny-gpt2's 128-token window: the oldest "
            f"{started['window_start']} tokens are left out") in err.splitlines()


def test_plain_stream_and_stats_line(tiny_model_dir):
    result = gptterm("generate", "-", "--model", str(tiny_model_dir), "--stats",
                     "--max-new-tokens", "5", "--preset", "greedy", input="Once upon a time")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    stats = result.stderr.strip().splitlines()[-1]
    fields = dict(part.split("=") for part in stats.split())
    assert set(fields) == {"tokens", "ttft_ms", "tok_per_s", "reused", "precision"}
    assert fields["precision"] == "fp32"  # the default on a CPU
    assert int(fields["tokens"]) <= 5 and float(fields["ttft_ms"]) > 0


def test_offline_hub_id_fails_fast_with_one_line():
    start = time.perf_counter()
    result = gptterm("generate", "hi", "--model", "skt/kogpt2-base-v2")
    elapsed = time.perf_counter() - start
    assert result.returncode == 2
    assert elapsed < 2.0 + 1.5  # python start-up included; the loader itself never waits
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gptterm download" in lines[0]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_bad_model_path_one_line_exit_2(tmp_path, make, capsys):
    path = tmp_path / "ckpt"
    if make == "empty":
        path.mkdir()
    assert main(["generate", "hi", "--model", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert ("does not exist" if make == "missing" else "no config.json") in err[0]


def test_bad_set_value_is_one_line(tiny_model_dir, capsys):
    assert main(["generate", "hi", "--model", str(tiny_model_dir), "--preset", "greedy",
                 "--set", "top_p=1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "top_p" in err and "(0, 1]" in err and len(err.splitlines()) == 1


def test_ctrl_c_cancels_and_exits_cleanly(tmp_path):
    import signal

    from tiny import build_model

    model = build_model(tmp_path / "long-ctx", n_positions=1024)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptterm", "generate", "Once", "--model", str(model), "--json",
         "--set", 'method="sample"', "--max-new-tokens", "1000", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "text":
            proc.send_signal(signal.SIGINT)
            break
    lines += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 0
    done = lines[-1]
    assert done["event"] == "done" and done["reason"] == "cancelled"
    assert 1 <= done["n_tokens"] < 1000
    assert "Traceback" not in proc.stderr.read()


def test_top_level_options_open_the_tui(monkeypatch):
    from gptterm import cli

    seen = {}
    monkeypatch.setattr("gptterm.commands.tui.run", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(["--model", "shakespeare-mini", "--preset", "greedy"]) == 0
    assert seen["command"] == "tui" and seen["model"] == "shakespeare-mini"
    assert cli.main([]) == 0 and seen["model"] is None
