"""The modern samplers: logit_bias and its -inf ban equal transformers' processors bit for
bit; DRY equals a plain reading of its definition; XTC, top-n-sigma and banned_strings keep
their invariants on random inputs; banned strings never appear in a real reply."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.generation import logits_process as lp

from gptterm import presets
from gptterm.engine import sampling
from gptterm.presets import Preset, PresetError
from test_sampling_steps import batches, check, same

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
EMPTY = torch.zeros((1, 0), dtype=torch.long)


# --- logit_bias: transformers' processors, bit for bit ----------------------------------


@SETTINGS
@given(batches(), st.data())
def test_logit_bias_equals_sequence_bias(batch, data):
    history, logits = batch
    vocab = logits.shape[1]
    ids = data.draw(st.lists(st.integers(0, vocab - 1), unique=True, min_size=1, max_size=vocab))
    biases = {i: data.draw(st.one_of(st.sampled_from([0.0, 100.0, -100.0, 0.5]),
                                     st.floats(-100, 100))) for i in ids}
    check(sampling.logit_bias(biases),
          lp.SequenceBiasLogitsProcessor({(i,): b for i, b in biases.items()}), history, logits)


@SETTINGS
@given(batches(), st.data())
def test_minus_inf_bias_equals_no_bad_words(batch, data):
    history, logits = batch
    vocab = logits.shape[1]
    ids = data.draw(st.lists(st.integers(0, vocab - 1), unique=True, min_size=1, max_size=vocab))
    check(sampling.logit_bias(dict.fromkeys(ids, -math.inf)),
          lp.NoBadWordsLogitsProcessor([[i] for i in ids], eos_token_id=None), history, logits)


def test_logit_bias_keys_are_ids_or_every_token_of_a_string(tiny_tokenizer):
    word = tiny_tokenizer.encode(" hello world", add_special_tokens=False)
    assert len(word) >= 2
    got = sampling.logit_bias_ids((("7", 1.5), (" hello world", -2.0), ("7 ", 0.25)),
                                  tiny_tokenizer)
    expected = dict.fromkeys(word, -2.0)
    for i in tiny_tokenizer.encode("7 ", add_special_tokens=False):
        expected[i] = expected.get(i, 0.0) + 0.25
    expected[7] = expected.get(7, 0.0) + 1.5  # biases on one id add up, as in llama.cpp
    assert got == expected
    # Ids past the output layer are ignored, as llama.cpp drops them.
    out = sampling.logit_bias({2: 1.0, 99: -math.inf})(EMPTY, torch.zeros((1, 4)))
    assert out.tolist() == [[0.0, 0.0, 1.0, 0.0]]


@pytest.mark.parametrize("text, message", [
    ("logit_bias = { 7 = inf }", "logit_bias['7'] = inf: expected a number in [-100, 100] or -inf"),
    ("logit_bias = { 7 = 'x' }", "logit_bias['7'] = 'x': expected a number or -inf"),
    ("logit_bias = [1, 2]", "logit_bias = [1, 2]: expected a table of token id or string = bias"),
    ("dry_base = 0.5", "dry_base = 0.5: expected in [1, 100]"),
    ("dry_multiplier = -1", "dry_multiplier = -1.0: expected in [0, 100] (0 turns DRY off)"),
    ("dry_allowed_length = -1", "dry_allowed_length = -1: expected in [0, "),
    ("dry_penalty_last_n = -2", "dry_penalty_last_n = -2: expected in [-1, "),
    ("dry_sequence_breakers = ['']", "dry_sequence_breakers = ['']: expected strings of 1 to 40"),
    ("dry_sequence_breakers = 3", "dry_sequence_breakers = 3: expected a list of strings"),
    ("xtc_probability = 1.5", "xtc_probability = 1.5: expected in [0, 1] (0 turns XTC off)"),
    ("xtc_threshold = 0.6", "xtc_threshold = 0.6: expected in [0, 0.5]"),
    ("top_n_sigma = 1000", "top_n_sigma = 1000.0: expected at most 100 (<= 0 turns it off)"),
    ("banned_strings = ['a', '']", "banned_strings has an empty string: expected non-empty"),
    ("method = 'sample'\nxtc_probability = 0.5\norder = ['temperature']", "order lacks 'xtc'"),
])
def test_bad_values_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PresetError) as caught:
        presets.load_file(path)
    assert message in str(caught.value) and str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_fields_round_trip_through_values_and_toml(tmp_path):
    path = tmp_path / "modern.toml"
    path.write_text('method = "sample"\nlogit_bias = { "50256" = -inf, " the" = 2.5 }\n'
                    'banned_strings = ["Romeo"]\ndry_multiplier = 0.8\n'
                    'dry_sequence_breakers = ["\\n"]\nxtc_probability = 0.5\ntop_n_sigma = 1.0\n',
                    encoding="utf-8")
    p = presets.load_file(path)
    assert p.logit_bias == (("50256", -math.inf), (" the", 2.5))
    assert p.values()["logit_bias"] == {"50256": -math.inf, " the": 2.5}
    assert p.values()["banned_strings"] == ["Romeo"]
    assert p.replace(top_k=3).logit_bias == p.logit_bias  # values() goes back in
    assert presets.active_steps(p) == ["logit_bias", "banned_strings", "dry", "top_n_sigma",
                                       "xtc"]
    # The warpers act only when sampling; the processors in every method.
    assert presets.active_steps(p.replace(method="greedy")) == [
        "logit_bias", "banned_strings", "dry"]


def test_default_order_keeps_the_transformers_order_of_the_old_steps():
    old = ("repetition_penalty", "no_repeat_ngram", "min_new_tokens", "temperature", "top_k",
           "top_p", "min_p", "typical_p")
    assert tuple(s for s in presets.DEFAULT_ORDER if s in old) == old
    order = presets.DEFAULT_ORDER
    assert order[:2] == ("logit_bias", "banned_strings")
    assert order.index("repetition_penalty") < order.index("dry") < order.index("top_n_sigma") \
        < order.index("top_k") < order.index("xtc")


# --- DRY --------------------------------------------------------------------------------


def dry_reference(tokens, multiplier, base, allowed, last_n, breakers):
    """DRY from its definition, the slow way (single-token breakers only): the longest
    suffix of the window (never reaching past the latest breaker) that also ends earlier."""
    window = tokens if last_n < 0 else tokens[max(0, len(tokens) - last_n):] if last_n else []
    n = len(window)
    if n <= allowed:
        return {}
    since = next((i for i in range(n) if window[n - 1 - i] in breakers), n)
    if since < allowed:
        return {}
    out = {}
    for end in range(n - 1):
        length = 0
        while length < end + 1 and window[end - length] == window[n - 1 - length]:
            length += 1
        length = min(length, since)
        follower = window[end + 1]
        if length >= allowed and follower not in breakers:
            out[follower] = max(out.get(follower, 0), length)
    return {t: sampling._f32(sampling._f32(multiplier) * sampling._f32(base) ** (n_ - allowed))
            for t, n_ in out.items()}


@SETTINGS
@given(st.lists(st.integers(0, 3), max_size=40), st.floats(0.1, 5), st.floats(1.0, 3.0),
       st.integers(0, 4), st.sampled_from([-1, 0, 3, 8, 20]),
       st.sets(st.integers(0, 5), max_size=2))
def test_dry_equals_its_definition(tokens, multiplier, base, allowed, last_n, breakers):
    logits = torch.randn(1, 6)
    step = sampling.dry(multiplier, base, allowed, last_n, {b: {()} for b in breakers})
    history = torch.tensor([tokens], dtype=torch.long).reshape(1, len(tokens))
    before = logits.clone()
    out = step(history, logits)
    same(logits, before)
    penalty = dry_reference(tokens, multiplier, base, allowed, last_n, breakers)
    expected = logits.clone()
    for token, p in penalty.items():
        expected[0, token] -= p
    same(out, expected)
    assert (out <= logits).all()  # a penalty never raises a score


def test_dry_example_from_llama_cpp():
    """llama.cpp's comment: last tokens `a b c c b c y a b c` -> c, b, y may extend repeats
    of 3, 1 and 2 tokens; with allowed length 2 only c (1.75 ** 1) and y (1.75 ** 0) pay."""
    a, b, c, y = 0, 1, 2, 3
    history = torch.tensor([[a, b, c, c, b, c, y, a, b, c]])
    out = sampling.dry(1.0, 1.75, 2, -1, {})(history, torch.zeros((1, 5)))
    assert out.tolist() == [[0.0, 0.0, -1.75, -1.0, 0.0]]


def test_dry_multi_token_breaker_stops_a_repeat():
    # The breaker "x y" (head 4, tail (5,)) sits two tokens from the end: repeats stop there.
    history = torch.tensor([[0, 1, 2, 4, 5, 0, 1, 2, 4, 5, 0, 1]])
    free = sampling.dry(1.0, 2.0, 1, -1, {})(history, torch.zeros((1, 6)))
    broken = sampling.dry(1.0, 2.0, 1, -1, {4: {(5,)}})(history, torch.zeros((1, 6)))
    assert free[0, 2] == -(2.0 ** (7 - 1))  # "0 1 2 4 5 0 1" repeats 7 long before 2
    assert broken[0, 2] == -(2.0 ** (2 - 1))  # only "0 1" since the breaker counts


def test_dry_breakers_follow_llama_cpp():
    vocab = [b"a", b"\n", b"x\n", b":", b"ab", b" b", b"\"x"]
    heads = sampling.dry_breakers(("\n", "ab"), vocab, lambda s: [ord(ch) for ch in s])
    assert heads[1] == {()} and heads[2] == {()} and heads[4] == {()}
    assert heads[0] == {(ord("b"),)}  # "a" starts "ab": the rest must follow
    assert 3 not in heads and 5 not in heads


# --- top-n-sigma ------------------------------------------------------------------------


@SETTINGS
@given(batches(), st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.01, 10)))
def test_top_n_sigma_keeps_the_scores_within_n_deviations(batch, n):
    history, logits = batch
    out = sampling.top_n_sigma(n)(history, logits)
    for row, result in zip(logits, out):
        valid = row[row != -math.inf].double()
        floor = valid.max() - n * valid.std(unbiased=False)
        kept = result != -math.inf
        assert kept[row.argmax()]  # the top token always stays
        slack = 1e-9 * (1 + abs(floor))  # the deviation's rounding depends on the sum's order
        assert (kept >= (row.double() >= floor + slack)).all()
        assert (kept <= (row.double() >= floor - slack)).all()
        same(result[kept], row[kept])
    wider = sampling.top_n_sigma(n * 2)(history, logits)
    assert ((out != -math.inf) <= (wider != -math.inf)).all()  # a larger n keeps more


# --- XTC --------------------------------------------------------------------------------


@SETTINGS
@given(batches(min_vocab=2), st.floats(0.0, 0.5))
def test_xtc_at_probability_one_drops_all_top_choices_but_the_least(batch, threshold):
    history, logits = batch
    out = sampling.xtc(1.0, threshold, sampling.make_generator(0, "cpu"))(history, logits)
    for row, result in zip(logits, out):
        probs = torch.softmax(row, dim=-1)
        above = (probs >= threshold) & (row != -math.inf)  # removed tokens are no choices
        if above.sum() < 2:
            same(result, row)
            continue
        least = probs[above].min()
        dropped = result == -math.inf
        assert torch.equal(dropped & (row != -math.inf), above & (probs > least))
        same(result[~dropped], row[~dropped])


@SETTINGS
@given(batches(min_vocab=2), st.floats(0.01, 0.99), st.integers(0, 2**32))
def test_xtc_acts_with_its_probability_from_the_request_generator(batch, chance, seed):
    history, logits = batch
    always = sampling.xtc(1.0, 0.0, None)(history, logits)
    runs = [sampling.xtc(chance, 0.0, sampling.make_generator(seed, "cpu"))(history, logits)
            for _ in range(2)]
    same(runs[0], runs[1])  # one seed, one outcome
    for row, result, cut in zip(logits, runs[0], always):
        assert torch.equal(result, row) or torch.equal(result, cut)
    never = sampling.xtc(0.0, 0.0, None)(history, logits)
    same(never, logits)


def test_xtc_acts_about_as_often_as_asked():
    logits = torch.tensor([[2.0, 2.0, 1.0, -5.0]])
    g = sampling.make_generator(5, "cpu")
    step = sampling.xtc(0.3, 0.1, g)
    acted = sum(bool(step(EMPTY, logits)[0, 0] == -math.inf) for _ in range(2000))
    assert 450 < acted < 750  # 600 expected; the bounds are 6 standard deviations


# --- banned strings -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=3).map(lambda b: bytes(98 + x % 3 for x in b)),
                min_size=3, max_size=12, unique=True),
       st.lists(st.text("bcd", min_size=1, max_size=4), min_size=1, max_size=2),
       st.text("bcd", max_size=5), st.integers(0, 2**32))
def test_a_banned_string_never_appears_whatever_the_tokens(vocab, banned, prompt, seed):
    """A random walk over a small vocabulary of b/c/d byte strings: whichever tokens are
    drawn, the text written after the prompt never completes a banned string."""
    vocab = [b"b", b"c", b"d"] + vocab  # single bytes: some token is always allowed
    needles = [s.encode() for s in banned]
    step = sampling.banned_strings(tuple(banned), vocab)
    # The prompt as tokens of one byte each.
    history = [vocab.index(bytes([ch])) for ch in prompt.encode()]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(30):
        scores = step(torch.tensor([history], dtype=torch.long).reshape(1, len(history)),
                      torch.zeros((1, len(vocab))))
        allowed = (scores[0] != -math.inf).nonzero().flatten()
        if len(allowed) == 0:  # every token would complete a string: nothing to draw
            return
        history.append(allowed[torch.randint(len(allowed), (1,), generator=gen)].item())
        text = b"".join(vocab[i] for i in history)
        start = len(prompt)
        for needle in needles:
            # No occurrence may end after the prompt (one inside the prompt is not ours).
            at = text.find(needle, max(0, start - len(needle) + 1))
            assert at == -1, (text, needle, start)


def test_banned_strings_need_the_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        sampling.build_chain(Preset(banned_strings=("x",)), eos_token_id=0, prompt_len=0)


# --- through the engine -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def client():
    from gptterm import paths
    from gptterm.engine.client import EngineClient

    with EngineClient(device="cpu") as c:
        c.load(str(paths.shipped_models_dir() / "shakespeare-mini"))
        yield c


_ids = iter(range(10**6))


def reply(client, prompt, preset, seed, max_new=40):
    from gptterm.protocol import Generate, TextDelta

    events = []
    rid = f"r{next(_ids)}"
    client.generate(Generate(rid, rid, prompt, preset, max_new, seed), events.append)
    text, ids = "", []
    for e in events:
        if isinstance(e, TextDelta):
            text = e.text if e.replace else text + e.text
            ids = list(e.token_ids) if e.replace else ids + list(e.token_ids)
    return text, ids


def test_banned_strings_never_appear_in_sampled_replies(client):
    """What the model writes most often, banned: 40 seeds, never written, even split over
    tokens or started by the prompt ("ROMEO:\\nWhat" -> the reply may not finish "hat I")."""
    free = Preset(method="sample", temperature=1.0, top_k=20)
    texts = [reply(client, "ROMEO:\nWhat", free, seed)[0] for seed in range(40)]
    common = ["the", " I", "hat "]  # " I" and "the" are frequent; "hat " can complete "What"
    assert all(sum(w in t for t in texts) >= 5 for w in common[:2]), texts
    banned = free.replace(banned_strings=common)
    for seed in range(40):
        text, _ = reply(client, "ROMEO:\nWhat", banned, seed)
        assert text
        joined = "What" + text
        for word in common:
            assert word not in joined[max(0, len("What") - len(word) + 1):], (seed, word, text)


def test_banned_strings_and_logit_bias_in_greedy_and_beam(client):
    greedy = Preset(max_new_tokens=30)
    text, ids = reply(client, "ROMEO:\n", greedy, 1)
    word = text.split()[0]
    for method in (dict(), dict(method="beam", num_beams=3)):
        banned = greedy.replace(banned_strings=[word], **method)
        assert word not in reply(client, "ROMEO:\n", banned, 1)[0]
    biased = greedy.replace(logit_bias={str(ids[0]): -math.inf})
    assert reply(client, "ROMEO:\n", biased, 1)[1][0] != ids[0]


def test_a_stored_turn_keeps_the_modern_fields():
    """A turn stores its preset's values() as JSON: logit_bias (an object, -inf included)
    must come back as the same preset, or replay --verify could not re-run the turn."""
    import json

    from gptterm.store import records

    preset = Preset(method="sample").replace(
        logit_bias={"5": -math.inf, " the": 1.5}, banned_strings=["x y"], dry_multiplier=0.8,
        xtc_probability=0.5, top_n_sigma=1.0)
    stored = json.loads(json.dumps(preset.values()))
    assert records.is_flat_object(stored, lists=True, objects=True)
    stored.pop("name")
    assert presets.from_mapping(stored, name=preset.name) == preset
