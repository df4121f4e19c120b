"""The Decoder: runs tokens through the model on top of one session's KV cache.

Strategies (greedy/sample here, beam and contrastive in `strategies.py`) drive
generation through `prefill` and `advance`; the cache entry always matches the
window `full[entry.offset:]`. When a reply fills the window, `advance` moves the
window start by the rule in `window.py` and rebuilds the cache from the new start.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from transformers import DynamicCache

from gptterm.engine import window
from gptterm.engine.cache import CacheEntry, common_prefix


def cache_kwarg(model: Any) -> str:
    """`cache` in newer transformers 5.x, `past_key_values` before."""
    return _cache_kwarg(type(model))


@functools.cache
def _cache_kwarg(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Decoder:
    """One session's view of the model: prefill a context, then advance token by token.

    `full` is the whole token sequence (context, then the reply so far); the model
    sees `full[entry.offset:]`, at most `n_ctx` tokens. `slides` counts window moves
    made while writing.
    """

    def __init__(self, model: Any, entry: CacheEntry, device: str, n_ctx: int | None = None):
        self.model = model
        self.entry = entry
        self.device = device
        self.n_ctx = n_ctx
        self.full: list[int] = []
        self.slides = 0

    @torch.inference_mode()
    def prefill(self, full: list[int], start: int = 0,
                reuse_limit: int | None = None) -> tuple[torch.Tensor, int]:
        """Bring the cache to `full[start:]`, reusing the longest cached prefix.

        Args:
            full: the whole context.
            start: the window start; a cache built from another start is not reusable.
            reuse_limit: reuse at most this many cached tokens (None: no limit).

        Returns:
            (next-token logits [V] float32, number of tokens reused from the cache).
        """
        if self.entry.offset != start:
            self.entry.crop(0)
            self.entry.offset = start
        self.full = list(full)
        ids = self.full[start:]
        # Recompute at least the last token: its logits are what we need next.
        reused = min(common_prefix(self.entry.ids, ids), len(ids) - 1)
        if reuse_limit is not None:
            reused = max(0, min(reused, reuse_limit))
        self.entry.crop(reused)
        return self._forward(ids[reused:]), reused

    @torch.inference_mode()
    def advance(self, token_id: int) -> torch.Tensor:
        """Append one token; return the logits for the next one."""
        self.full.append(token_id)
        if self.n_ctx is not None and len(self.entry.ids) + 1 > self.n_ctx:
            # The window is full: move its start and rebuild the cache from there.
            start = window.place(len(self.full), self.entry.offset, self.n_ctx, need=0)
            self.entry.crop(0)
            self.entry.offset = start
            self.slides += 1
            return self._forward(self.full[start:])
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
