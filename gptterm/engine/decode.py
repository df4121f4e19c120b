"""The Decoder: runs tokens through the model on top of one session's KV cache.

Strategies (greedy/sample here, beam and contrastive in `strategies.py`) drive
generation through `prefill` and `advance`; the cache entry always matches the
window `full[entry.offset:]`. When a reply fills the window, `advance` moves the
window start by the rule in `window.py` and rebuilds the cache from the new start.
The forward pass itself is the runner's (`runner.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from gptterm.engine import window
from gptterm.engine.cache import CacheEntry, common_prefix
from gptterm.engine.runner import runner_for


class Decoder:
    """One session's view of the model: prefill a context, then advance token by token.

    `model` is a runner (`runner.py`) or a transformers model (run by its fp32 runner).
    `full` is the whole token sequence (context, then the reply so far); the model
    sees `full[entry.offset:]`, at most `n_ctx` tokens. `slides` counts window moves
    made while writing.
    """

    def __init__(self, model: Any, entry: CacheEntry, device: str, n_ctx: int | None = None):
        self.runner = runner_for(model)
        self.model = model
        self.entry = entry
        self.device = device
        self.n_ctx = n_ctx
        self.full: list[int] = []
        self.slides = 0
        # One token's input, reused every step (no tensor built per token).
        self._one = torch.zeros((1, 1), dtype=torch.long, device=device)

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
        new = ids[reused:]
        return self._forward(torch.tensor([new], dtype=torch.long, device=self.device),
                             new), reused

    def advance(self, token_id: int) -> torch.Tensor:
        """Append one token; return the logits for the next one."""
        self.full.append(token_id)
        if self.n_ctx is not None and len(self.entry.ids) + 1 > self.n_ctx:
            # The window is full: move its start and rebuild the cache from there.
            start = window.place(len(self.full), self.entry.offset, self.n_ctx, need=0)
            self.entry.crop(0)
            self.entry.offset = start
            self.slides += 1
            ids = self.full[start:]
            return self._forward(torch.tensor([ids], dtype=torch.long, device=self.device), ids)
        self._one.fill_(token_id)
        return self._forward(self._one, [token_id])

    def _forward(self, input_ids: torch.Tensor, new_ids: list[int]) -> torch.Tensor:
        entry = self.entry
        if entry.past is None:
            # Room for as much again (capped at the window): the reply and the next turns
            # grow into it without copying the cache (a copy of a long one costs TTFT).
            entry.past = self.runner.new_cache(capacity=2 * (len(entry.ids) + len(new_ids)))
        logits = self.runner.forward(input_ids, entry.past)
        entry.ids.extend(new_ids)
        return logits[0]
