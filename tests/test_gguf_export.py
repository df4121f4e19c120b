"""`gptterm export-gguf`: the GGUF file read back with gguf's own reader (keys, tokenizer,
tensor names, shapes and values), and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptterm import paths
from gptterm.cli import main

SHAKESPEARE = paths.shipped_models_dir() / "shakespeare-mini"


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def tensors(reader: gguf.GGUFReader) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in reader.tensors}


def hf_weights(folder: Path) -> dict[str, np.ndarray]:
    return {k.removeprefix("transformer."): v.to(torch.float32).numpy()
            for k, v in load_file(str(folder / "model.safetensors")).items()}


@pytest.fixture(scope="module")
def shakespeare_f32(tmp_path_factory) -> gguf.GGUFReader:
    out = tmp_path_factory.mktemp("gguf") / "sm.gguf"
    assert main(["export-gguf", "shakespeare-mini", str(out)]) == 0
    return gguf.GGUFReader(out)


def test_header_carries_gpt2_shape_from_the_config(shakespeare_f32):
    config = json.loads((SHAKESPEARE / "config.json").read_text())
    r = shakespeare_f32
    assert field(r, "general.architecture") == "gpt2"
    assert field(r, "general.name") == "shakespeare-mini"
    assert field(r, "general.file_type") == gguf.LlamaFileType.ALL_F32
    assert field(r, "gpt2.context_length") == config["n_positions"] == 256
    assert field(r, "gpt2.embedding_length") == config["n_embd"]
    assert field(r, "gpt2.feed_forward_length") == 4 * config["n_embd"]
    assert field(r, "gpt2.block_count") == config["n_layer"]
    assert field(r, "gpt2.attention.head_count") == config["n_head"]
    assert field(r, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)


def test_tokenizer_is_the_byte_level_bpe_as_it_is(shakespeare_f32):
    tok = json.loads((SHAKESPEARE / "tokenizer.json").read_text())
    r = shakespeare_f32
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == 6000
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    assert tokens[0] == "<|endoftext|>" and tokens[300] == by_id[300]
    types = field(r, "tokenizer.ggml.token_type")
    assert types[0] == gguf.TokenType.CONTROL and types[300] == gguf.TokenType.NORMAL
    merges = field(r, "tokenizer.ggml.merges")
    assert merges == [" ".join(m) for m in tok["model"]["merges"]]
    assert field(r, "tokenizer.ggml.bos_token_id") == 0
    assert field(r, "tokenizer.ggml.eos_token_id") == 0
    assert field(r, "tokenizer.ggml.add_bos_token") is False


def test_tensors_have_llama_cpp_names_and_ggml_layout(shakespeare_f32):
    t = tensors(shakespeare_f32)
    per_block = {"attn_norm.weight", "attn_norm.bias", "attn_qkv.weight", "attn_qkv.bias",
                 "attn_output.weight", "attn_output.bias", "ffn_norm.weight", "ffn_norm.bias",
                 "ffn_up.weight", "ffn_up.bias", "ffn_down.weight", "ffn_down.bias"}
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight",
                "output_norm.bias"} | {f"blk.{i}.{n}" for i in range(4) for n in per_block}
    assert set(t) == expected  # tied embeddings: no output.weight, llama.cpp reuses token_embd
    # ggml lists dimensions innermost first: {n_embd, n_vocab}, {n_embd, 3 n_embd}, ...
    assert list(t["token_embd.weight"].shape) == [256, 6000]
    assert list(t["position_embd.weight"].shape) == [256, 256]
    assert list(t["blk.0.attn_qkv.weight"].shape) == [256, 768]
    assert list(t["blk.0.ffn_up.weight"].shape) == [256, 1024]
    assert list(t["blk.0.ffn_down.weight"].shape) == [1024, 256]
    assert all(x.tensor_type == gguf.GGMLQuantizationType.F32 for x in t.values())


def test_values_are_the_checkpoints_with_conv1d_transposed(shakespeare_f32):
    t = tensors(shakespeare_f32)
    hf = hf_weights(SHAKESPEARE)
    np.testing.assert_array_equal(t["token_embd.weight"].data, hf["wte.weight"])
    # HF's Conv1D stores (in, out); ggml's matrices are (out, in) in numpy order.
    np.testing.assert_array_equal(t["blk.2.attn_qkv.weight"].data, hf["h.2.attn.c_attn.weight"].T)
    np.testing.assert_array_equal(t["blk.3.ffn_down.weight"].data, hf["h.3.mlp.c_proj.weight"].T)
    np.testing.assert_array_equal(t["blk.1.attn_qkv.bias"].data, hf["h.1.attn.c_attn.bias"])


@pytest.mark.parametrize("dtype,qtype,tol", [("f16", gguf.GGMLQuantizationType.F16, 1e-3),
                                             ("q8_0", gguf.GGMLQuantizationType.Q8_0, 2e-2)])
def test_smaller_types_keep_vectors_f32_and_values_close(tmp_path, dtype, qtype, tol):
    out = tmp_path / f"sm-{dtype}.gguf"
    assert main(["export-gguf", "shakespeare-mini", str(out), "--dtype", dtype]) == 0
    t = tensors(gguf.GGUFReader(out))
    assert t["blk.0.ffn_up.weight"].tensor_type == qtype
    assert t["blk.0.ffn_up.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    hf = hf_weights(SHAKESPEARE)
    got = gguf.quants.dequantize(t["blk.0.ffn_up.weight"].data, qtype)
    want = hf["h.0.mlp.c_fc.weight"].T
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= tol * max(1.0, float(np.max(np.abs(want))))


def test_untied_head_and_padded_vocabulary(tmp_path):
    """A model whose vocab_size exceeds its tokenizer: the extra ids become [PAD<id>]
    (UNUSED), and an untied lm_head is written as `output`."""
    from tiny import build_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "m"
    build_tokenizer(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=416, n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    n_tok = len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])
    assert n_tok < 416
    out = tmp_path / "m.gguf"
    assert main(["export-gguf", str(folder), str(out)]) == 0
    r = gguf.GGUFReader(out)
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == 416 and tokens[415] == "[PAD415]"
    assert field(r, "tokenizer.ggml.token_type")[415] == gguf.TokenType.UNUSED
    assert field(r, "gpt2.context_length") == 64
    t = tensors(r)
    assert list(t["output.weight"].shape) == [32, 416]
    assert not np.array_equal(t["output.weight"].data, t["token_embd.weight"].data)


def test_sentencepiece_tokenizer_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "ko.gguf"
    assert main(["export-gguf", "ko-mini", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "Unigram" in err and "SentencePiece" in err and "byte-level BPE" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_file_is_kept_without_force(tmp_path, capsys):
    out = tmp_path / "x.gguf"
    out.write_bytes(b"mine")
    assert main(["export-gguf", "shakespeare-mini", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert main(["export-gguf", "shakespeare-mini", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"GGUF"


def test_a_model_llama_cpp_would_compute_differently_is_refused(tmp_path, tiny_model_dir,
                                                                 capsys):
    import shutil

    folder = tmp_path / "relu"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["activation_function"] = "relu"
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["export-gguf", str(folder), str(tmp_path / "r.gguf")]) == 2
    err = capsys.readouterr().err
    assert "activation_function 'relu' is not supported" in err
    assert not (tmp_path / "r.gguf").exists()


def test_out_must_be_a_gguf_name(tmp_path, capsys):
    assert main(["export-gguf", "shakespeare-mini", str(tmp_path / "model.bin")]) == 2
    assert "expected a file name ending in .gguf" in capsys.readouterr().err


@pytest.mark.parametrize("change,expected", [
    (lambda t: t.update(normalizer={"type": "NFC"}), "has a normalizer"),
    (lambda t: t["pre_tokenizer"].update(add_prefix_space=True), "adds a prefix space"),
    (lambda t: t.update(model=[]), "no tokenizer model"),
])
def test_a_bpe_tokenizer_llama_cpp_would_split_differently_is_refused(
        tmp_path, tiny_model_dir, capsys, change, expected):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    tok = json.loads((folder / "tokenizer.json").read_text())
    change(tok)
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    assert main(["export-gguf", str(folder), str(tmp_path / "m.gguf")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
