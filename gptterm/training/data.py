"""Token streams: encode documents, cut them into blocks, and batch them per epoch.

The order of blocks in epoch `e` depends only on (seed, e), so a resumed run skips
exactly the batches it has already seen.
"""

from __future__ import annotations

from gptterm.training import TrainingError


def encode_documents(tokenizer, texts: list[str]):
    """One 1-D LongTensor: each text's tokens followed by eos (texts encoded in chunks)."""
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        chunks = _chunks(text)
        for encoded in tokenizer(chunks, add_special_tokens=False)["input_ids"]:
            ids.extend(encoded)
        if eos is not None:
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def _chunks(text: str, size: int = 20000) -> list[str]:
    # Cut long texts at line starts so the tokenizer sees paragraphs, not one huge string.
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.find("\n\n", end)
            end = len(text) if cut < 0 else cut + 2
        out.append(text[start:end])
        start = end
    return out


class Blocks:
    """Non-overlapping blocks of `block + 1` tokens (inputs plus the shifted targets)."""

    def __init__(self, ids, block: int, batch_size: int, seed: int):
        if len(ids) < 2:
            raise TrainingError("corpus too small: it encodes to fewer than 2 tokens")
        self.block = min(block, len(ids) - 1)
        self.ids = ids
        self.n_blocks = max(1, (len(ids) - 1) // self.block)
        self.batch_size = min(batch_size, self.n_blocks)
        self.seed = seed

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n_blocks // self.batch_size)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block

    def batch(self, epoch: int, index: int):
        """Batch `index` of epoch `epoch`: (inputs, targets), both [batch, block]."""
        import torch

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_blocks, generator=gen)
        picked = order[index * self.batch_size:(index + 1) * self.batch_size]
        rows = torch.stack([self.ids[i * self.block:i * self.block + self.block + 1]
                            for i in picked.tolist()])
        return rows[:, :-1], rows[:, 1:]


def eval_blocks(ids, block: int, max_tokens: int = 0):
    """Consecutive (inputs, targets) rows covering `ids` (the last one may be shorter)."""
    if max_tokens and len(ids) > max_tokens + 1:
        ids = ids[:max_tokens + 1]
    rows = []
    for start in range(0, len(ids) - 1, block):
        chunk = ids[start:start + block + 1]
        if len(chunk) >= 2:
            rows.append((chunk[:-1], chunk[1:]))
    return rows
