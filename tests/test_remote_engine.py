"""The remote engine against fake servers on 127.0.0.1 replaying each flavour's streams:
exact request bodies, events, finish reasons, usage, errors, cancel (the server sees the
client go away), lenient drops recorded in the turn, routing, the CLI end to end, and
replay --verify of a server's turn."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys

import pytest
from remote_fake import LLAMA_PROPS, FakeServer, llama_server, llama_stream, sse

from gptterm.cli import main
from gptterm.presets import Preset
from gptterm.protocol import (
    Backend, Cancel, CountTokens, Done, Failed, Generate, LoadModel, ModelFailed, ModelLoaded,
    Segment, Started, TextDelta, TokenCount,
)
from gptterm.remote.engine import RemoteEngine
from gptterm.remote.routing import RoutingEngine

WAIT = 30  # seconds: a generous deadline for any one event
GREEDY = Preset(name="greedy")
SAMPLE = Preset(name="s", method="sample", temperature=0.8, top_k=50, top_p=0.95,
                repetition_penalty=1.1)
def LLAMA_BACKEND(server):  # reads as the constant it stands for
    return Backend("llama.cpp", "b6500-abc1234", server.url, "shakespeare-mini.gguf")


VLLM_GETS = {"/version": {"version": "0.9.2"},
             "/v1/models": {"data": [{"id": "gpt2-xl", "max_model_len": 1024}]}}


class Events:
    """An emit that queues events, and waits on them."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue()
        self.seen: list = []

    def __call__(self, event):
        self.q.put(event)

    def until(self, kind, request_id=None):
        while True:
            event = self.q.get(timeout=WAIT)
            self.seen.append(event)
            if isinstance(event, kind) and (request_id is None
                                            or getattr(event, "request_id", None) == request_id):
                return event

    def reply(self, rid):
        end = self.until((Done, Failed), rid)
        mine = [e for e in self.seen if getattr(e, "request_id", None) == rid]
        return mine, end


def loaded(server, flavor="auto", **kw):
    events = Events()
    engine = RemoteEngine(events, server.url, flavor, **kw).start()
    engine.submit(LoadModel(server.url))
    event = events.until((ModelLoaded, ModelFailed))
    return engine, events, event


def run(engine, events, command):
    engine.submit(command)
    return events.reply(command.request_id)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- llama.cpp


def test_llama_cpp_request_body_events_and_probabilities():
    probs = [{"id": 100, "token": "Hello", "bytes": [72], "prob": 0.5,
              "top_probs": [{"id": 100, "token": "Hello", "bytes": [], "prob": 0.5},
                            {"id": 7, "token": "Hi", "bytes": [], "prob": 0.25}]}]
    first = {"index": 0, "content": "Hello", "tokens": [100], "stop": False,
             "tokens_predicted": 1, "tokens_evaluated": 9,
             "timings": {"cache_n": 4, "prompt_n": 5}, "completion_probabilities": probs}
    stream = [sse(first), llama_stream([" world"], "eos", cached=4, prompt=9)]
    with llama_server(stream) as server:
        engine, events, ready = loaded(server)
        assert ready == ModelLoaded(server.url, "llama.cpp", 1024, LLAMA_BACKEND(server))
        context = (Segment("To be,", (1, 2)), Segment(" or not"))
        mine, done = run(engine, events, Generate("r1", "s", preset=SAMPLE, seed=11,
                                                  max_new_tokens=20, inspect_top_k=2,
                                                  context=context))
        engine.close()
    assert server.posted("/completion") == [{
        "prompt": "To be, or not", "stream": True, "cache_prompt": True,
        "timings_per_token": True, "n_predict": 20, "temperature": 0.8, "top_k": 50,
        "top_p": 0.95, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.1, "stop": [],
        "seed": 11, "samplers": ["penalties", "temperature", "top_k", "top_p", "min_p", "typ_p"],
        "repeat_last_n": 1024, "presence_penalty": 0.0, "frequency_penalty": 0.0,
        "dynatemp_range": 0.0, "mirostat": 0, "min_keep": 0, "n_probs": 2,
        "post_sampling_probs": True}]
    started = next(e for e in mine if isinstance(e, Started))
    assert (started.prompt_tokens, started.reused_tokens, started.n_ctx) == (9, 4, 1024)
    assert started.backend == LLAMA_BACKEND(server)
    deltas = [e for e in mine if isinstance(e, TextDelta)]
    assert [(d.text, d.token_ids) for d in deltas] == [("Hello", (100,)), (" world", (100,))]
    assert deltas[0].alternatives == ((("Hello", 0.5), ("Hi", 0.25)),)
    assert deltas[0].distribution == "final"
    assert isinstance(done, Done) and done.reason == "eos" and done.n_tokens == 1
    assert (done.prompt_tokens, done.reused_tokens, done.max_new_tokens) == (9, 4, 20)


