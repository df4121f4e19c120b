"""A candidate token's text reads as it would inside a reply, whatever the tokenizer."""

from transformers import AutoTokenizer

from gptterm import catalog
from gptterm.engine.detokenize import token_bytes, token_text


def tokenizer(name: str):
    return AutoTokenizer.from_pretrained(catalog.resolve(name).source, local_files_only=True)


def test_sentencepiece_pieces_keep_the_space_their_mark_stands_for():
    tok = tokenizer("ko-mini")
    ids = tok("우리 가족은 법률이")["input_ids"]
    texts = [token_text(tok, i) for i in ids]
    assert "".join(texts) == " 우리 가족은 법률이"  # decode alone gives "우리가족은법률이"
    assert [tok.decode([i]) for i in ids] != texts
    assert token_bytes(tok)[ids[-1]] == " 법률이".encode()


def test_byte_level_tokens_read_as_decode_gives_them():
    tok = tokenizer("shakespeare-mini")
    ids = tok(" the man")["input_ids"]
    assert [token_text(tok, i) for i in ids] == [tok.decode([i]) for i in ids] == [" the", " man"]
