"""Write a GPT-2 checkpoint folder as a GGUF file that llama.cpp's llama-server loads.

llama.cpp's own converter fails on gptterm's checkpoints (it wants an `n_ctx` key and a
pre-tokenizer hash it knows), so the file is written here with the `gguf` package:
GPT-2 architecture keys, the byte-level BPE tokenizer, and the tensors under the names
llama.cpp's gpt2 loader asks for. Tokenizers llama.cpp cannot run the same way (a
SentencePiece-style Unigram, a normalizer, a prefix space) are refused, not
approximated: a model that tokenizes differently there would write different text.

torch, safetensors and gguf load inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptterm.safefile import _umask

DTYPES = ("f32", "f16", "q8_0")
ARCH = "gpt2"
# llama.cpp's name for GPT-2's byte-level pre-tokenizer regex (llama-vocab.cpp).
PRE_TOKENIZER = "gpt-2"
# GELU variants that are GPT-2's tanh approximation, the one ggml computes.
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# q8_0 packs rows in blocks of this many values.
_Q8_BLOCK = 32


class ExportError(ValueError):
    """The checkpoint cannot be written as GGUF; the message is one line for the user."""


@dataclass(frozen=True)
class Vocab:
    """A byte-level BPE tokenizer as GGUF stores it: one entry per model vocabulary id."""

    tokens: list[str]
    types: list[int]        # gguf.TokenType values
    merges: list[str]       # "left right", in rank order
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None


@dataclass(frozen=True)
class Shape:
    """The GPT-2 hyperparameters the GGUF header carries."""

    n_ctx: int
    n_embd: int
    n_ff: int
    n_head: int
    n_layer: int
    vocab_size: int
    norm_eps: float
    tied: bool


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ExportError(f"{path}: not found (expected the model's {what})") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ExportError(f"{path}: cannot read the model's {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def _positive_int(config: dict, key: str, path: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ExportError(f"{path}: {key} must be a positive integer, got {value!r}")
    return value


def read_shape(config: dict[str, Any], path: Path) -> Shape:
    """The hyperparameters, after checking the model computes what llama.cpp's gpt2 does."""
    if config.get("model_type") != "gpt2":
        raise ExportError(f"{path}: model_type is {config.get('model_type')!r}; "
                          "export-gguf writes GPT-2 models only")
    act = config.get("activation_function", "gelu_new")
    if act not in _TANH_GELU:
        raise ExportError(f"{path}: activation_function {act!r} is not supported "
                          f"(llama.cpp's gpt2 uses the tanh GELU: {', '.join(_TANH_GELU)})")
    if config.get("scale_attn_by_inverse_layer_idx") or config.get("scale_attn_weights") is False:
        raise ExportError(f"{path}: attention scaling other than 1/sqrt(head size) is not "
                          "supported by llama.cpp's gpt2")
    n_embd = _positive_int(config, "n_embd", path)
    n_head = _positive_int(config, "n_head", path)
    if n_embd % n_head:
        raise ExportError(f"{path}: n_embd {n_embd} is not a multiple of n_head {n_head}")
    n_inner = config.get("n_inner")
    eps = config.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise ExportError(f"{path}: layer_norm_epsilon must be a positive number, got {eps!r}")
    return Shape(
        n_ctx=_positive_int(config, "n_positions", path),
        n_embd=n_embd,
        n_ff=_positive_int(config, "n_inner", path) if n_inner is not None else 4 * n_embd,
        n_head=n_head,
        n_layer=_positive_int(config, "n_layer", path),
        vocab_size=_positive_int(config, "vocab_size", path),
        norm_eps=float(eps),
        tied=config.get("tie_word_embeddings", True) is not False,
    )