def test_greedy_asks_llama_cpp_for_the_models_raw_probabilities():
    entry = {"id": 5, "token": " a", "bytes": [], "logprob": -0.5,
             "top_logprobs": [{"id": 5, "token": " a", "bytes": [], "logprob": -0.5}]}
    stream = [sse({"content": " a", "tokens": [5], "stop": False, "tokens_evaluated": 3,
                   "completion_probabilities": [entry]}),
              llama_stream([], "limit", prompt=3)]
    with llama_server(stream) as server:
        engine, events, _ = loaded(server, "llama.cpp")
        mine, done = run(engine, events, Generate("g", "s", "x", GREEDY, 1, 3, inspect_top_k=1))
        engine.close()
    body = server.posted("/completion")[0]
    assert body["samplers"] == ["penalties", "top_k"] and body["top_k"] == 1
    assert body["post_sampling_probs"] is False and body["n_probs"] == 1
    delta = next(e for e in mine if isinstance(e, TextDelta))
    assert delta.distribution == "raw"
    assert delta.alternatives[0][0][0] == " a"
    assert delta.alternatives[0][0][1] == pytest.approx(0.6065, abs=1e-4)
    assert done.reason == "length"


@pytest.mark.parametrize("stop_type, reason", [("eos", "eos"), ("limit", "length"),
                                               ("word", "stop")])
def test_llama_cpp_finish_reasons(stop_type, reason):
    with llama_server([llama_stream(["a", "b"], stop_type)]) as server:
        engine, events, _ = loaded(server)
        _, done = run(engine, events, Generate("r", "s", "x", GREEDY, 5, 1))
        engine.close()
    assert done.reason == reason and done.n_tokens == 2


def test_a_character_split_across_network_writes_arrives_whole():
    data = llama_stream(["한", "글 €"])
    cut = data.index("한".encode()) + 1  # inside the first character
    with llama_server([data[:cut], data[cut:cut + 3], data[cut + 3:]]) as server:
        engine, events, _ = loaded(server)
        mine, done = run(engine, events, Generate("r", "s", "x", GREEDY, 5, 1))
        engine.close()
    assert "".join(e.text for e in mine if isinstance(e, TextDelta)) == "한글 €"
    assert done.reason == "eos"


# ---------------------------------------------------------------- OpenAI-compatible


def vllm_chunk(text, finish=None, stop_reason=None):
    return {"id": "c", "object": "text_completion", "model": "gpt2-xl",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                         "stop_reason": stop_reason}]}


def vllm_usage(cached=None):
    usage = {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "c", "object": "text_completion", "model": "gpt2-xl", "choices": [],
            "usage": usage}


