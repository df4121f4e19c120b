"""A session's context as token ids: stored ids where the model made them, else tokenized.

A turn's ids are kept from the moment the model wrote them (or the engine tokenized a
prompt), so the next turn's context is the same token sequence the cache holds and its
prefix is reused whole. Re-tokenizing a reply from its text would often give other ids
(BPE merges across the old boundary), and the cache would miss from there on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from gptterm.protocol import Segment

# A segment that is not the first is tokenized after this anchor, which is then cut
# off: a tokenizer that marks the start of a text (SentencePiece's "▁" dummy prefix)
# then encodes the segment as it reads in the middle of the context.
_ANCHOR = "\n"


def encode_segment(tokenizer: Any, text: str, first: bool) -> list[int]:
    """Token ids for `text`, as it reads at the start of a context or after other text."""
    if not text:
        return []
    if first:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    anchor = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
    ids = tokenizer(_ANCHOR + text, add_special_tokens=False)["input_ids"]
    if anchor and ids[: len(anchor)] == anchor and len(ids) > len(anchor):
        return list(ids[len(anchor):])
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def context_ids(tokenizer: Any, segments: Sequence[Segment], vocab_size: int,
                start_token: int | None) -> tuple[list[int], tuple[tuple[int, ...], ...]]:
    """The whole context's ids, and the ids made for segments that came without any.

    Stored ids outside the vocabulary (a turn from another model under the same name)
    are not trusted: that segment is tokenized again. An empty context starts from
    `start_token`.

    Returns:
        (ids, tokenized): `tokenized` holds (segment index, ids) pairs, in order.
    """
    full: list[int] = []
    made: list[tuple[int, tuple[int, ...]]] = []
    for index, segment in enumerate(segments):
        ids = segment.token_ids
        if ids is None or (ids and (min(ids) < 0 or max(ids) >= vocab_size)):
            ids = tuple(encode_segment(tokenizer, segment.text, first=not full))
            made.append((index, ids))
        full.extend(ids)
    if not full:
        full = [start_token if start_token is not None else 0]
    return full, tuple(made)


def window_sha(ids: Sequence[int]) -> str:
    """A short hash of a window's token ids (stored with a turn; verify compares it)."""
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:16]
