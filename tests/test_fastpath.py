"""The hand-written GPT-2 runner (engine/runner.py) against transformers: logits, greedy
tokens of `generate`, seeded sampling, the cache operations the strategies use, and the
transformers fallback behind the same interface."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from gptterm.engine import precision, sampling
from gptterm.engine.cache import CacheEntry
from gptterm.engine.decode import Decoder
from gptterm.engine.generation import sample_tokens
from gptterm.engine.runner import (
    GPT2Runner,
    HFRunner,
    matmul_attention,
    runner_for,
    sdpa_attention,
)
from gptterm.presets import Preset

PROMPTS = ["To be, or not to be", "The quick brown", "안녕하세요. 오늘은"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tok, AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def gpt2_124m():
    """The GPT-2 small shape (124M parameters) with random weights, as the benches use."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).eval()


def greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                             dtype=torch.long), do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, pad_token_id=0)
    return out[0, len(ids):].tolist()


def runner_greedy(model, ids, n):
    dec = Decoder(model, CacheEntry(), "cpu", model.config.n_positions)
    tokens = list(sample_tokens(dec, dec.prefill(ids)[0], preset=Preset(method="greedy"),
                                prompt_ids=ids, max_new_tokens=n, eos_token_id=None, seed=0))
    return tokens, dec


def test_the_fp32_runner_is_the_gpt2_runner_on_the_models_own_weights(tiny):
    _, model = tiny
    runner = runner_for(model)
    assert isinstance(runner, GPT2Runner) and runner_for(model) is runner
    # fp32 shares the model's tensors: no second copy of the weights.
    assert runner.wte.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_every_positions_logits_match_transformers(tiny):
    tok, model = tiny
    runner = runner_for(model)
    ids = torch.tensor([tok(PROMPTS[0] + " " + PROMPTS[1]).input_ids])
    with torch.no_grad():
        expected = model(ids).logits
    got = runner.forward(ids, runner.new_cache(), all_logits=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_prefill_in_pieces_equals_prefill_at_once(tiny):
    """The cache is reused across calls: the positions and the causal mask follow on."""
    tok, model = tiny
    runner = runner_for(model)
    ids = torch.tensor([tok(PROMPTS[0] + PROMPTS[2]).input_ids])
    whole = runner.forward(ids, runner.new_cache(), all_logits=True)
    cache = runner.new_cache(capacity=1)  # grows as it goes
    parts = [runner.forward(ids[:, a:b], cache, all_logits=True)
             for a, b in ((0, 3), (3, 4), (4, ids.shape[1]))]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-5)
    assert cache.length == ids.shape[1] and cache.hidden().shape == (ids.shape[1], 32)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_tokens_equal_transformers_generate_on_the_tiny_model(tiny, prompt):
    tok, model = tiny
    ids = tok(prompt).input_ids
    assert runner_greedy(model, ids, 30)[0] == greedy(model, ids, 30)


def test_greedy_tokens_equal_transformers_generate_on_the_124m_shape(gpt2_124m):
    ids = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290]
    assert runner_greedy(gpt2_124m, ids, 12)[0] == greedy(gpt2_124m, ids, 12)


def test_seeded_sampling_equals_the_same_draws_on_transformers_logits(tiny):
    """The engine's sampler fed by the runner draws what it draws fed by transformers."""
    tok, model = tiny
    preset = Preset(method="sample", temperature=0.9, top_k=40, top_p=0.95,
                    repetition_penalty=1.2)
    ids = tok(PROMPTS[0]).input_ids
    dec = Decoder(model, CacheEntry(), "cpu", 128)
    got = list(sample_tokens(dec, dec.prefill(ids)[0], preset=preset, prompt_ids=ids,
                             max_new_tokens=25, eos_token_id=0, seed=1234))
    chain = sampling.build_chain(preset, eos_token_id=0, prompt_len=len(ids))
    generator = sampling.make_generator(1234, "cpu")
    seq = list(ids)
    with torch.no_grad():
        for _ in range(25):
            logits = model(torch.tensor([seq])).logits[:, -1]
            scores = sampling.apply_chain(chain, torch.tensor([seq]), logits)
            seq.append(int(sampling.pick(scores, preset, generator)[0]))
    assert got == seq[len(ids):]