@pytest.mark.parametrize("cached", [None, 4])
def test_vllm_request_body_and_usage_with_and_without_cached_tokens(cached):
    stream = sse(": ping", "\n\n", vllm_chunk("Hel"), vllm_chunk("lo", "length"),
                 vllm_usage(cached), "data: [DONE]\n\n")
    with FakeServer(gets=VLLM_GETS, posts={"/v1/completions": [stream]}) as server:
        engine, events, ready = loaded(server)
        assert ready.device == "vllm" and ready.backend.version == "0.9.2"
        mine, done = run(engine, events, Generate("r", "s", "Once", SAMPLE, 2, 5))
        engine.close()
    assert server.posted("/v1/completions") == [{
        "model": "gpt2-xl", "prompt": "Once", "stream": True,
        "stream_options": {"include_usage": True}, "n": 1, "max_tokens": 2,
        "temperature": 0.8, "top_k": 50, "top_p": 0.95, "min_p": 0.0,
        "repetition_penalty": 1.1, "min_tokens": 0, "stop": [], "seed": 5,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "include_stop_str_in_output": False,
        "ignore_eos": False}]
    started = next(e for e in mine if isinstance(e, Started))
    assert started.reused_tokens is None  # the stream says nothing of the cache at its start
    assert "".join(e.text for e in mine if isinstance(e, TextDelta)) == "Hello"
    assert (done.reason, done.n_tokens, done.prompt_tokens, done.reused_tokens) == (
        "length", 2, 6, cached)


@pytest.mark.parametrize("finish, stop_reason, reason", [
    ("stop", None, "eos"), ("stop", "\n\n", "stop"), ("length", None, "length")])
def test_openai_like_finish_reasons(finish, stop_reason, reason):
    stream = sse(vllm_chunk("a"), vllm_chunk("", finish, stop_reason), "data: [DONE]\n\n")
    with FakeServer(gets=VLLM_GETS, posts={"/v1/completions": [stream]}) as server:
        engine, events, _ = loaded(server, "vllm")
        _, done = run(engine, events, Generate("r", "s", "x", GREEDY, 5, 1))
        engine.close()
    assert done.reason == reason


def test_vllm_logprobs_fill_the_inspector_with_the_raw_distribution():
    chunk = vllm_chunk(" the")
    chunk["choices"][0]["logprobs"] = {"tokens": [" the"], "token_logprobs": [-0.1],
                                       "top_logprobs": [{" a": -2.0, " the": -0.1}]}
    stream = sse(chunk, vllm_chunk("", "length"), "data: [DONE]\n\n")
    with FakeServer(gets=VLLM_GETS, posts={"/v1/completions": [stream]}) as server:
        engine, events, _ = loaded(server)
        mine, _ = run(engine, events, Generate("r", "s", "x", GREEDY, 1, 1, inspect_top_k=2))
        engine.close()
    assert server.posted("/v1/completions")[0]["logprobs"] == 2
    delta = next(e for e in mine if isinstance(e, TextDelta))
    assert delta.distribution == "raw" and delta.token_ids == ()
    assert [t for t, _ in delta.alternatives[0]] == [" the", " a"]


def test_a_stop_string_is_cut_even_when_the_server_sends_it():
    stream = sse(vllm_chunk("one EN"), vllm_chunk("D two"), vllm_chunk("", "length"))
    with FakeServer(gets=VLLM_GETS, posts={"/v1/completions": [stream]}) as server:
        engine, events, _ = loaded(server)
        preset = Preset(stop=("END",))
        mine, done = run(engine, events, Generate("r", "s", "x", preset, 9, 1))
        engine.close()
    assert "".join(e.text for e in mine if isinstance(e, TextDelta)) == "one "
    assert done.reason == "stop"


# ---------------------------------------------------------------- TGI and Ollama


@pytest.mark.parametrize("finish, reason", [("eos_token", "eos"), ("length", "length"),
                                            ("stop_sequence", "stop")])
