"""Incremental detokenizer: token ids in, printable text out, never a split character.

Byte-level BPE (GPT-2) splits one Korean or Chinese character (3 bytes in UTF-8) over
several tokens; decoding them one by one would print U+FFFD. For byte-level tokenizers
we map tokens back to their bytes and feed an incremental UTF-8 decoder, which holds an
incomplete character until its last byte arrives. For other tokenizers (SentencePiece,
BERT word pieces) we decode a small window, as transformers' `TextStreamer` does, and
emit the new tail once it no longer ends in U+FFFD; the window starts a few tokens back
(in the prompt at first) so that decoders which strip a leading space see the same
context every time.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Sequence
from typing import Any

# CJK ideographs, kana, hangul and CJK punctuation: a BERT-style decode puts spaces
# between them that the original text never had.
_CJK = r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
_CJK_SPACES = re.compile(rf"(?<={_CJK}) +(?={_CJK})")

CONTEXT_TOKENS = 5
# A UTF-8 character has at most 4 bytes; non-byte-level tokenizers carry a split
# character only as single-byte fallback tokens (<0xE5>), so at most 4 tokens wait.
MAX_SPLIT_TOKENS = 4


def strip_cjk_spaces(text: str) -> str:
    return _CJK_SPACES.sub("", text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE vocabularies use it)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def _byte_level_table(tokenizer: Any) -> dict[str, int] | None:
    """The char -> byte table of a byte-level BPE tokenizer, or None for other kinds."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    return _byte_of_char()


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """The inverse of `bytes_to_unicode`, built once (it takes a quarter of a millisecond,
    and beam search makes a decoder per hypothesis per step). Callers only read it."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


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
        self._bytes = _byte_level_table(tokenizer)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.ids: list[int] = list(context[-CONTEXT_TOKENS:])
        self._prefix = 0  # window start
        self._read = len(self.ids)  # tokens already turned into emitted text

    def push(self, token_ids: Sequence[int]) -> str:
        """Add tokens; return the text that became printable ('' if none yet)."""
        if self._bytes is not None:
            return self._push_bytes(token_ids)
        self.ids.extend(token_ids)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is left, even if it is an incomplete character."""
        if self._bytes is not None:
            return self._utf8.decode(b"", final=True)
        return self._advance(final=True)

    def _push_bytes(self, token_ids: Sequence[int]) -> str:
        table = self._bytes
        out = []
        for piece in self._tok.convert_ids_to_tokens(list(token_ids)):
            if piece is None:
                continue
            if all(ch in table for ch in piece):
                out.append(self._utf8.decode(bytes(table[ch] for ch in piece)))
            else:  # an added token outside the byte alphabet: its text as is
                out.append(self._utf8.decode(b"", final=True) + piece)
        return "".join(out)

    def _decode(self, ids: Sequence[int]) -> str:
        text = self._tok.decode(ids, skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)
        return strip_cjk_spaces(text) if self._strip else text

    def _advance(self, final: bool) -> str:
        if self._read >= len(self.ids):
            return ""
        before = self._decode(self.ids[self._prefix:self._read])
        now = self._decode(self.ids[self._prefix:])
        waiting = now.endswith("\ufffd") and len(self.ids) - self._read < MAX_SPLIT_TOKENS
        if not final and (len(now) <= len(before) or waiting):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return now[len(before):]


SPACE_MARK = "\u2581"  # SentencePiece's word-start mark


def token_text(tokenizer: Any, token_id: int) -> str:
    """One token's own text as it reads inside a reply (what the inspector, the stage
    panel and step mode show for a candidate): `decode` of the token alone, with the
    leading space a SentencePiece piece stands for (`▁법률이` is " 법률이"; decode drops it)."""
    text = tokenizer.decode([token_id], skip_special_tokens=False,
                            clean_up_tokenization_spaces=False)
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str) and piece.startswith(SPACE_MARK) and not text.startswith(" "):
        text = " " + text
    return text


def token_bytes(tokenizer: Any) -> list[bytes]:
    """Each token id's bytes (UTF-8 for a tokenizer that is not byte-level): what the
    samplers that look at text (banned strings, DRY breakers) match against."""
    table = _byte_level_table(tokenizer)
    out = []
    for token_id in range(len(tokenizer)):
        piece = tokenizer.convert_ids_to_tokens(token_id)
        if table is not None and piece is not None and all(ch in table for ch in piece):
            out.append(bytes(table[ch] for ch in piece))
        else:  # an added token, or a SentencePiece/word-piece vocabulary: its text
            out.append(token_text(tokenizer, token_id).encode("utf-8"))
    return out
