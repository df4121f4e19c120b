"""The context window rule (engine/window.py) and the Decoder that slides it."""

from __future__ import annotations

import torch
from hypothesis import given, strategies as st
from transformers import AutoModelForCausalLM

from gptterm.engine import window
from gptterm.engine.cache import CacheEntry
from gptterm.engine.decode import Decoder


def test_max_new_tokens_is_capped_to_half_the_window():
    assert window.cap_max_new(300, 256) == 128
    assert window.cap_max_new(80, 256) == 80
    assert window.cap_max_new(0, 256) == 1


@given(total=st.integers(1, 5000), start=st.integers(0, 5000), n_ctx=st.integers(8, 1024),
       need=st.integers(0, 512))
def test_place_always_fits_and_keeps_the_start_while_it_can(total, start, n_ctx, need):
    need = min(need, n_ctx // 2)
    new = window.place(total, start, n_ctx, need)
    assert 0 <= new < total
    assert total - new + need <= n_ctx or new == total - 1  # room for what is needed
    if 0 <= start < total and total - start + need <= n_ctx:
        assert new == start  # the cached prefix stays usable
    elif new != start:
        assert total - new >= min(n_ctx // 2, n_ctx - need, total)  # half the window stays


def test_a_long_conversation_moves_the_window_rarely():
    """Replies of 80 tokens in a 256 window: a turn start moves the window at most 1 in 4."""
    n_ctx, max_new, total, start, moved = 256, 80, 0, 0, 0
    turns = 40
    for _ in range(turns):
        total += 9  # the prompt
        new = window.place(total, start, n_ctx, window.room_needed("sample", max_new))
        moved += new != start and start + new > 0
        start = new
        for _ in range(max_new):  # the reply slides the window itself when it fills
            total += 1
            start = window.place(total, start, n_ctx, need=0)
    assert moved <= turns // 4


def test_decoder_slides_when_the_window_fills(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    n_ctx = 32
    entry = CacheEntry()
    dec = Decoder(model, entry, "cpu", n_ctx)
    full = list(range(10, 40))  # 30 tokens
    logits, reused = dec.prefill(full, 0)
    assert reused == 0 and len(entry.ids) == 30
    for token in (5, 6, 7):
        logits = dec.advance(token)
    # 33 tokens do not fit 32: the window moved to keep the newest half.
    assert dec.slides == 1 and entry.offset == 33 - n_ctx // 2
    assert entry.ids == dec.full[entry.offset:]
    # And the logits are what a fresh prefill of that window gives.
    fresh = Decoder(model, CacheEntry(), "cpu", n_ctx)
    expected, _ = fresh.prefill(dec.full, entry.offset)
    assert torch.allclose(logits, expected, atol=1e-4)


def test_reuse_limit_recomputes_past_it(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    entry = CacheEntry()
    dec = Decoder(model, entry, "cpu", 64)
    dec.prefill(list(range(10, 30)))
    _, reused = dec.prefill(list(range(10, 35)), 0, reuse_limit=5)
    assert reused == 5 and entry.ids == list(range(10, 35))
    _, reused = dec.prefill(list(range(10, 40)), 3)  # another start: nothing reusable
    assert reused == 0 and entry.offset == 3