def test_tgi_stream_and_finish_reasons(finish, reason):
    def token(i, text, special=False):
        return {"index": i, "token": {"id": i, "text": text, "logprob": -1.0,
                                      "special": special}, "generated_text": None,
                "details": None}

    last = token(3, "</s>", special=True) | {"generated_text": "Hi there",
                                             "details": {"finish_reason": finish,
                                                         "generated_tokens": 3, "seed": 1}}
    stream = sse(token(1, "Hi"), token(2, " there"), last)
    gets = {"/info": {"model_id": "gpt2", "version": "2.4.0", "sha": "abcdef123",
                      "max_total_tokens": 1024}}
    with FakeServer(gets=gets, posts={"/generate_stream": [stream]}) as server:
        engine, events, ready = loaded(server)
        assert ready.backend == Backend("tgi", "2.4.0 abcdef1", server.url, "gpt2")
        mine, done = run(engine, events, Generate("r", "s", "x", SAMPLE, 3, 1))
        engine.close()
    assert server.posted("/generate_stream") == [{"inputs": "x", "parameters": {
        "max_new_tokens": 3, "temperature": 0.8, "top_k": 50, "top_p": 0.95,
        "repetition_penalty": 1.1, "stop": [], "seed": 1, "do_sample": True,
        "details": True, "return_full_text": False}}]
    assert [(e.text, e.token_ids) for e in mine if isinstance(e, TextDelta)] == [
        ("Hi", (1,)), (" there", (2,))]
    assert (done.reason, done.n_tokens, done.prompt_tokens) == (reason, 3, None)


@pytest.mark.parametrize("done_reason, reason", [("stop", "eos"), ("length", "length")])
def test_ollama_ndjson_stream(done_reason, reason):
    lines = [json.dumps({"model": "gpt2", "response": "Hi", "done": False}) + "\n",
             json.dumps({"model": "gpt2", "response": " there", "done": False}) + "\n",
             json.dumps({"model": "gpt2", "response": "", "done": True,
                         "done_reason": done_reason, "prompt_eval_count": 1,
                         "eval_count": 2}) + "\n"]
    data = "".join(lines).encode()
    gets = {"/api/version": {"version": "0.5.7"},
            "/api/tags": {"models": [{"name": "gpt2:latest"}]}}
    with FakeServer(gets=gets, posts={"/api/generate": [data[:10], data[10:]]}) as server:
        engine, events, ready = loaded(server)
        assert ready.device == "ollama"
        mine, done = run(engine, events, Generate("r", "s", "x", GREEDY, 2, 1))
        engine.close()
    assert server.posted("/api/generate") == [{
        "model": "gpt2:latest", "prompt": "x", "raw": True, "stream": True, "options": {
            "num_predict": 2, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
            "repeat_penalty": 1.0, "stop": [], "seed": 1, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "repeat_last_n": -1}}]
    assert "".join(e.text for e in mine if isinstance(e, TextDelta)) == "Hi there"
    assert (done.reason, done.n_tokens, done.reused_tokens) == (reason, 2, None)


@pytest.mark.parametrize("gets, flavor", [
    ({"/props": LLAMA_PROPS}, "llama.cpp"),
    (VLLM_GETS, "vllm"),
    ({"/get_server_info": {"version": "0.4.1"}, **VLLM_GETS}, "sglang"),
    ({"/info": {"model_id": "gpt2", "version": "2.4.0"}}, "tgi"),
    ({"/api/version": {"version": "0.5.7"}, "/api/tags": {"models": [{"name": "m"}]}},
     "ollama"),
    ({"/v1/models": {"data": [{"id": "m"}]}}, "openai"),
])
def test_auto_detects_each_flavor(gets, flavor):
    with FakeServer(gets=gets) as server:
        engine, _, ready = loaded(server)
        engine.close()
    assert isinstance(ready, ModelLoaded) and ready.device == flavor


# ---------------------------------------------------------------- failures


def test_an_unreachable_server_fails_at_load_in_one_line():
    url = f"http://127.0.0.1:{closed_port()}"
    events = Events()
    engine = RemoteEngine(events, url).start()
    engine.submit(LoadModel(url))
    failed = events.until(ModelFailed)
    engine.close()
    assert failed.error == f"cannot reach {url}: connection refused"