def test_fork_reorder_and_select_copy_rows_and_leave_the_source_alone(tiny):
    tok, model = tiny
    runner = runner_for(model)
    cache = runner.new_cache()
    runner.forward(torch.tensor([tok(PROMPTS[1]).input_ids]), cache)
    before = [layer.keys.clone() for layer in cache.layers]
    fork = cache.fork(3, room=4)
    runner.forward(torch.tensor([[5], [6], [7]]), fork)
    assert fork.batch == 3 and fork.length == cache.length + 1
    assert all(torch.equal(a, layer.keys) for a, layer in zip(before, cache.layers))
    fork.reorder(torch.tensor([2, 2, 0]))
    row = fork.select(1)  # was row 2: the prompt then token 7
    assert row.batch == 1 and torch.equal(row.layers[0].keys[0], fork.layers[0].keys[1])
    # The kept row continues as if the prompt, 7, 9 had been run from scratch.
    step = runner.forward(torch.tensor([[9]]), row)
    with torch.no_grad():
        full = model(torch.tensor([tok(PROMPTS[1]).input_ids + [7, 9]])).logits[:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)


def test_a_cache_never_grows_past_the_window(tiny):
    _, model = tiny
    runner = runner_for(model)
    cache = runner.new_cache()
    runner.forward(torch.zeros((1, 128), dtype=torch.long), cache)
    with pytest.raises(ValueError, match="window of 128"):
        runner.forward(torch.zeros((1, 1), dtype=torch.long), cache)


def test_the_transformers_fallback_runs_the_same_interface(tiny):
    """HFRunner (for models that are not GPT-2) gives the same tokens and cache behaviour,
    contrastive search included."""
    from gptterm.engine.strategies import contrastive_search

    tok, model = tiny
    hf = HFRunner(model)
    ids = tok(PROMPTS[0]).input_ids
    assert runner_greedy(hf, ids, 15)[0] == runner_greedy(model, ids, 15)[0]
    preset = Preset(method="contrastive", top_k=4, penalty_alpha=0.6)
    outs = []
    for runner in (hf, runner_for(model)):
        dec = Decoder(runner, CacheEntry(), "cpu", 128)
        logits, _ = dec.prefill(ids)
        outs.append(list(contrastive_search(dec, logits, preset=preset, max_new_tokens=10,
                                            eos_token_id=None, cancel=threading.Event())))
        assert dec.entry.hidden.shape[0] == len(ids) + 10
        dec.entry.crop(len(ids))
        assert dec.entry.past.get_seq_length() == len(ids)
    assert outs[0] == outs[1]


