"""CLI polish: help texts, `models` context windows and --json, an offline `download`,
CJK-aligned session tables and the plain-text story export."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from gptterm import catalog
from gptterm.cli import main
from gptterm.commands import models as models_cmd
from gptterm.commands import tui as tui_cmd
from gptterm.store import Store
from gptterm.store.exporting import story

REPO = Path(__file__).resolve().parent.parent


def help_text(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


# ------------------------------------------------------------------ help


def test_top_level_help_says_plain_gptterm_opens_the_app(capsys):
    out = help_text(capsys, ["--help"])
    assert "Plain `gptterm` opens the terminal app" in out
    for option in ("--model", "--preset", "--threads"):
        assert option in out.split("positional arguments")[0]  # in the description
    assert "gptterm --model ./my-model" in out  # the example, kept as written


def test_plain_model_flags_still_open_the_app(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(tui_cmd, "run", lambda args: seen.append(args) or 0)
    assert main(["--model", str(tmp_path), "--threads", "2"]) == 0
    assert main([]) == 0
    assert (seen[0].command, seen[0].model, seen[0].threads) == ("tui", str(tmp_path), 2)
    assert (seen[1].command, seen[1].model) == ("tui", None)


@pytest.mark.parametrize("command, words", [
    ("models", "context window"),
    ("download", "Hugging Face cache"),
])
def test_models_and_download_help_have_a_description(capsys, command, words):
    out = help_text(capsys, [command, "--help"])
    description = out.split("\n\n")[1]  # usage, then the description, then the options
    assert not description.startswith(("positional", "options"))
    assert words in " ".join(description.split())  # however argparse wrapped it


# ------------------------------------------------------------------ models


def fake_hub_cache(root: Path, repo: str, config: dict, snapshot: str = "abc123") -> None:
    """Lay out the cache as huggingface_hub does: refs/main names the snapshot."""
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "snapshots" / snapshot).mkdir(parents=True)
    (folder / "snapshots" / snapshot / "config.json").write_text(json.dumps(config))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(snapshot)


def model_rows(capsys) -> tuple[list[str], dict[str, str]]:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()
    return lines, {line.split()[0]: line for line in lines[1:]}


def test_models_shows_each_context_window(capsys, monkeypatch, tmp_path):
    fake_hub_cache(tmp_path / "hub", "gpt2", {"n_ctx": 1024, "n_positions": 1024})
    fake_hub_cache(tmp_path / "hub", "skt/kogpt2-base-v2", {"n_ctx": 1024})  # no n_positions
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    lines, rows = model_rows(capsys)
    column = lines[0].index("CONTEXT")
    assert lines[0].split() == ["NAME", "LANG", "CONTEXT", "OFFLINE", "FROM", "ABOUT"]
    shipped = json.loads((REPO / "gptterm" / "models" / "ko-mini" / "config.json").read_text())
    assert rows["ko-mini"][column:].split()[0] == str(shipped["n_positions"])
    assert rows["gpt2"][column:].split()[:2] == ["1024", "yes"]
    assert rows["kogpt2"][column:].split()[:2] == ["1024", "yes"]
    assert rows["distilgpt2"][column:].split()[:2] == ["?", "no"]  # not cached


def test_models_context_is_unknown_for_a_broken_config(capsys, monkeypatch, tmp_path):
    fake_hub_cache(tmp_path / "hub", "gpt2", {"n_positions": "many"})
    fake_hub_cache(tmp_path / "hub", "distilgpt2", {})
    (tmp_path / "hub" / "models--gpt2-medium" / "snapshots" / "x").mkdir(parents=True)
    (tmp_path / "hub" / "models--gpt2-medium" / "snapshots" / "x" / "config.json").write_text(
        "{not json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    lines, rows = model_rows(capsys)
    column = lines[0].index("CONTEXT")
    for name in ("gpt2", "distilgpt2", "gpt2-medium"):
        assert rows[name][column:].split()[0] == "?"


def test_models_json_has_one_object_per_model_with_n_ctx(capsys, monkeypatch, tmp_path):
    fake_hub_cache(tmp_path / "hub", "gpt2", {"n_positions": 1024})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["models", "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["name"] for o in objects] == [m.name for m in catalog.all_models()]
    by_name = {o["name"]: o for o in objects}
    assert set(by_name["gpt2"]) == {"name", "source", "language", "description", "available",
                                    "n_ctx"}
    assert (by_name["gpt2"]["n_ctx"], by_name["gpt2"]["available"]) == (1024, True)
    assert (by_name["distilgpt2"]["n_ctx"], by_name["distilgpt2"]["available"]) == (None, False)
    assert by_name["kogpt2"]["source"] == "skt/kogpt2-base-v2"
    ko = json.loads((REPO / "gptterm" / "models" / "ko-mini" / "config.json").read_text())
    assert by_name["ko-mini"]["n_ctx"] == ko["n_positions"]


def test_models_imports_no_model_library():
    """Listing stays fast: config.json is read with the stdlib, nothing loads a model."""
    code = ("import sys; from gptterm.cli import main; main(['models', '--json']); "
            "heavy = {'torch', 'transformers', 'huggingface_hub'} & set(sys.modules); "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ download


def run_download(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    clean.update(HF_HOME=str(tmp_path / "hf"), **env)
    return subprocess.run([sys.executable, "-m", "gptterm", "download", "gpt2"], env=clean,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)


def one_clean_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in lines[0]
    shipped = [m.name for m in catalog.all_models() if m.available_offline()]
    assert lines[0].endswith("models already on this machine: " + ", ".join(shipped))
    return lines[0]


def test_download_with_the_hub_unreachable_is_one_line_exit_1(tmp_path):
    # A port bound but not listening refuses every connection: an unreachable hub.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        line = one_clean_line(run_download(tmp_path, HF_ENDPOINT=endpoint))
    assert line.startswith("gptterm: cannot download gpt2: no network connection "
                           "(the hub is unreachable); ")
    assert not list((tmp_path / "hf").glob("hub/models--gpt2/snapshots/*/*"))


def test_download_in_offline_mode_says_so(tmp_path):
    line = one_clean_line(run_download(tmp_path, HF_HUB_OFFLINE="1"))
    assert line.startswith("gptterm: cannot download gpt2: offline mode is on "
                           "(HF_HUB_OFFLINE is set); ")


def test_network_problem_follows_the_chain_of_causes():
    class LocalEntryNotFoundError(FileNotFoundError):
        pass

    class TransportError(Exception):  # httpx's base class of connection failures
        pass

    def wrapped(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise LocalEntryNotFoundError("cannot find the snapshot folder") from exc
        except LocalEntryNotFoundError as outer:
            return outer

    assert "unreachable" in models_cmd.network_problem(wrapped(ConnectionRefusedError(111)))
    assert "unreachable" in models_cmd.network_problem(wrapped(TransportError("boom")))
    assert "unreachable" in models_cmd.network_problem(wrapped(socket.gaierror(-3, "dns")))
    assert models_cmd.network_problem(wrapped(ValueError("404 Not Found"))) is None
    assert models_cmd.network_problem(PermissionError(13, "denied")) is None


def test_download_of_a_local_model_is_refused(capsys):
    assert main(["download", "shakespeare-mini"]) == 2
    assert "nothing to download" in capsys.readouterr().err


# ------------------------------------------------------------------ CJK tables


def cell_of(line: str, text: str) -> int:
    """The terminal cell where `text` starts in `line`."""
    return cell_len(line[:line.index(text)])


def test_search_columns_line_up_after_cjk_titles(capsys):
    titles = ["plain title", "한국어 제목입니다", "床前明月光疑是地上霜", "mixed 中文 and 한국어",
              "아주 긴 한국어 제목은 삼십 칸을 넘어서 잘려야 합니다"]
    with Store() as store:
        for title in titles:
            session = store.create_session(title=title)
            store.add_turn(session.id, "user", "a lamp in the window")
    assert main(["sessions", "search", "lamp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(titles)
    assert len({cell_of(line, "turn 0 (user):") for line in lines}) == 1
    long = next(line for line in lines if "아주 긴" in line)
    assert "…" in long and cell_of(long, "…") - cell_of(long, "아주") == 29  # cut to 30 cells
    for title in titles[:4]:
        assert any(title in line for line in lines)  # short titles are whole


def test_list_columns_line_up_after_cjk_names(capsys):
    with Store() as store:
        for name, title in (("바다", "sea"), ("明月", "moon"), ("plain", "flat")):
            session = store.create_session(title=title, name=name)
            store.add_turn(session.id, "user", "text")
    assert main(["sessions", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "바다" in lines[3] and "明月" in lines[2]
    # Columns are separated by two or more spaces: every row starts them at the same cells.
    starts = [[cell_len(line[:m.start()]) for m in re.finditer(r"(?:^|(?<=  ))\S", line)]
              for line in lines]
    assert all(len(row) == 5 for row in starts), lines
    assert all(row == starts[0] for row in starts), lines


# ------------------------------------------------------------------ story export


@pytest.fixture
def story_session() -> str:
    with Store() as store:
        session = store.create_session(name="tale")
        store.add_turn(session.id, "user", "Once upon a time")
        writer = store.begin_turn(session.id, model="tiny", seed=1)
        writer.append(", a lamp\x1b[31m glowed", [1, 2], at=0.1)
        writer.finish("complete", {"n_tokens": 2})
        store.add_turn(session.id, "user", "\nThe end")
        assert story(store.turns(session.id)) == store.context_text(session.id)
        return session.id


WHOLE = "Once upon a time, a lamp\x1b[31m glowed\nThe end"


def test_story_export_is_the_text_the_model_saw_without_headers(story_session, capsys):
    assert main(["sessions", "export", "tale", "--format", "story"]) == 0
    assert capsys.readouterr().out == WHOLE


def test_story_export_to_a_file_is_exact(story_session, tmp_path, capsys):
    out = tmp_path / "tale.txt"
    assert main(["sessions", "export", story_session, "--format", "story", "-o", str(out)]) == 0
    assert out.read_bytes() == WHOLE.encode()
    assert capsys.readouterr().out == ""


def test_story_export_on_a_terminal_shows_controls_inert(story_session, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert main(["sessions", "export", "tale", "--format", "story"]) == 0
    assert screen.getvalue() == WHOLE.replace("\x1b", "\u241b")


def test_story_of_no_turns_is_empty():
    assert story([]) == ""