def test_errors_from_the_server_are_one_line():
    error_event = sse({"content": "a", "tokens": [1], "stop": False},
                      "event: error\ndata: {\"message\": \"out of\\nmemory\"}\n\n")
    with llama_server([error_event]) as server:
        engine, events, _ = loaded(server)
        mine, failed = run(engine, events, Generate("r", "s", "x", GREEDY, 5, 1))
        engine.close()
    assert isinstance(failed, Failed) and failed.error == "the server: out of memory"
    with FakeServer(gets={"/props": LLAMA_PROPS},
                    status={"/completion": (400, {"error": {"code": 400, "message":
                                                            "the prompt is too long"}})}
                    ) as server:
        engine, events, _ = loaded(server)
        _, failed = run(engine, events, Generate("r", "s", "x", GREEDY, 5, 1))
        engine.close()
    assert failed.error == f"{server.url}/completion: HTTP 400: the prompt is too long"


def test_a_stream_that_ends_without_its_end_is_a_failure():
    with llama_server([sse({"content": "a", "tokens": [1], "stop": False})]) as server:
        engine, events, _ = loaded(server)
        _, failed = run(engine, events, Generate("r", "s", "x", GREEDY, 5, 1))
        engine.close()
    assert isinstance(failed, Failed) and "closed the stream" in failed.error


def test_cancel_closes_the_stream_and_the_server_sees_it():
    with llama_server("forever") as server:
        engine, events, _ = loaded(server)
        engine.submit(Generate("r", "s", "x", GREEDY, 5000, 1))
        events.until(TextDelta, "r")
        engine.submit(Cancel("r"))
        done = events.until((Done, Failed), "r")
        assert server.disconnected.wait(WAIT)
        engine.close()
    assert isinstance(done, Done) and done.reason == "cancelled"


def test_an_unsupported_field_fails_before_anything_is_sent_and_lenient_drops_it():
    typical = Preset(name="typical", method="sample", typical_p=0.95)
    stream = sse(vllm_chunk("a", "length"), "data: [DONE]\n\n")
    with FakeServer(gets=VLLM_GETS, posts={"/v1/completions": [stream]}) as server:
        engine, events, _ = loaded(server)
        _, failed = run(engine, events, Generate("r", "s", "x", typical, 1, 1))
        engine.close()
        assert failed.error == "typical_p = 0.95 is not supported by vllm"
        assert server.posted("/v1/completions") == []
        engine, events, _ = loaded(server, lenient=True)
        mine, done = run(engine, events, Generate("r2", "s", "x", typical, 1, 1))
        engine.close()
    started = next(e for e in mine if isinstance(e, Started))
    assert started.dropped == ("typical_p = 0.95",) and done.reason == "length"
    assert "typical_p" not in server.posted("/v1/completions")[0]


def test_counts_come_from_the_servers_tokenizer():
    with llama_server([]) as server:
        engine, events, _ = loaded(server)
        engine.submit(CountTokens("c", "to be or", (Segment("a b "), Segment("c"))))
        count = events.until((TokenCount, Failed), "c")
        engine.close()
    assert count == TokenCount("c", 3, 3, 1024, server.url)
    assert server.posted("/tokenize")[0] == {"content": "to be or", "add_special": False}


# ---------------------------------------------------------------- routing


class FakeLocal:
    def __init__(self, emit):
        self.emit = emit
        self.commands = []
        self.started = False

    def start(self):
        self.started = True
        return self

    def submit(self, command):
        self.commands.append(command)
        if isinstance(command, LoadModel):
            self.emit(ModelLoaded(command.name, "cpu", 128))
        elif isinstance(command, Generate):
            self.emit(Started(command.request_id, 7, 3))
            self.emit(Done(command.request_id, "eos", 0, 0.1, 0.1))

    def close(self, timeout=5.0):
        pass


def test_routing_sends_each_model_to_its_engine_and_completes_done():
    events = Events()
    made = []
    routing = RoutingEngine(events, lambda emit: made.append(FakeLocal(emit)) or made[-1])
    local = made[0]
    assert not local.started  # nothing runs (no torch) until a local model loads
    with llama_server([llama_stream(["x"])]) as server:
        routing.submit(LoadModel(server.url))
        events.until(ModelLoaded)
        assert not local.started
        routing.submit(Generate("r1", "s", "x", GREEDY, 5, 1))
        assert events.until((Done, Failed), "r1").reason == "eos"
        routing.submit(LoadModel("shakespeare-mini"))
        events.until(ModelLoaded)
        routing.submit(Generate("r2", "s", "x", GREEDY, 5, 1))
        done = events.until(Done, "r2")
        routing.close()
    assert local.started and [type(c) for c in local.commands] == [LoadModel, Generate]
    assert (done.prompt_tokens, done.reused_tokens) == (7, 3)  # from its Started


