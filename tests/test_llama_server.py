"""A real llama.cpp `llama-server` on 127.0.0.1, driven through `gptterm generate --model URL`.

The server binary is built from llama.cpp's source by `scripts/llama-server.sh`, which
`.ci/run` calls and whose path it exports as GPTTERM_LLAMA_SERVER. Without it these tests
fail (they do not skip): the suite needs a real server to stand behind the remote engine.

Models: `shakespeare-mini` exported to GGUF f32 (its byte-level BPE tokenizer goes across
as it is), and for the cancel test a random model with a long window, so that a reply
is still being written when it is cancelled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gptterm import gguf_export, paths

pytestmark = pytest.mark.slow

PROMPT = "ROMEO:\nBut soft, what light"
START_DEADLINE_S = 120
IDLE_DEADLINE_S = 60


def server_binary() -> Path:
    value = os.environ.get("GPTTERM_LLAMA_SERVER", "")
    if not value:
        pytest.fail("GPTTERM_LLAMA_SERVER is not set: build llama-server with "
                    "`scripts/llama-server.sh` (.ci/run does) and export the path it prints")
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"GPTTERM_LLAMA_SERVER={value}: not an executable file")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class LlamaServer:
    """One llama-server process serving one GGUF file on a free local port."""

    def __init__(self, binary: Path, model: Path, n_ctx: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:  # the server keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port",
                 str(self.port), "-c", str(n_ctx), "-np", "1", "-t", "2", "--slots",
                 "--no-webui"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"llama-server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if get_json(self.url + "/health").get("status") == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"llama-server did not answer /health in {START_DEADLINE_S} s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def slots(self) -> list[dict]:
        return get_json(self.url + "/slots")

    def busy(self) -> bool:
        return any(slot.get("is_processing") for slot in self.slots())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def binary() -> Path:
    return server_binary()


@pytest.fixture(scope="module")
def shakespeare(binary, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-sm")
    model = gguf_export.write_gguf(paths.shipped_models_dir() / "shakespeare-mini",
                                   folder / "shakespeare-mini.gguf", "f32")
    server = LlamaServer(binary, model, 256, folder / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def long_server(binary, long_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-long")
    model = gguf_export.write_gguf(long_model_dir, folder / "long.gguf", "f32")
    server = LlamaServer(binary, model, 8192, folder / "server.log")
    yield server
    server.stop()


def gptterm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptterm", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def events(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def text_of(evs: list[dict]) -> str:
    return "".join(e["text"] for e in evs if e["event"] == "text")


def generate(model: str, *extra: str) -> list[dict]:
    return events(gptterm("generate", PROMPT, "--model", model, "--json", *extra))


def test_greedy_text_equals_the_local_engines_for_20_tokens(shakespeare):
    flags = ("--preset", "greedy", "--max-new-tokens", "20")
    local = generate("shakespeare-mini", *flags)
    remote = generate(shakespeare.url, *flags)
    assert local[-1]["event"] == remote[-1]["event"] == "done"
    assert local[-1]["n_tokens"] == remote[-1]["n_tokens"] == 20
    assert text_of(remote) == text_of(local)
    local_ids = [i for e in local if e["event"] == "text" for i in e["token_ids"]]
    remote_ids = [i for e in remote if e["event"] == "text" for i in e["token_ids"]]
    assert remote_ids == local_ids
    started = remote[0]
    assert started["event"] == "started" and started["prompt_tokens"] > 0


def test_a_sessions_second_turn_reuses_the_servers_cache(shakespeare):
    flags = ("--model", shakespeare.url, "--preset", "greedy", "--max-new-tokens", "12",
             "--session", "llama", "--json")
    first = events(gptterm("generate", PROMPT, *flags))
    second = events(gptterm("generate", "\nJULIET:", *flags))
    assert first[-1]["event"] == second[-1]["event"] == "done"
    assert second[-1]["reused_tokens"] > 0
    assert second[-1]["prompt_tokens"] > first[-1]["prompt_tokens"]


def test_a_stop_string_ends_the_reply_unshown(shakespeare):
    flags = ("--preset", "greedy", "--max-new-tokens", "40")
    full = text_of(generate(shakespeare.url, *flags))
    # A stop string from the middle of the free reply: the reply must end just before it.
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[len(words) // 2]
    cut = full.index(stop)
    evs = generate(shakespeare.url, *flags, "--set", f"stop={json.dumps([stop])}")
    assert text_of(evs) == full[:cut]
    assert stop not in text_of(evs)
    assert evs[-1]["reason"] == "stop"


def test_the_same_seed_gives_the_same_text(shakespeare):
    flags = ("--preset", "random", "--max-new-tokens", "30")
    a = text_of(generate(shakespeare.url, *flags, "--seed", "7"))
    b = text_of(generate(shakespeare.url, *flags, "--seed", "7"))
    c = text_of(generate(shakespeare.url, *flags, "--seed", "8"))
    assert a == b
    assert a != c  # the seed reaches the server: another seed samples other text


def test_no_repeat_ngram_size_is_refused_in_one_line(shakespeare):
    before = shakespeare.slots()[0].get("id_task")
    result = gptterm("generate", PROMPT, "--model", shakespeare.url, "--preset", "greedy",
                     "--set", "no_repeat_ngram_size=3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no_repeat_ngram_size = 3" in lines[0] and "llama.cpp" in lines[0]
    assert result.stdout == ""
    assert shakespeare.slots()[0].get("id_task") == before  # nothing was sent to generate


def test_cancel_leaves_the_server_idle(long_server):
    """Ctrl+C on generate closes the stream; the server notices and stops the task well
    before the reply's end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptterm", "generate", "Once upon a time", "--model",
         long_server.url, "--preset", "greedy", "--max-new-tokens", "4000", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(json.loads(line))
            if sum(1 for e in seen if e["event"] == "text") >= 3:
                break
        assert long_server.busy(), "the server should be writing the reply"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + IDLE_DEADLINE_S
    while long_server.busy():
        assert time.monotonic() < deadline, f"still processing after cancel: {long_server.slots()}"
        time.sleep(0.1)
    # The server stopped the task because the client went away (it logs the cancel of a
    # task whose connection closed), not because the reply ended.
    while "stop: cancel task" not in long_server.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no cancel in the server's log:\n{long_server.tail()}"
        time.sleep(0.1)


def test_a_q8_0_export_runs_in_the_built_server(binary, tmp_path):
    """q8_0 crashed a llama.cpp built with -march=native by GCC 12 on this AMX CPU (ggml's
    AMX kernels load a tile configuration GCC 12 leaves half written); the portable build
    from scripts/llama-server.sh has no AMX kernels and runs it."""
    model = gguf_export.write_gguf(paths.shipped_models_dir() / "shakespeare-mini",
                                   tmp_path / "sm-q8_0.gguf", "q8_0")
    server = LlamaServer(binary, model, 256, tmp_path / "server.log")
    try:
        evs = generate(server.url, "--preset", "greedy", "--max-new-tokens", "20")
        assert evs[-1]["event"] == "done" and evs[-1]["n_tokens"] == 20
        assert text_of(evs).strip()
        assert server.proc.poll() is None
    finally:
        server.stop()
