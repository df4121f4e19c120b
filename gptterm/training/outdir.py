"""Output folder rules: what a run may overwrite, checkpoints, and the final save.

Layout of DIR:
    checkpoint/     while training (or after Ctrl+C): a loadable model (fp32) plus
                    trainer_state.json and optimizer.pt, replaced atomically
    config.json ... the finished model; config.json is written last, so a folder
                    without it never looks like a finished model

gptterm deletes only what it can prove it wrote: gptterm_training.json lists every
file of the finished model with its sha256 ("files"), and checkpoint/trainer_state.json
lists the checkpoint's files with their sizes. A folder that holds a model is never
replaced without --overwrite, and --overwrite never touches a file that is not listed
(or was edited since): a user's README.md or notes stay, and a name clash is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from gptterm.training import TrainingError

CHECKPOINT = "checkpoint"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
RUN_INFO = "gptterm_training.json"  # in a finished model: the recipe and the file manifest
STAGING = ".staging"
WORK_DIRS = (CHECKPOINT, CHECKPOINT + ".tmp", CHECKPOINT + ".old", STAGING)
# Files of a finished model folder: the names a run may write next to the user's files.
MODEL_FILES = {
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt", "added_tokens.json", "tokenizer.model", "chat_template.jinja", "README.md",
    RUN_INFO,
}


def check(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Raise TrainingError (one line naming the folder) when a run into `out` would
    replace a model without --overwrite, or any file gptterm did not write."""
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
        clash = _first_unowned(out)
        if clash:
            raise TrainingError(f"--out {out}: --overwrite would replace {clash}, which "
                                "gptterm did not write (or it was edited); move it away or "
                                "pick another --out")
        return
    if has_ckpt:
        raise TrainingError(f"--out {out}: holds an unfinished run; add --resume to continue "
                            "it, or --overwrite to start over")
    if (out / "config.json").is_file():
        raise TrainingError(f"--out {out}: already holds a trained model; add --overwrite to "
                            "replace it, or pick another --out")
    raise TrainingError(f"--out {out}: not empty and holds no gptterm model; pick another "
                        "--out or add --overwrite")


def _is_model_file(name: str) -> bool:
    return name in MODEL_FILES or (name.startswith("model-") and name.endswith(".safetensors"))


def _first_unowned(out: Path) -> str | None:
    """The first entry of `out` a run would write or delete that gptterm cannot prove it
    wrote, or None. Unrelated files (notes.txt) are not in the way and stay."""
    ours = model_manifest(out)
    for path in sorted(out.iterdir()):
        if path.name in WORK_DIRS:
            if not _own_work_dir(path):
                return f"{path.name}/"
        elif _is_model_file(path.name) and path.name not in ours:
            return path.name
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_manifest(out: Path) -> set[str]:
    """Names of the finished-model files in `out` that gptterm wrote and nobody changed
    (RUN_INFO itself included when it lists files)."""
    try:
        files = json.loads((out / RUN_INFO).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    if not isinstance(files, dict):
        return set()
    owned = {RUN_INFO}
    for name, digest in files.items():
        path = out / str(name)
        if "/" not in str(name) and path.is_file() and not path.is_symlink() \
                and _sha256(path) == digest:
            owned.add(str(name))
    return owned


def _work_files(directory: Path) -> dict[str, int] | None:
    """{name: size} a checkpoint dir's state lists as written by gptterm, or None."""
    try:
        files = json.loads((directory / STATE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def _own_work_dir(directory: Path) -> bool:
    """Whether everything in `directory` is listed (same size) in its manifest.

    An empty dir is ours (a run that died before writing); so is a staging dir whose
    every file has a model-file name, since only `run` writes there.
    """
    if not directory.is_dir() or directory.is_symlink():
        return False
    entries = list(directory.iterdir())
    if directory.name == STAGING:
        return all(p.is_file() and _is_model_file(p.name) for p in entries)
    listed = _work_files(directory)
    if listed is None:
        return not entries
    listed = {**listed, STATE: None}
    return all(p.is_file() and p.name in listed and
               (listed[p.name] is None or p.stat().st_size == listed[p.name]) for p in entries)


def remove_work_dir(directory: Path) -> None:
    """Delete a checkpoint/staging dir gptterm wrote; refuse (TrainingError) otherwise."""
    if not directory.exists():
        return
    if not _own_work_dir(directory):
        raise TrainingError(f"{directory}: holds files gptterm did not write; not deleting it")
    shutil.rmtree(directory)


def read_state(out: Path) -> dict:
    path = out / CHECKPOINT / STATE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable checkpoint state ({exc})") from None


def save_checkpoint(out: Path, model, tokenizer, optimizer, state: dict) -> Path:
    """Write DIR/checkpoint atomically: a loadable model + optimizer + trainer state,
    the state listing the files written (so only those are ever deleted)."""
    import torch

    from gptterm.training.tokenizer import save_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tmp, final, old = out / (CHECKPOINT + ".tmp"), out / CHECKPOINT, out / (CHECKPOINT + ".old")
    remove_work_dir(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp)
    save_tokenizer(tokenizer, tmp)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    files = {p.name: p.stat().st_size for p in tmp.iterdir()}
    (tmp / STATE).write_text(json.dumps({**state, "files": files}, indent=2,
                                        ensure_ascii=False), encoding="utf-8")
    remove_work_dir(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    remove_work_dir(old)
    return final


def finish(out: Path, staged: Path, keep_checkpoint: bool) -> None:
    """Move a finished model from `staged` into `out` (config.json last), replacing only
    files of a previous gptterm model, and record the new files in RUN_INFO."""
    out.mkdir(parents=True, exist_ok=True)
    previous = model_manifest(out)
    for path in staged.iterdir():  # a file appeared during training: keep both
        if (out / path.name).exists() and path.name not in previous:
            raise TrainingError(f"{out / path.name} appeared while training and gptterm did "
                                f"not write it; the finished model is in {staged}")
    if "config.json" in previous:  # the previous model stops looking complete first
        (out / "config.json").unlink()
    for name in sorted(previous - {"config.json"}):
        (out / name).unlink(missing_ok=True)
    info_path = staged / RUN_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info["files"] = {p.name: _sha256(p) for p in staged.iterdir() if p.name != RUN_INFO}
    info_path.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    for path in sorted(staged.iterdir(), key=lambda p: p.name == "config.json"):
        path.replace(out / path.name)
    staged.rmdir()
    if not keep_checkpoint:
        remove_work_dir(out / CHECKPOINT)
