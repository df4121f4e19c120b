"""DRY, XTC and top-n-sigma against a real llama.cpp `llama-server` on the same weights:
the local engine and the server write the same 64 tokens.

Each chain ends in a deterministic pick (greedy, or top_k = 1 after the random-free XTC at
probability 1), so the tokens must be identical. Each case also differs from plain greedy,
so the sampler under test really changed the reply. The server, the model and the binary
come from tests/test_llama_server.py (GPTTERM_LLAMA_SERVER, scripts/llama-server.sh).
"""

from __future__ import annotations

import json

import pytest
from test_llama_server import LlamaServer, events, gptterm, server_binary

from gptterm import gguf_export, paths

pytestmark = pytest.mark.slow

PROMPT = "ROMEO:\nBut soft, what light"
TOKENS = "64"
XTC_LAST = 'order=["top_n_sigma", "xtc", "top_k"]'

CASES = {
    # DRY is a processor: it acts in greedy decoding (llama.cpp: before the top token).
    "dry": ("--preset", "greedy", "--set", "dry_multiplier=1.0"),
    "dry-long": ("--preset", "greedy", "--set", "dry_multiplier=0.5", "--set", "dry_base=2.0",
                 "--set", "dry_allowed_length=3", "--set", "dry_penalty_last_n=40"),
    # XTC at probability 1 never draws: the top token after it is fixed.
    "xtc": ("--preset", "random", "--set", "xtc_probability=1.0", "--set", "top_k=1",
            "--set", XTC_LAST),
    # top-n-sigma alone never moves the top token: XTC after it shows what it cut.
    "top-n-sigma": ("--preset", "random", "--set", "top_n_sigma=1.0", "--set",
                    "xtc_probability=1.0", "--set", "xtc_threshold=0.05", "--set", "top_k=1",
                    "--set", XTC_LAST),
}


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-samplers")
    model = gguf_export.write_gguf(paths.shipped_models_dir() / "shakespeare-mini",
                                   folder / "shakespeare-mini.gguf", "f32")
    server = LlamaServer(server_binary(), model, 256, folder / "server.log")
    yield server
    server.stop()


def token_ids(model: str, *flags: str) -> list[int]:
    evs = events(gptterm("generate", PROMPT, "--model", model, "--json", "--seed", "5",
                         "--max-new-tokens", TOKENS, "--set", "stop=[]", *flags))
    assert evs[-1]["event"] == "done", evs[-1]
    return [i for e in evs if e["event"] == "text" for i in e["token_ids"]]


@pytest.fixture(scope="module")
def greedy(shakespeare):
    return token_ids("shakespeare-mini", "--preset", "greedy")


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_local_engine_writes_what_llama_server_writes(shakespeare, greedy, case):
    local = token_ids("shakespeare-mini", *CASES[case])
    remote = token_ids(shakespeare.url, *CASES[case])
    assert len(local) == int(TOKENS)
    assert remote == local, json.dumps({"local": local, "remote": remote})
    assert local != greedy  # the sampler changed the reply


def test_top_n_sigma_changes_what_xtc_keeps(shakespeare):
    with_sigma = token_ids("shakespeare-mini", *CASES["top-n-sigma"])
    without = token_ids("shakespeare-mini", *CASES["top-n-sigma"][:2], *CASES["top-n-sigma"][4:])
    assert with_sigma != without
