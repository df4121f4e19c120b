"""Perplexity: mean next-token loss over consecutive context-sized windows, exponentiated."""

from __future__ import annotations

import math


def mean_loss(model, rows, device: str, autocast_dtype=None, batch_size: int = 8):
    """(mean cross-entropy per token, token count) over (inputs, targets) rows."""
    return mean_of(token_losses(model, rows, device, autocast_dtype, batch_size))


def token_losses(model, rows, device: str, autocast_dtype=None, batch_size: int = 8):
    """Each row's next-token cross-entropies (nats), one float32 CPU tensor per row, in
    row order: the numbers `mean_loss` averages, kept per token for `gptterm diff`."""
    import torch
    import torch.nn.functional as F

    model.eval()
    out = [None] * len(rows)
    with torch.no_grad():
        # Rows of equal length batch together; the last (shorter) one runs alone.
        for i in range(0, len(rows), batch_size):
            for same in _same_length(range(i, min(i + batch_size, len(rows))), rows):
                x = torch.stack([rows[j][0] for j in same]).to(device)
                y = torch.stack([rows[j][1] for j in same]).to(device)
                with _autocast(device, autocast_dtype):
                    logits = model(input_ids=x).logits
                losses = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                         y.reshape(-1), reduction="none")
                for j, row in zip(same, losses.view(y.shape).cpu()):
                    out[j] = row
    return out


def mean_of(losses) -> tuple[float, int]:
    """(mean, count) of per-row loss tensors, summed in float64 so long files lose nothing."""
    count = sum(len(row) for row in losses)
    total = sum(float(row.double().sum()) for row in losses)
    return total / max(count, 1), count


def _same_length(indices, rows):
    groups: dict[int, list] = {}
    for j in indices:
        groups.setdefault(len(rows[j][0]), []).append(j)
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
