"""The incremental detokenizer never splits a character and reassembles the exact text."""

from __future__ import annotations

from transformers import AutoTokenizer

from gptterm.engine.detokenize import IncrementalDecoder, strip_cjk_spaces

TEXTS = [
    "안녕하세요. 오늘은 날씨가 좋습니다.",
    "床前明月光，疑是地上霜。举头望明月。",
    "Mixed 한국어 and 中文 text, with émojis 🙂 too.",
]


def test_one_token_at_a_time_has_no_replacement_char(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for text in TEXTS:
        ids = tok(text).input_ids
        assert len(ids) > len(text) // 3  # many characters span several byte-level tokens
        detok = IncrementalDecoder(tok, tok("Prompt:").input_ids)
        deltas = [detok.push([i]) for i in ids] + [detok.flush()]
        assert all("\ufffd" not in d for d in deltas)
        assert "".join(deltas) == text == tok.decode(ids)


def test_split_character_waits_for_its_last_byte(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok("霜").input_ids  # not in the tiny vocab as one token: 3 byte tokens
    assert len(ids) > 1
    detok = IncrementalDecoder(tok)
    assert [detok.push([i]) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert detok.push(ids[-1:]) == "霜"


def test_strip_cjk_spaces_only_between_cjk():
    assert strip_cjk_spaces("床 前 明 月 光 ， 疑") == "床前明月光，疑"
    assert strip_cjk_spaces("hello world 你 好") == "hello world 你好"
    assert strip_cjk_spaces("안 녕") == "안녕"


def test_invalid_bytes_are_replaced_not_held_back(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lone = tok("霜").input_ids[0]  # a lead byte followed by another lead byte is invalid
    detok = IncrementalDecoder(tok)
    deltas = [detok.push([lone]) for _ in range(4)]
    assert "".join(deltas).count("\ufffd") >= 2  # emitted as they become invalid


def test_window_mode_for_non_byte_level_tokenizers(tmp_path):
    """A SentencePiece-style (Metaspace) tokenizer keeps its word-initial spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = "한국어 문장을 생성합니다. 오늘은 날씨가 좋습니다. " * 20
    sp = Tokenizer(models.BPE(unk_token="<unk>"))
    sp.pre_tokenizer = pre_tokenizers.Metaspace()
    sp.decoder = decoders.Metaspace()
    sp.train_from_iterator([text], trainers.BpeTrainer(vocab_size=120,
                                                       special_tokens=["<unk>", "</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=sp, unk_token="<unk>", eos_token="</s>")
    prompt = tok("한국어 문장을").input_ids
    reply = tok(" 생성합니다. 오늘은 날씨가").input_ids
    detok = IncrementalDecoder(tok, prompt)
    deltas = [detok.push([i]) for i in reply] + [detok.flush()]
    assert "".join(deltas) == tok.decode(prompt + reply)[len(tok.decode(prompt)):]
    assert "".join(deltas).startswith(" 생성")