def _is_byte_level(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "ByteLevel"


def _check_bpe(tok: dict[str, Any], path: Path) -> dict[str, Any]:
    """The tokenizer.json's BPE model, when llama.cpp's GPT-2 tokenizer reproduces it."""
    model = tok.get("model")
    if not isinstance(model, dict):
        raise ExportError(f"{path}: no tokenizer model (expected a \"model\" object)")
    kind = model.get("type")
    pre = tok.get("pre_tokenizer")
    if kind != "BPE":
        style = " (SentencePiece style)" if _uses_metaspace(pre) else ""
        raise ExportError(f"{path}: the tokenizer is a {kind} model{style}; export-gguf "
                          "writes GPT-2 byte-level BPE tokenizers only")
    if isinstance(pre, dict) and pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers") or []
        pre = parts[0] if len(parts) == 1 else None
    if not _is_byte_level(pre) or pre.get("use_regex", True) is not True:
        raise ExportError(f"{path}: the BPE tokenizer is not GPT-2 byte-level (its "
                          "pre_tokenizer differs); llama.cpp would split text differently")
    if pre.get("add_prefix_space"):
        raise ExportError(f"{path}: the tokenizer adds a prefix space, which llama.cpp's "
                          "GPT-2 tokenizer does not")
    if tok.get("normalizer") is not None:
        raise ExportError(f"{path}: the tokenizer has a normalizer, which llama.cpp's GPT-2 "
                          "tokenizer does not apply")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
            or model.get("byte_fallback") or model.get("dropout"):
        raise ExportError(f"{path}: the BPE model uses subword affixes, byte fallback or "
                          "dropout, which llama.cpp's GPT-2 tokenizer does not")
    return model


def _uses_metaspace(pre: Any) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "Sequence":
        return any(_uses_metaspace(p) for p in pre.get("pretokenizers") or [])
    return pre.get("type") == "Metaspace"


def _special_id(cfg: dict, key: str, ids: dict[str, int]) -> int | None:
    value = cfg.get(key)
    if isinstance(value, dict):  # an AddedToken written out in full
        value = value.get("content")
    return ids.get(value) if isinstance(value, str) else None


def read_vocab(folder: Path, vocab_size: int, config: dict[str, Any]) -> Vocab:
    """The folder's tokenizer.json (and tokenizer_config.json) as GGUF's vocabulary.

    Ids the tokenizer does not use, up to the model's vocab_size, are padding tokens
    (`[PAD<id>]`, type UNUSED), as llama.cpp's converter writes them.
    """
    import gguf

    path = folder / "tokenizer.json"
    tok = _read_json(path, "tokenizer (tokenizer.json)")
    model = _check_bpe(tok, path)
    try:
        ids: dict[str, int] = dict(model.get("vocab") or {})
        added: dict[int, dict] = {}
        for entry in tok.get("added_tokens") or []:
            ids[entry["content"]] = entry["id"]
            added[entry["id"]] = entry
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExportError(f"{path}: expected a vocab object and added_tokens entries with "
                          "content and id") from None
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
               for i in ids.values()):
        raise ExportError(f"{path}: token ids must be non-negative integers")
    if not ids or max(ids.values()) >= vocab_size:
        raise ExportError(f"{path}: token ids reach {max(ids.values(), default=-1)}, past the "
                          f"model's vocab_size {vocab_size}")
    by_id = {i: t for t, i in ids.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].get("special")
                         else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    cfg_path = folder / "tokenizer_config.json"
    cfg = _read_json(cfg_path, "tokenizer config") if cfg_path.exists() else {}
    bos = _special_id(cfg, "bos_token", ids)
    eos = _special_id(cfg, "eos_token", ids)
    bos = bos if bos is not None else _config_id(config, "bos_token_id", vocab_size)
    eos = eos if eos is not None else _config_id(config, "eos_token_id", vocab_size)
    return Vocab(tokens, [int(t) for t in types], merges, bos, eos,
                 _special_id(cfg, "unk_token", ids), _special_id(cfg, "pad_token", ids))


def _config_id(config: dict, key: str, vocab_size: int) -> int | None:
    value = config.get(key)
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size
    return value if ok else None


# HF GPT-2 names (without the "transformer." prefix) -> llama.cpp's, and whether the
# weight is a Conv1D, stored (in, out) where ggml wants (out, in).
_LAYER_TENSORS = {
    "ln_1.weight": ("attn_norm.weight", False), "ln_1.bias": ("attn_norm.bias", False),
    "attn.c_attn.weight": ("attn_qkv.weight", True), "attn.c_attn.bias": ("attn_qkv.bias", False),
    "attn.c_proj.weight": ("attn_output.weight", True),
    "attn.c_proj.bias": ("attn_output.bias", False),
    "ln_2.weight": ("ffn_norm.weight", False), "ln_2.bias": ("ffn_norm.bias", False),
    "mlp.c_fc.weight": ("ffn_up.weight", True), "mlp.c_fc.bias": ("ffn_up.bias", False),
    "mlp.c_proj.weight": ("ffn_down.weight", True), "mlp.c_proj.bias": ("ffn_down.bias", False),
}
_TOP_TENSORS = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}


