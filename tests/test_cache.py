"""Session KV caches: prefix reuse bookkeeping, cropping, and the LRU memory budget."""

from __future__ import annotations

from transformers import AutoModelForCausalLM

from gptterm.engine.cache import CacheEntry, SessionCaches, common_prefix
from gptterm.engine.decode import Decoder


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def fill(model, caches, session, n):
    entry = caches.get(session)
    Decoder(model, entry, "cpu").prefill(list(range(10, 10 + n)))
    return entry


def test_lru_eviction_under_budget_keeps_the_active_session(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    caches = SessionCaches(budget_bytes=1 << 40)
    for name in ("a", "b", "c"):
        fill(model, caches, name, 40)
    one = caches.get("a").nbytes()
    assert one > 0
    caches.get("b")  # use order now: c (least recent), b, a
    caches.get("a")
    caches.budget_bytes = 2 * one
    assert caches.enforce_budget(keep="a") == ["c"]
    assert "a" in caches and "b" in caches and "c" not in caches
    caches.budget_bytes = one // 2  # even over budget, the session in use stays
    caches.enforce_budget(keep="a")
    assert "a" in caches and "b" not in caches


def test_crop_keeps_ids_cache_and_hidden_in_step(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    entry = CacheEntry()
    Decoder(model, entry, "cpu").prefill(list(range(10, 40)))
    entry.crop(12)
    assert len(entry.ids) == 12 and entry.past.get_seq_length() == 12
    assert entry.hidden.shape[0] == 12
    entry.crop(0)
    assert entry.ids == [] and entry.past is None and entry.hidden is None


