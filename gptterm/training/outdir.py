"""Output folder rules: what a run may overwrite, checkpoints, and the final save.

Layout of DIR:
    checkpoint/     while training (or after Ctrl+C): a loadable model (fp32) plus
                    trainer_state.json and optimizer.pt, replaced atomically
    config.json ... the finished model; config.json is written last, so a folder
                    without it never looks like a finished model
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gptterm.training import TrainingError

CHECKPOINT = "checkpoint"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
RUN_INFO = "gptterm_training.json"  # in a finished model: the recipe that made it
STAGING = ".staging"
# Files of a finished model folder; only these are replaced when a model is overwritten.
MODEL_FILES = {
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt", "added_tokens.json", "tokenizer.model", "chat_template.jinja", "README.md",
    RUN_INFO,
}


def check(out: Path, *, resume: bool, overwrite: bool, recipe_key: str) -> None:
    """Raise TrainingError when training into `out` would clobber something else."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a directory")
    has_ckpt = (out / CHECKPOINT / STATE).is_file()
    if resume:
        if not has_ckpt:
            raise TrainingError(f"--resume: {out} holds no checkpoint to resume "
                                f"(expected {out / CHECKPOINT / STATE})")
        return
    if not out.is_dir() or not any(out.iterdir()):
        return
    if overwrite:
        return
    if has_ckpt:
        raise TrainingError(f"--out {out}: holds an unfinished run; add --resume to continue "
                            "it, or --overwrite to start over")
    if (out / "config.json").is_file():
        made_by = _recipe_key(out / RUN_INFO)
        if made_by != recipe_key:
            raise TrainingError(f"--out {out}: already holds a different model; pick another "
                                "--out or add --overwrite")
        return  # the same recipe again: replace it
    raise TrainingError(f"--out {out}: not empty and holds no gptterm model; pick another "
                        "--out or add --overwrite")


def _recipe_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("recipe_key")
    except (OSError, ValueError, AttributeError):
        return None


def read_state(out: Path) -> dict:
    path = out / CHECKPOINT / STATE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable checkpoint state ({exc})") from None


def save_checkpoint(out: Path, model, tokenizer, optimizer, state: dict) -> Path:
    """Write DIR/checkpoint atomically: a loadable model + optimizer + trainer state."""
    import torch

    from gptterm.training.tokenizer import save_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tmp, final, old = out / (CHECKPOINT + ".tmp"), out / CHECKPOINT, out / (CHECKPOINT + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp)
    save_tokenizer(tokenizer, tmp)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    (tmp / STATE).write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def finish(out: Path, staged: Path, keep_checkpoint: bool) -> None:
    """Move a finished model from `staged` into `out`; config.json goes in last."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "config.json").exists():  # the previous model stops looking complete first
        (out / "config.json").unlink()
    for old in out.iterdir():  # the rest of a previous model (same recipe or --overwrite)
        if old.is_file() and (old.name in MODEL_FILES or old.match("model-*.safetensors")):
            old.unlink()
    files = sorted(staged.iterdir(), key=lambda p: p.name == "config.json")
    for path in files:
        path.replace(out / path.name)
    shutil.rmtree(staged, ignore_errors=True)
    if not keep_checkpoint:
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
