"""The engine on a GPU: greedy equals transformers on cuda, the CUDA-graph step equals the
plain one, seeded sampling, cache reuse, each precision, beam and contrastive.

Selected only by `pytest -m cuda` (pyproject's addopts leave them out otherwise);
bench/gpu_check.sh runs them on a lent GPU machine. Asked for on a machine without a GPU,
they fail, saying so: they never pass by skipping.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from gptterm.engine import precision
from gptterm.engine.cache import CacheEntry
from gptterm.engine.client import EngineClient
from gptterm.engine.decode import Decoder
from gptterm.engine.runner import GPT2Runner, runner_for
from gptterm.presets import Preset
from gptterm.protocol import Generate, TextDelta

pytestmark = pytest.mark.cuda

PROMPTS = ["To be, or not to be", "The quick brown", "안녕하세요. 오늘은"]


@pytest.fixture(scope="module", autouse=True)
def gpu():
    if not torch.cuda.is_available():
        pytest.fail("the cuda tests need a CUDA GPU (torch.cuda.is_available() is False); "
                    "run them on one: bash bench/gpu_check.sh")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tok, AutoModelForCausalLM.from_pretrained(tiny_model_dir).cuda().eval()


def reference(model, ids, n):
    x = torch.tensor([ids], device="cuda")
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                             max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    return out[0, len(ids):].tolist()


def run(client, prompt, preset, session, max_new=20, seed=None):
    events = []
    done = client.generate(Generate(session, session, prompt, preset, max_new, seed),
                           events.append)
    return done, [i for e in events if isinstance(e, TextDelta) for i in e.token_ids]


def test_engine_greedy_at_fp32_equals_transformers_on_cuda(tiny_model_dir, tiny):
    tok, model = tiny
    with EngineClient(device="cuda", precision="fp32") as client:
        loaded = client.load(str(tiny_model_dir), "cuda")
        assert loaded.device == "cuda" and loaded.precision == "fp32"
        for prompt in PROMPTS:
            _, ids = run(client, prompt, Preset(method="greedy"), prompt, 30)
            ref = reference(model, tok(prompt).input_ids, 30)
            if 0 in ref:  # the engine does not emit the end-of-text token
                ref = ref[: ref.index(0)]
            assert ids == ref


def test_graph_step_equals_plain_step_on_the_124m_shape():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).cuda().eval()
    ids = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290]
    plain = GPT2Runner(model)
    plain.graphs = False
    graphed = runner_for(model)
    assert graphed.graphs
    outs = []
    for runner in (plain, graphed):
        dec = Decoder(runner, CacheEntry(), "cuda", 1024)
        logits, _ = dec.prefill(ids)
        tokens = []
        for _ in range(16):
            tokens.append(int(logits.argmax()))
            logits = dec.advance(tokens[-1])
        outs.append(tokens)
        if runner is graphed:  # a captured CUDA graph replayed
            assert runner.graph_error == "" and dec.entry.past.graph is not None
            assert dec.entry.past.graph[1] is not None
    assert outs[0] == outs[1] == reference(model, ids, 16)


def test_seeded_sampling_repeats_on_cuda(tiny_model_dir):
    sample = Preset(method="sample", top_k=50, temperature=0.9)
    with EngineClient(device="cuda", precision="fp32") as client:
        client.load(str(tiny_model_dir), "cuda")
        _, a = run(client, "The sea", sample, "a", seed=7)
        _, b = run(client, "The sea", sample, "b", seed=7)
        _, c = run(client, "The sea", sample, "c", seed=8)
    assert a == b and a != c


def test_second_turn_reuses_the_cache_on_cuda(tiny):
    tok, model = tiny
    first = tok("Once upon a time there was").input_ids
    second = first + tok(" a little model that wrote").input_ids
    dec = Decoder(runner_for(model), CacheEntry(), "cuda", 128)
    dec.prefill(first)
    _, reused = dec.prefill(second)
    assert reused == len(first)
    step = dec.advance(7)
    with torch.no_grad():
        full = model(torch.tensor([second + [7]], device="cuda")).logits[0, -1]
    torch.testing.assert_close(step, full, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["fp16", "bf16", "int8"])
def test_each_precision_runs_or_says_why_in_one_line(tiny, name):
    _, model = tiny
    rows = precision.own_text(runner_for(model), 0, 128, tokens=200)
    try:
        runner = precision.build(model, name)
    except precision.PrecisionError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"precision {name}: this GPU")
        return
    base = precision.perplexity(runner_for(model), rows)
    assert abs(precision.perplexity(runner, rows) / base - 1) < precision.AUTO_TOLERANCE
    assert precision.decode_ms(runner, steps=4, repeats=1) > 0  # the graph path runs


@pytest.mark.parametrize("preset", [Preset(method="beam", num_beams=3),
                                    Preset(method="contrastive", top_k=4, penalty_alpha=0.6)])
def test_beam_and_contrastive_run_on_cuda(tiny_model_dir, preset):
    with EngineClient(device="cuda", precision="fp16") as client:
        client.load(str(tiny_model_dir), "cuda")
        done, ids = run(client, PROMPTS[0], preset, preset.method, 12)
    assert done.reason in ("length", "eos") and done.n_tokens > 0 and len(ids) > 0
