"""The model catalog: known models, where each loads from, and its tokenizer quirks.

Stdlib only (no torch): the CLI and the UI list models without loading anything.
Three kinds, listed in this order by `all_models`: the models shipped with gptterm, the
folders the user trained, finetuned or loaded (`local_models`; named by their absolute
path), and hub models.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gptterm import local_models, paths

DEFAULT_MODEL = "shakespeare-mini"


@dataclass(frozen=True)
class ModelSpec:
    """One loadable model.

    `source` is a hub id, or a directory when `local` is True. `special_tokens`
    fixes tokenizers that ship without them (KoGPT2); `strip_cjk_spaces` removes
    the spaces a BERT-style decode puts between CJK characters; `turn_separator`
    overrides what starts a new prompt after text (default: a newline).
    """

    name: str
    source: str
    language: str = "en"
    description: str = ""
    local: bool = False
    special_tokens: dict[str, str] = field(default_factory=dict)
    strip_cjk_spaces: bool = False
    turn_separator: str | None = None  # None: a newline (see recorder.separator_for)

    @property
    def label(self) -> str:
        """A short name for messages: the name, or a folder's own name when the name is
        the folder's whole path (a remembered local model)."""
        if self.local and self.name == self.source:
            return Path(self.source).name or self.name
        return self.name

    @property
    def where(self) -> str:
        return self.source if self.local else f"hub:{self.source}"

    def available_offline(self) -> bool:
        """Whether loading needs no network right now."""
        if self.local:
            return (Path(self.source) / "config.json").is_file()
        return hub_cached(self.source)


_KOGPT2_SPECIALS = {
    "bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": "<mask>",
}

HUB_MODELS = (
    ModelSpec("gpt2", "gpt2", "en", "OpenAI GPT-2 small, 124M"),
    ModelSpec("distilgpt2", "distilgpt2", "en", "Distilled GPT-2, 82M"),
    ModelSpec("gpt2-medium", "gpt2-medium", "en", "OpenAI GPT-2 medium, 355M"),
    ModelSpec("kogpt2", "skt/kogpt2-base-v2", "ko", "SKT KoGPT2 base v2, Korean",
              special_tokens=_KOGPT2_SPECIALS),
    ModelSpec("gpt2-chinese-poem", "uer/gpt2-chinese-poem", "zh",
              "GPT-2 finetuned on classical Chinese poems", strip_cjk_spaces=True),
    ModelSpec("deep-haiku", "fabianmmueller/deep-haiku-gpt-2", "en",
              "GPT-2 finetuned on haiku"),
)

# Trained by this project (scripts/), shipped inside the package: name -> (language, text).
SHIPPED = {
    "shakespeare-mini": ("en", "Tiny GPT-2 trained from scratch on Shakespeare (default)"),
    "sonnets-mini": ("en", "shakespeare-mini finetuned on sonnets and Milton"),
    "ko-mini": ("ko", "Tiny Korean GPT-2 with a KoGPT2-style tokenizer"),
}


def shipped_models() -> list[ModelSpec]:
    """Shipped models that are present in this install."""
    root = paths.shipped_models_dir()
    return [
        ModelSpec(name, str(root / name), lang, text, local=True)
        for name, (lang, text) in SHIPPED.items()
        if (root / name / "config.json").is_file()
    ]


def remembered_models() -> list[ModelSpec]:
    """The model folders the user trained, finetuned or loaded, newest first: those that
    still hold a model (config.json) and are not a shipped model. Each is named by its
    absolute path; its language comes from its model card, else "?"."""
    shipped = {spec.source for spec in shipped_models()}
    out = []
    for r in local_models.remembered():
        folder = Path(r.path)
        if r.path in shipped or not _is_file(folder / "config.json"):
            continue
        day = time.strftime("%Y-%m-%d", time.localtime(r.when))
        out.append(ModelSpec(r.path, r.path, card_language(folder), f"{r.how} {day}",
                             local=True))
    return out


def all_models() -> list[ModelSpec]:
    return shipped_models() + remembered_models() + list(HUB_MODELS)


def _known() -> Iterator[ModelSpec]:
    """`all_models`, lazily: a shipped or hub name resolves without reading models.json."""
    yield from shipped_models()
    yield from HUB_MODELS
    yield from remembered_models()


_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_CARD_BYTES = 4096  # the front matter is at the top


def card_language(folder: Path) -> str:
    """The `language:` of the model card (README.md front matter, as `gptterm train`
    writes it and the hub uses), when it is one language code; else "?"."""
    try:
        with open(folder / "README.md", "rb") as f:
            head = f.read(_CARD_BYTES).decode("utf-8", "replace")
    except (OSError, ValueError):
        return "?"
    lines = head.splitlines()
    if not lines or lines[0].strip() != "---":
        return "?"
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, sep, value = line.partition(":")
        if sep and key.strip() == "language":
            value = value.strip().strip("'\"")
            return value if _LANGUAGE.fullmatch(value) else "?"
    return "?"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # no permission, a name the OS refuses
        return False


def resolve(name: str) -> ModelSpec:
    """A catalog name, a hub id (`skt/kogpt2-base-v2`), or a directory -> ModelSpec."""
    for spec in _known():
        if name in (spec.name, spec.source):
            return spec
    if name in SHIPPED:  # known but not built into this install
        return ModelSpec(name, str(paths.shipped_models_dir() / name), SHIPPED[name][0],
                         local=True)
    looks_like_path = (
        os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name)
        or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )
    if looks_like_path:
        path = Path(name).expanduser().resolve()
        return ModelSpec(path.name or name, str(path), "?", "local checkpoint", local=True)
    return ModelSpec(name, name, "?", "hub model")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub computes it (no import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(hf_home) / "hub"


def hub_cached(repo_id: str) -> bool:
    """Whether a hub repo's config.json is in the local cache."""
    folder = hub_cache_dir() / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    return any(folder.glob("*/config.json")) if folder.is_dir() else False
