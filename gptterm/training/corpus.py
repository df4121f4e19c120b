"""Corpus files: read them as UTF-8 with one-line errors, and split train/validation text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gptterm.training import TrainingError


@dataclass(frozen=True)
class Document:
    """One corpus file's text."""

    path: str
    text: str


def expand(paths: list[str]) -> list[Path]:
    """Files named on the command line; a directory stands for its *.txt files (sorted)."""
    files: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise TrainingError(f"{name}: directory holds no .txt files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise TrainingError(f"{name}: not a regular file")
        else:
            raise TrainingError(f"{name}: no such file")
    return files


def read_text(path: Path) -> str:
    """A file's text; TrainingError when it cannot be read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingError(
            f"{path}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    return text.lstrip("\ufeff").replace("\r\n", "\n")


def read_corpus(paths: list[str], what: str = "corpus") -> list[Document]:
    """Read every file; TrainingError for a missing, unreadable, non-UTF-8 or empty one."""
    if not paths:
        raise TrainingError(f"no {what} files given")
    docs = []
    for path in expand(paths):
        text = read_text(path)
        if not text.strip():
            raise TrainingError(f"{path}: empty {what} file")
        docs.append(Document(str(path), text))
    return docs


def fingerprint(docs: list[Document]) -> str:
    """A short hash of the corpus text, to check that --resume sees the same corpus."""
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def split_tail(text: str, fraction: float) -> tuple[str, str]:
    """(head, tail): the last `fraction` of the text, cut at a line boundary when possible."""
    if fraction <= 0:
        return text, ""
    cut = int(len(text) * (1 - fraction))
    newline = text.rfind("\n", 0, cut)
    if newline > len(text) * (1 - 2 * fraction):
        cut = newline + 1
    return text[:cut], text[cut:]
