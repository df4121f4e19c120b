"""Incremental detokenizer: token ids in, printable text out, never a split character.

Byte-level BPE splits one Korean or Chinese character (3 bytes in UTF-8) over several
tokens; decoding them one by one would print U+FFFD. Like transformers' `TextStreamer`
we decode a window and emit only the new tail once it no longer ends in U+FFFD. The
window starts a few tokens back (in the prompt at first) so that decoders which strip a
leading space (SentencePiece's `▁`) or join word pieces see the same context every time.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

# CJK ideographs, kana, hangul and CJK punctuation: a BERT-style decode puts spaces
# between them that the original text never had.
_CJK = r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
_CJK_SPACES = re.compile(rf"(?<={_CJK}) +(?={_CJK})")

CONTEXT_TOKENS = 5


def strip_cjk_spaces(text: str) -> str:
    return _CJK_SPACES.sub("", text)


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas.

    Args:
        tokenizer: a transformers tokenizer.
        context: token ids that come before the generated ones (the prompt tail).
        strip_cjk: remove spaces between CJK characters (BERT-style tokenizers).
    """

    def __init__(self, tokenizer: Any, context: Sequence[int] = (), strip_cjk: bool = False):
        self._tok = tokenizer
        self._strip = strip_cjk
        self.ids: list[int] = list(context[-CONTEXT_TOKENS:])
        self._prefix = 0  # window start
        self._read = len(self.ids)  # tokens already turned into emitted text
        self.n_context = len(self.ids)

    def _decode(self, ids: Sequence[int]) -> str:
        text = self._tok.decode(ids, skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)
        return strip_cjk_spaces(text) if self._strip else text

    def push(self, token_ids: Sequence[int]) -> str:
        """Add tokens; return the text that became printable ('' if none yet)."""
        self.ids.extend(token_ids)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is left, even if it is an incomplete character."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read >= len(self.ids):
            return ""
        before = self._decode(self.ids[self._prefix:self._read])
        now = self._decode(self.ids[self._prefix:])
        if not final and (len(now) <= len(before) or now.endswith("\ufffd")):
            return ""
        delta = now[len(before):]
        self._prefix, self._read = self._read, len(self.ids)
        return delta