def test_the_fixed_shape_step_for_cuda_graphs_equals_the_plain_step(tiny_model_dir):
    """What a GPU captures as a CUDA graph (`_static_step`: attention over the whole
    window, masked past a position held in a tensor), run eagerly here: same logits,
    same cache, same greedy tokens, across a slide of the window too."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    plain, fixed = GPT2Runner(model), GPT2Runner(model)
    fixed.graphs = True  # on a CPU: the fixed-shape step without the capture
    ids = tok(PROMPTS[0]).input_ids
    a, b = plain.new_cache(), fixed.new_cache()
    assert b.capacity == 128  # the whole window up front
    pa, pb = plain.forward(torch.tensor([ids]), a), fixed.forward(torch.tensor([ids]), b)
    torch.testing.assert_close(pa, pb)
    for token in (5, 17, 3):
        step_a = plain.forward(torch.tensor([[token]]), a)
        step_b = fixed.forward(torch.tensor([[token]]), b)
        torch.testing.assert_close(step_a, step_b, atol=1e-5, rtol=1e-5)
    assert b.graph is not None and a.length == b.length == len(ids) + 3
    torch.testing.assert_close(a.hidden(), b.hidden(), atol=1e-5, rtol=1e-5)
    for layer_a, layer_b in zip(a.layers, b.layers):
        torch.testing.assert_close(layer_a.values, layer_b.values, atol=1e-5, rtol=1e-5)
    long_ids = (ids * 20)[:120]  # the reply slides the window: the decoder starts again
    tokens, dec = runner_greedy(fixed, long_ids, 30)
    assert dec.slides == 1 and tokens == runner_greedy(plain, long_ids, 30)[0]


def test_the_one_token_step_equals_the_general_forward_bit_for_bit(tiny):
    """`forward` of one token per row takes its own short path (`_step`); the general path
    (`all_logits`) is the reference: same logits, keys, values and hidden states, also for
    several rows (beam and contrastive search step them)."""
    tok, model = tiny
    runner = runner_for(model)
    ids = tok(PROMPTS[0]).input_ids
    for rows in (1, 3):
        step, general = runner.new_cache(rows), runner.new_cache(rows)
        prompt = torch.tensor([ids] * rows)
        runner.forward(prompt, step)
        runner.forward(prompt, general)
        for i in range(5):
            token = torch.tensor([[7 + i + r] for r in range(rows)])
            got = runner.forward(token, step)
            expected = runner.forward(token, general, all_logits=True)[:, -1]
            assert torch.equal(got, expected)
        assert step.length == general.length == len(ids) + 5
        n = step.length
        for a, b in zip(step.kv, general.kv):
            assert torch.equal(a[..., :n, :], b[..., :n, :])
        assert torch.equal(step.h[:, :n], general.h[:, :n])


def test_greedy_with_history_steps_equals_transformers_generate(tiny):
    """Plain greedy keeps no history; steps that read it (repetition penalty, no repeated
    n-grams) still see every token, prompt and reply, as transformers' processors do."""
    tok, model = tiny
    ids = tok(PROMPTS[1]).input_ids
    n = 24
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                             dtype=torch.long), do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, pad_token_id=0, repetition_penalty=1.3,
                             no_repeat_ngram_size=2)
    preset = Preset(method="greedy", repetition_penalty=1.3, no_repeat_ngram_size=2)
    dec = Decoder(model, CacheEntry(), "cpu", model.config.n_positions)
    got = list(sample_tokens(dec, dec.prefill(ids)[0], preset=preset, prompt_ids=ids,
                             max_new_tokens=n, eos_token_id=None, seed=0))
    assert got == out[0, len(ids):].tolist()


@pytest.mark.parametrize("rows,queries", [(1, 1), (3, 1), (1, 5)])
def test_the_gpu_attention_equals_sdpa(rows, queries):
    """A GPU attends for a few new positions with two matmuls (`matmul_attention`); it is
    SDPA's math, with and without a mask that hides later positions."""
    torch.manual_seed(0)
    q = torch.randn(rows, 4, queries, 16)
    k, v = torch.randn(rows, 4, 40, 16), torch.randn(rows, 4, 40, 16)
    mask = torch.ones(queries, 40, dtype=torch.bool).tril(40 - queries)
    mask[:, 30:] = False  # as the fixed-shape step hides the window past its position
    for m in (None, mask):
        torch.testing.assert_close(matmul_attention(q, k, v, 0.25, m),
                                   sdpa_attention(q, k, v, 0.25, m), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fixed", [False, True])
def test_greedy_with_the_gpu_attention_equals_transformers_generate(tiny, gpt2_124m, fixed):
    """The GPU's attention (and, `fixed`, its CUDA-graph step run eagerly) on a CPU: the
    greedy tokens of transformers' generate, on the tiny model and the 124M shape."""
    tok, model = tiny
    for m, ids, n in ((model, tok(PROMPTS[0]).input_ids, 30),
                      (gpt2_124m, [464, 2068, 7586, 21831, 18045, 625, 262, 16931], 10)):
        runner = GPT2Runner(m)
        runner.attend, runner.graphs = matmul_attention, fixed
        assert runner_greedy(runner, ids, n)[0] == greedy(m, ids, n)


def test_all_logits_of_one_token_on_the_graph_path_keep_their_position_axis(tiny):
    """`gptterm perplexity` on a GPU scores a one-token row with `all_logits`: that call
    must not take the CUDA-graph step, which returns only the last position ([B, V])."""
    _, model = tiny
    runner = GPT2Runner(model)
    runner.graphs = True  # on a CPU: the fixed-shape step without the capture
    cache = runner.new_cache()
    logits = runner.forward(torch.tensor([[5]]), cache, all_logits=True)
    assert logits.shape == (1, 1, model.config.vocab_size) and cache.length == 1
    rows = [([5], [7]), ([5, 9, 2], [9, 2, 4])]
    plain = GPT2Runner(model)
    torch.testing.assert_close(precision.mean_loss(runner, rows)[0],
                               precision.mean_loss(plain, rows)[0])
