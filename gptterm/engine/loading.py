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
    runner: Any = None  # runner.py: what decodes (None: the fp32 runner of `model`)
    precision: str = "fp32"  # the runner's precision (precision.py)


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
    try:  # fp32: the runner makes any lower precision from it (with_precision)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True,
                                                     dtype=torch.float32)
    except Exception as exc:
        raise LoadError(f"{spec.name}: cannot load its weights: {first_line(exc)}") from None
    progress(0.9, f"moving to {dev}")
    model.to(dev).eval()
    config = model.config
    n_ctx = int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings",
                                                                  1024))
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else config.eos_token_id
    return LoadedModel(spec, model, tokenizer, dev, n_ctx, eos)


def with_precision(lm: LoadedModel, requested: str | None, threads: int,
                   progress: Callable[[float, str], None] = lambda f, m: None) -> LoadedModel:
    """Give `lm` its runner at `requested` (None: the config's precision, else the
    device's default); LoadError with one line when the machine cannot run it."""
    from gptterm.engine import precision

    start = lm.tokenizer.bos_token_id if lm.tokenizer.bos_token_id is not None \
        else lm.eos_token_id
    try:
        choice = precision.requested_precision(requested, lm.device)
        if choice == "auto":
            progress(0.92, "choosing a precision (measured once per model)")
        lm.runner = precision.resolve(lm.model, choice, model_dir=weights_dir(lm.spec),
                                      device=lm.device, threads=threads,
                                      start_token=start or 0, n_ctx=lm.n_ctx)
    except precision.PrecisionError as exc:
        raise LoadError(str(exc)) from None
    lm.precision = lm.runner.precision
    return lm


def weights_dir(spec: ModelSpec) -> str | None:
    """The folder holding the model's weight files (a hub model's cached snapshot)."""
    if spec.local:
        return spec.source
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec.source, local_files_only=True)
    except Exception:  # noqa: BLE001 - only a cache key: without it auto measures again
        return None
