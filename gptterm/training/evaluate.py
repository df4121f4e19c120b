"""Perplexity: mean next-token loss over consecutive context-sized windows, exponentiated."""

from __future__ import annotations

import math


def mean_loss(model, rows, device: str, autocast_dtype=None, batch_size: int = 8):
    """(mean cross-entropy per token, token count) over (inputs, targets) rows."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        # Rows of equal length batch together; the last (shorter) one runs alone.
        for i in range(0, len(rows), batch_size):
            group = rows[i:i + batch_size]
            for same in _same_length(group):
                x = torch.stack([r[0] for r in same]).to(device)
                y = torch.stack([r[1] for r in same]).to(device)
                with _autocast(device, autocast_dtype):
                    logits = model(input_ids=x).logits
                loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                       y.reshape(-1), reduction="sum")
                total += loss.item()
                count += y.numel()
    return (total / max(count, 1)), count


def _same_length(rows):
    groups: dict[int, list] = {}
    for row in rows:
        groups.setdefault(len(row[0]), []).append(row)
    return groups.values()


def _autocast(device: str, dtype):
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                          dtype=dtype)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
