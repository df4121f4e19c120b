"""Model and tokenizer loading: device and dtype choice, offline errors that never hang.

Loading never reaches the network: a hub model must already be in the local
Hugging Face cache (`gptterm download NAME` puts it there on a connected machine).
That keeps an offline failure to well under a second, with one line saying what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gptterm.catalog import ModelSpec
from gptterm.errors import first_line


class LoadError(Exception):
    """A model cannot be loaded; the message is one line for the user."""


@dataclass
class LoadedModel:
    """A model ready for the engine thread."""

    spec: ModelSpec
    model: Any  # transformers PreTrainedModel, eval mode, on `device`
    tokenizer: Any
    device: str
    n_ctx: int
    eos_token_id: int | None


def quiet_transformers() -> None:
    """No progress bars, warnings or retries on stderr; never wait on the network."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise LoadError("--device cuda: no CUDA device is available here; use cpu or auto")
    if device not in ("cpu", "cuda"):
        raise LoadError(f"device {device!r}: expected cpu, cuda or auto")
    return device


def check_source(spec: ModelSpec) -> str:
    """Return the path or hub id to load from, or raise LoadError without touching the net."""
    if spec.local:
        path = Path(spec.source)
        if not path.exists():
            raise LoadError(f"model directory {path} does not exist")
        if not path.is_dir() or not (path / "config.json").is_file():
            raise LoadError(
                f"{path} has no config.json: expected a transformers checkpoint folder "
                "(config.json, weights, tokenizer files)"
            )
        return str(path)
    if not spec.available_offline():
        raise LoadError(
            f"model {spec.name!r} ({spec.source}) is not in the local Hugging Face cache and "
            f"gptterm does not download while loading: run `gptterm download {spec.name}` "
            "on a machine with network access, or pass --model DIR"
        )
    return spec.source


def load(spec: ModelSpec, device: str = "auto",
         progress: Callable[[float, str], None] = lambda f, m: None) -> LoadedModel:
    """Load `spec` for generation. Raises LoadError with a one-line message."""
    source = check_source(spec)
    progress(0.05, "importing torch")
    import torch

    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    progress(0.3, "loading tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, local_files_only=True, **spec.special_tokens
        )
    except Exception as exc:  # transformers raises many kinds; the user needs one line
        raise LoadError(f"{spec.name}: cannot load its tokenizer: {first_line(exc)}") from None
    progress(0.5, "loading weights")
    dtype = torch.float16 if dev == "cuda" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype)
    except Exception as exc:
        raise LoadError(f"{spec.name}: cannot load its weights: {first_line(exc)}") from None
    progress(0.9, f"moving to {dev}")
    model.to(dev).eval()
    config = model.config
    n_ctx = int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings",
                                                                  1024))
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else config.eos_token_id
    return LoadedModel(spec, model, tokenizer, dev, n_ctx, eos)
