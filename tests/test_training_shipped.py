"""The models shipped in gptterm/models/ load by name offline and generate sensible text."""

from __future__ import annotations

import json
import re
import struct

import pytest

from gptterm import catalog, cli, paths
from gptterm.training.corpus import hangul_share, has_help_markup

COMMON_ENGLISH = {
    "the", "and", "to", "of", "i", "you", "my", "a", "that", "in", "is", "not", "me", "it",
    "with", "be", "your", "his", "this", "but", "he", "have", "for", "thou", "thy", "so",
    "will", "what", "all", "her", "do", "no", "shall", "by", "we", "if", "are", "our",
    "lord", "him", "on", "or", "as", "good", "come", "now", "sir", "o", "let", "they",
    "thee", "would", "at", "was", "from", "more", "well", "which", "then", "there", "how",
    "here", "than", "when", "love", "man", "their", "them", "may", "upon", "she", "an",
    "one", "say", "make", "know", "like", "did", "should", "go", "hath", "must", "see",
    "am", "yet", "us", "why", "out", "who", "some", "too", "where", "king", "give", "can",
    "these", "speak", "up", "time", "doth", "tis", "heaven", "death", "life", "night",
    "day", "sweet", "fair",
}
PROMPTS = {"shakespeare-mini": "To be, or not to be", "sonnets-mini": "Shall I compare thee",
           "ko-mini": "대한민국 헌법은"}
HANGUL = re.compile(r"[가-힣]")
LIMIT_BYTES = 30 * 1024 * 1024
OTHERS = ["sonnets-mini", "ko-mini"]  # shipped next to the default


def shipped_names() -> list[str]:
    return [spec.name for spec in catalog.shipped_models()]


def generate(name: str, seed: int = 0, n: int = 40) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = catalog.resolve(name).source
    tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True,
                                                 dtype=torch.float32)
    ids = tok(PROMPTS[name], return_tensors="pt")["input_ids"]
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=True, top_k=40, temperature=0.8,
                             pad_token_id=tok.eos_token_id)
    return tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True)


def test_default_model_is_shipped():
    assert catalog.DEFAULT_MODEL == "shakespeare-mini"
    assert "shakespeare-mini" in shipped_names()


def test_shakespeare_mini_continues_hamlet_with_real_words():
    text = generate("shakespeare-mini")
    words = re.findall(r"[a-z']+", text.lower())
    assert sum(w in COMMON_ENGLISH for w in words) >= 5, text


@pytest.mark.parametrize("name", OTHERS)
def test_other_shipped_models_generate_in_their_language(name):
    assert name in shipped_names()
    text = generate(name)
    if name == "sonnets-mini":
        assert sum(w in COMMON_ENGLISH for w in re.findall(r"[a-z']+", text.lower())) >= 5
    else:
        assert len(re.findall(r"[가-힣]", text)) >= 10, text


def test_tang_mini_is_no_longer_shipped():
    """Removed (word salad at validation perplexity 675); gptterm/models/README.md says why."""
    assert "tang-mini" not in catalog.SHIPPED
    assert not (paths.shipped_models_dir() / "tang-mini").exists()


# Everyday prompts and fixed seeds, sampled through the real engine with the default preset
# (what a newcomer gets): the shipped models must not leak their corpora's debris.
KO_PROMPTS = ["대한민국은", "옛날 옛적에", "오늘 날씨가", "우리 가족은"]
EN_PROMPTS = ["Shall I compare thee", "When I consider", "O thou"]
SEEDS = range(5)


def engine_samples(name: str, prompts: list[str], n: int = 60) -> list[str]:
    from gptterm.engine.client import EngineClient
    from gptterm.presets import DEFAULT_PRESET, load_presets
    from gptterm.protocol import Generate, TextDelta, new_request_id

    preset = load_presets()[0][DEFAULT_PRESET]
    out = []
    with EngineClient(device="cpu") as client:
        client.load(name, "cpu")
        for prompt in prompts:
            for seed in SEEDS:
                parts: list[str] = []
                command = Generate(new_request_id(), f"{prompt}/{seed}", prompt=prompt,
                                   preset=preset, max_new_tokens=n, seed=seed)
                done = client.generate(command, lambda e, parts=parts: parts.append(e.text)
                                       if isinstance(e, TextDelta) else None)
                assert done.reason in ("length", "eos"), done
                out.append("".join(parts))
    return out


def test_ko_mini_continues_everyday_prompts_in_korean_without_help_markup():
    replies = engine_samples("ko-mini", KO_PROMPTS)
    # At least 90% of every reply's letters are Hangul (the first model's replies were digit
    # runs or help pages, share 0 to 0.6; the second dropped `LibreOffice` into some).
    for text in replies:
        assert hangul_share(text) >= 0.9, text
        assert not has_help_markup(text), text
        assert sum(c.isdigit() for c in text) < 0.2 * len(text.replace(" ", "")), text
    assert min(len(HANGUL.findall(t)) for t in replies) >= 10, replies


def test_sonnets_mini_writes_no_line_numbers_or_editorial_markup():
    for text in engine_samples("sonnets-mini", EN_PROMPTS):
        assert not re.search(r"\d|[_~\[\]]", text), text
        assert sum(w in COMMON_ENGLISH for w in re.findall(r"[a-z']+", text.lower())) >= 5, text


def test_the_debris_checks_catch_what_the_old_models_wrote():
    """The checks above can fail: the old ko-mini's and sonnets-mini's replies trip them."""
    assert hangul_share(" 350957968922095076599994359994") == 0.0
    assert hangul_share("Title is: 대화 상자 편집기에서 콘트롤 만들기") < 0.9
    assert has_help_markup("Title is: 항목 찾기") and has_help_markup("$[officename] Calc")
    assert has_help_markup("도구 - 매크로 - 대화 상자 관리 를 선택한 다음")
    assert not has_help_markup("옛날 옛적에 한 마을에 - 아니, 두 마을에 - 살았다.")
    assert re.search(r"\d|[_~\[\]]", "141 780") and re.search(r"[_~]", "_I._Sure of Man_")


def _safetensors_dtypes(path) -> set[str]:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_shipped_models_are_small_half_precision_and_documented():
    root = paths.shipped_models_dir()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= LIMIT_BYTES
    for name in shipped_names():
        folder = root / name
        assert _safetensors_dtypes(folder / "model.safetensors") <= {"BF16", "F16"}
        assert not (folder / "checkpoint").exists()
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert "scripts/make_models.sh" in card and "gptterm " in card
        assert "License and attribution" in card and "val perplexity" in card.lower()


def test_perplexity_by_catalog_name(tmp_path, capsys):
    text = tmp_path / "hamlet.txt"
    text.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the "
                    "mind to suffer\nThe slings and arrows of outrageous fortune,\n",
                    encoding="utf-8")
    noise = tmp_path / "noise.txt"
    noise.write_text("Qzx vprk jjw, ulmf xxq bnt zzv. " * 4, encoding="utf-8")
    assert cli.main(["perplexity", "shakespeare-mini", str(text), "--json"]) == 0
    good = json.loads(capsys.readouterr().out)["perplexity"]
    assert cli.main(["perplexity", "shakespeare-mini", str(noise), "--json"]) == 0
    bad = json.loads(capsys.readouterr().out)["perplexity"]
    assert good < 200 < bad