def test_remote_names_from_config_and_their_errors(monkeypatch):
    from gptterm.config import BackendConfig

    events = Events()
    seen = []

    def remote(emit, url, flavor, model, api_key, lenient):
        seen.append((url, flavor, model, api_key, lenient))
        return FakeLocal(emit)

    backends = {"box": BackendConfig("box", "http://h:1", "vllm", "m", "BOX_KEY", False)}
    routing = RoutingEngine(events, FakeLocal, backends=backends, lenient=True,
                            remote_factory=remote)
    routing.submit(LoadModel("remote:nope"))
    assert events.until(ModelFailed).error == (
        "remote:nope: no [backends.nope] table in config.toml (known: box)")
    routing.submit(LoadModel("remote:box"))
    assert "BOX_KEY" in events.until(ModelFailed).error
    monkeypatch.setenv("BOX_KEY", "s3cret")
    routing.submit(LoadModel("remote:box"))
    events.until(ModelLoaded)
    routing.submit(LoadModel("http://user:pw@h:2"))
    assert "must not hold credentials" in events.until(ModelFailed).error
    assert seen == [("http://h:1", "vllm", "m", "s3cret", True)]


# ---------------------------------------------------------------- the command line


def test_generate_model_url_json_end_to_end(capsys):
    with llama_server([llama_stream(["To", " be"], "word", cached=2, prompt=4)]) as server:
        code = main(["generate", "--model", server.url, "--json", "--seed", "3", "Hamlet:"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event": "started", "prompt_tokens": 4, "reused_tokens": 2, "window_start": 0},
        {"event": "text", "text": "To", "token_ids": [100]},
        {"event": "text", "text": " be", "token_ids": [101]},
        {"event": "done", "reason": "stop", "n_tokens": 2,
         "seconds": json.loads(out.splitlines()[-1])["seconds"],
         "ttft": json.loads(out.splitlines()[-1])["ttft"], "max_new_tokens": 80,
         "prompt_tokens": 4, "reused_tokens": 2}]
    body = server.posted("/completion")[0]
    assert body["prompt"] == "Hamlet:" and body["seed"] == 3


def test_generate_with_an_unreachable_url_is_one_line_exit_2(capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["generate", "--model", url, "hi"]) == 2
    err = capsys.readouterr().err
    assert err == f"gptterm: cannot reach {url}: connection refused\n"


def write_config(tmp_path, text):
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    (folder / "config.toml").write_text(text, encoding="utf-8")


def test_generate_remote_name_sends_the_token_and_records_the_backend(tmp_path, monkeypatch,
                                                                     capsys):
    from gptterm.store import Store

    typical = Preset(name="t", method="sample", typical_p=0.95)
    stream = sse(vllm_chunk("Hi", "length"), vllm_usage(), "data: [DONE]\n\n")
    with FakeServer(gets=VLLM_GETS, posts={"/v1/completions": [stream, stream]}) as server:
        write_config(tmp_path, f'[backends.box]\nurl = "{server.url}"\nflavor = "vllm"\n'
                               'api_key_env = "BOX_KEY"\n')
        monkeypatch.setenv("BOX_KEY", "s3cret")
        (tmp_path / "config" / "presets").mkdir()
        (tmp_path / "config" / "presets" / "typical.toml").write_text(
            'method = "sample"\ntypical_p = 0.95\n')
        assert main(["generate", "--model", "remote:box", "--preset", "typical", "x"]) == 2
        assert capsys.readouterr().err == (
            "gptterm: typical_p = 0.95 is not supported by vllm\n")
        assert server.posted("/v1/completions") == []
        assert main(["generate", "--model", "remote:box", "--preset", "typical", "--lenient",
                     "--session", "s1", "x"]) == 0
        err = capsys.readouterr().err
        assert "typical_p = 0.95: not supported by vllm, dropped" in err
        assert server.headers[-1]["Authorization"] == "Bearer s3cret"
    assert typical.typical_p == 0.95
    with Store() as store:
        session = store.find_session("s1")
        turn = [t for t in store.turns(session.id) if t.role == "model"][-1]
    assert turn.model == "remote:box" and turn.text == "Hi"
    assert {k: turn.stats[k] for k in ("backend_flavor", "backend_version", "backend_url",
                                       "backend_model", "lenient_dropped", "reused_tokens",
                                       "prompt_tokens")} == {
        "backend_flavor": "vllm", "backend_version": "0.9.2", "backend_url": server.url,
        "backend_model": "gpt2-xl", "lenient_dropped": "typical_p = 0.95",
        "reused_tokens": None, "prompt_tokens": 6}


def test_a_remote_only_run_never_imports_torch():
    with llama_server([llama_stream(["a"])]) as server:
        code = ("import sys; from gptterm.cli import main; "
                f"rc = main(['generate', '--model', {server.url!r}, 'x']); "
                "print(rc, 'torch' in sys.modules)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
    assert result.stdout.splitlines()[-1] == "0 False", result.stderr


# ---------------------------------------------------------------- replay --verify


def test_replay_verify_reruns_on_the_same_server_version_only(capsys):
    from gptterm import replay
    from gptterm.store import Store

    stream = llama_stream(["To", " be"])
    with llama_server([stream]) as server:
        assert main(["generate", "--model", server.url, "--session", "v", "--seed", "5",
                     "x"]) == 0
        with Store() as store:
            turns = store.turns(store.find_session("v").id)
        with replay.EngineRunner(device="cpu") as runner:
            checks = list(replay.verify(turns, runner))
        assert [c.outcome for c in checks] == ["identical"]
        assert checks[0].line().endswith("identical (2 tokens)")
        assert server.posted("/completion")[1]["seed"] == 5  # the same request again
        server.gets["/props"] = {**LLAMA_PROPS, "model_path": "/m/other.gguf"}
        with replay.EngineRunner(device="cpu") as runner:
            other = next(replay.verify(turns, runner))
        server.gets["/props"] = {**LLAMA_PROPS, "build_info": "b7000-new"}
        with replay.EngineRunner(device="cpu") as runner:
            check = next(replay.verify(turns, runner))
    assert other.outcome == "unverifiable" and other.detail == (
        "cannot verify here: the turn was written by model 'shakespeare-mini.gguf', this "
        "server serves 'other.gguf'")
    assert check.outcome == "unverifiable" and check.detail == (
        "cannot verify here: the turn was written by llama.cpp b6500-abc1234, this server "
        "is llama.cpp b7000-new")
    with replay.EngineRunner(device="cpu") as runner:  # the server is gone
        check = next(replay.verify(turns, runner))
    assert check.outcome == "unverifiable"
    assert check.detail.startswith(f"cannot verify here: cannot reach {server.url}")


def test_models_lists_the_configured_servers_and_whether_each_answers(tmp_path, capsys):
    dead = f"http://127.0.0.1:{closed_port()}"
    with llama_server([]) as server:
        write_config(tmp_path, f'[backends.box]\nurl = "{server.url}"\n'
                               f'[backends.gone]\nurl = "{dead}"\nflavor = "vllm"\n')
        assert main(["models"]) == 0
        out = capsys.readouterr().out
        assert main(["models", "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    table = out[out.index("SERVER"):].splitlines()
    assert table[1].split() == ["remote:box", server.url, "yes:", "llama.cpp", "b6500-abc1234"]
    assert table[2].split()[:4] == ["remote:gone", dead, "no:", "cannot"]
    box, gone = lines[-2:]
    assert box == {"name": "remote:box", "source": server.url, "language": "?",
                   "description": f"llama.cpp b6500-abc1234 at {server.url}",
                   "available": True, "n_ctx": 1024, "flavor": "llama.cpp",
                   "version": "b6500-abc1234"}
    assert gone["available"] is False and gone["description"] == (
        f"cannot reach {dead}: connection refused")


def test_a_cancelled_remote_turn_is_compared_up_to_where_it_stopped(tmp_path):
    from gptterm import replay
    from gptterm.recorder import TurnRecorder, open_session
    from gptterm.store import Store

    with llama_server([llama_stream(["To", " be", " or"])]) as server:
        store = Store(tmp_path / "s.db")
        sid = open_session(store, "c")
        recorder = TurnRecorder(store, sid, server.url, GREEDY, seed=1)
        rid = recorder.start("x").request_id
        backend = LLAMA_BACKEND(server)
        recorder.on_event(Started(rid, 0, None, max_new_tokens=80, backend=backend))
        recorder.on_event(TextDelta(rid, "To b"))  # no ids: text is what is compared
        recorder.on_event(Done(rid, "cancelled", 1, 0.1, 0.1))
        turns = store.turns(sid)
        with replay.EngineRunner(device="cpu") as runner:
            check = next(replay.verify(turns, runner))
        store.close()
    assert check.outcome == "identical", check.detail
    assert server.posted("/completion")[0]["n_predict"] == 80  # not cut to the stored ids
    assert turns[-1].stats["backend_url"] == server.url


def test_a_new_load_or_a_cancel_before_the_start_ends_a_reply_as_cancelled():
    with llama_server("forever") as server:
        engine, events, _ = loaded(server)
        engine.submit(Cancel("early"))
        _, done = run(engine, events, Generate("early", "s", "x", GREEDY, 5, 1))
        assert done == Done("early", "cancelled", 0, 0.0, 0.0)
        engine.submit(Generate("r", "s", "x", GREEDY, 5000, 1))
        events.until(TextDelta, "r")
        engine.submit(LoadModel(server.url))
        done = events.until((Done, Failed), "r")
        assert isinstance(events.until((ModelLoaded, ModelFailed)), ModelLoaded)
        assert server.disconnected.wait(WAIT)
        engine.close()
    assert isinstance(done, Done) and done.reason == "cancelled"


def test_a_context_longer_than_the_servers_window_is_cut_by_the_window_rule():
    """n_ctx 16 and 4 new tokens: the window moves to keep the newest 8 tokens, then stays
    put while the next turn fits (the server's cache keeps its prefix); a pinned memory
    stays at the start."""
    words = " ".join(f"w{i}" for i in range(30))
    more = words + " w30 w31"
    streams = [llama_stream(["x"]) for _ in range(4)]
    with llama_server(streams, n_ctx=16) as server:
        engine, events, _ = loaded(server)
        first, _ = run(engine, events, Generate("a", "s", words, GREEDY, 4, 1))
        second, _ = run(engine, events, Generate("b", "s", more, GREEDY, 4, 1))
        short, _ = run(engine, events, Generate("c", "t", "w1 w2", GREEDY, 40, 1))
        memory = (Segment("w90 w91"), Segment(" " + words))
        run(engine, events, Generate("d", "u", preset=GREEDY, max_new_tokens=4,
                                     seed=1, context=memory, pinned_segments=1))
        engine.close()
    prompts = [body["prompt"] for body in server.posted("/completion")]
    assert prompts[0] == list(range(22, 30)) and prompts[1] == list(range(22, 32))
    assert prompts[2] == "w1 w2"  # it fits: sent as text, max_new capped to half the window
    assert prompts[3] == [90, 91] + list(range(23, 30))  # the rest keeps half of 14
    started = [next(e for e in r if isinstance(e, Started)) for r in (first, second, short)]
    assert [(s.window_start, s.dropped_tokens) for s in started] == [(22, 22), (22, 0), (0, 0)]
    assert (started[2].max_new_tokens, started[2].requested_max_new_tokens) == (8, 40)
    assert server.posted("/completion")[2]["n_predict"] == 8
