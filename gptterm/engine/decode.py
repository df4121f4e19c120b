"""The Decoder: runs tokens through the model on top of one session's KV cache.

Strategies (greedy/sample here, beam and contrastive in `strategies.py`) drive
generation through `prefill` and `advance`; the cache entry always matches `ids`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from transformers import DynamicCache

from gptterm.engine.cache import CacheEntry, common_prefix


def cache_kwarg(model: Any) -> str:
    """`cache` in newer transformers 5.x, `past_key_values` before."""
    return _cache_kwarg(type(model))


@functools.cache
def _cache_kwarg(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Decoder:
    """One session's view of the model: prefill a context, then advance token by token."""

    def __init__(self, model: Any, entry: CacheEntry, device: str):
        self.model = model
        self.entry = entry
        self.device = device

    @torch.inference_mode()
    def prefill(self, ids: list[int]) -> tuple[torch.Tensor, int]:
        """Bring the cache to `ids`, reusing the longest cached prefix.

        Returns:
            (next-token logits [V] float32, number of tokens reused from the cache).
        """
        # Recompute at least the last token: its logits are what we need next.
        reused = min(common_prefix(self.entry.ids, ids), len(ids) - 1)
        self.entry.crop(reused)
        return self._forward(ids[reused:]), reused

    @torch.inference_mode()
    def advance(self, token_id: int) -> torch.Tensor:
        """Append one token; return the logits for the next one."""
        return self._forward([token_id])

    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        entry = self.entry
        if entry.past is None:
            entry.past = DynamicCache()
        input_ids = torch.tensor([new_ids], dtype=torch.long, device=self.device)
        # The DynamicCache grows in place. transformers 5.24 renamed the argument.
        out = self.model(input_ids=input_ids, **{cache_kwarg(self.model): entry.past},
                         use_cache=True, output_hidden_states=True, logits_to_keep=1)
        entry.ids.extend(new_ids)
        entry.add_hidden(out.hidden_states[-1][0])
        return out.logits[0, -1].float()