def gguf_name(hf_name: str) -> tuple[str, bool] | None:
    """(llama.cpp tensor name, transpose?) for an HF GPT-2 tensor; None for buffers it
    does not use (attention masks)."""
    name = hf_name.removeprefix("transformer.")
    if name == "lm_head.weight":
        return "output.weight", False
    if name in _TOP_TENSORS:
        return _TOP_TENSORS[name], False
    if name.startswith("h."):
        block, _, rest = name[2:].partition(".")
        if block.isdigit() and rest in _LAYER_TENSORS:
            new, transpose = _LAYER_TENSORS[rest]
            return f"blk.{int(block)}.{new}", transpose
    if name.endswith((".attn.bias", ".attn.masked_bias")):
        return None
    raise ExportError(f"unexpected tensor {hf_name!r} in the checkpoint (not GPT-2's)")


def read_tensors(folder: Path, shape: Shape) -> dict[str, Any]:
    """llama.cpp name -> float32 numpy array, in ggml's (out, in) layout."""
    import torch
    from safetensors import safe_open

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise ExportError(f"{folder}: no model.safetensors (export-gguf reads safetensors "
                          "checkpoints, as `gptterm train` writes them)")
    out: dict[str, Any] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                mapped = gguf_name(key)
                if mapped is None:
                    continue
                name, transpose = mapped
                t = f.get_tensor(key).to(torch.float32)
                out[name] = (t.T if transpose else t).contiguous().numpy()
    if shape.tied or "output.weight" not in out:
        out.pop("output.weight", None)  # llama.cpp reuses token_embd, as HF does
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight",
                "output_norm.bias"}
    expected |= {f"blk.{i}.{new}" for i in range(shape.n_layer)
                 for new, _ in _LAYER_TENSORS.values()}
    missing = sorted(expected - out.keys())
    if missing:
        raise ExportError(f"{folder}: the checkpoint lacks {missing[0]} "
                          f"({len(missing)} tensors missing)")
    return out


def _file_type(dtype: str) -> int:
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]


def _encode(name: str, array: Any, dtype: str) -> tuple[Any, Any]:
    """(data, raw_dtype) for one tensor: vectors stay f32 (llama.cpp's converters do the
    same); matrices take the asked type, f16 where a row does not fill q8_0 blocks."""
    import gguf
    import numpy as np

    if array.ndim < 2 or dtype == "f32":
        return array.astype(np.float32), None
    if dtype == "q8_0" and array.shape[-1] % _Q8_BLOCK == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(array.astype(np.float32), qtype), qtype
    return array.astype(np.float16), None


def write_gguf(folder: Path, out: Path, dtype: str = "f32", name: str | None = None) -> Path:
    """Write the GPT-2 checkpoint in `folder` as GGUF at `out`, all at once: the file
    appears complete or not at all. Returns `out`.

    Raises ExportError (one line) when the model or its tokenizer cannot be expressed.
    """
    import gguf

    if dtype not in DTYPES:
        raise ExportError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    config_path = folder / "config.json"
    config = _read_json(config_path, "config")
    shape = read_shape(config, config_path)
    vocab = read_vocab(folder, shape.vocab_size, config)
    tensors = read_tensors(folder, shape)

    writer_tmp = _temp_beside(out)
    try:
        writer = gguf.GGUFWriter(str(writer_tmp), ARCH)
        writer.add_name(name or folder.name)
        writer.add_file_type(_file_type(dtype))
        writer.add_context_length(shape.n_ctx)
        writer.add_embedding_length(shape.n_embd)
        writer.add_feed_forward_length(shape.n_ff)
        writer.add_block_count(shape.n_layer)
        writer.add_head_count(shape.n_head)
        writer.add_layer_norm_eps(shape.norm_eps)
        _add_vocab(writer, vocab)
        for tname, array in tensors.items():
            data, raw = _encode(tname, array, dtype)
            writer.add_tensor(tname, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(writer_tmp, 0o666 & ~_umask())  # mkstemp's 0600 is not a new file's mode
        os.replace(writer_tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(writer_tmp)
        raise
    return out


def _add_vocab(writer: Any, vocab: Vocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    # gptterm sends a context as it is: llama.cpp must not put a BOS before it.
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    for setter, value in ((writer.add_bos_token_id, vocab.bos_id),
                          (writer.add_eos_token_id, vocab.eos_id),
                          (writer.add_unk_token_id, vocab.unk_id),
                          (writer.add_pad_token_id, vocab.pad_id)):
        if value is not None:
            setter(value)


def _temp_beside(out: Path) -> Path:
    """A fresh temporary path in `out`'s folder, so the final rename is atomic."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)
