"""Corpus files: read them as UTF-8 with one-line errors, and split train/validation text."""

from __future__ import annotations

import hashlib
import re
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


# Corpus cleaning for the shipped models: the raw package texts carry editors' apparatus
# (line numbers, notes, italics marks) and help-file markup that a tiny model copies verbatim.

_TRAILING_LINE_NUMBER = re.compile(r"\s{2,}\d+\s*$")  # "...nether Jove,        20"
_NOTE_START = re.compile(r"^\s*\d+(-\d+)?\.\s")  # "729. ~strangled~, suffocated."
_BRACKETED = re.compile(r"\[[^\]]*\]")
_VERSE_DEBRIS = re.compile(r"[0-9_~\[\]{}<>*|=#@\\/]")


def clean_verse(text: str) -> str:
    """Verse without editorial apparatus: margin line numbers and [bracketed notes] are cut
    out; note paragraphs ("729. ~word~, ...") and lines that still carry digits, _italics_,
    brackets or no lower-case letter (headings, numerals) are dropped."""
    kept: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        if _NOTE_START.match(para) or "~" in para:
            continue
        lines = []
        for line in para.split("\n"):
            line = _BRACKETED.sub("", _TRAILING_LINE_NUMBER.sub("", line)).strip()
            if line and not _VERSE_DEBRIS.search(line) and re.search(r"[a-z]", line):
                lines.append(line)
        if lines:
            kept.append("\n".join(lines))
    return "\n\n".join(kept) + "\n"


_HANGUL = re.compile(r"[가-힣]")
_LETTER = re.compile(r"[^\W\d_]")
_HELP_MARKUP = re.compile(r"Title is:|\$\[|%[A-Z]+|\s-\s|->|>|<|\[|\]|\{|\}|https?:|\\|/|\|")
_SENTENCE_END = re.compile(r"[.?!。]['\"”’)]?$")


def hangul_share(text: str) -> float:
    """Share of the letters (any script; not digits or punctuation) that are Hangul; 0 for none."""
    letters = _LETTER.findall(text)
    return sum(1 for c in letters if _HANGUL.match(c)) / len(letters) if letters else 0.0


def has_help_markup(text: str) -> bool:
    """Whether text carries LibreOffice-help debris: "Title is:", $[officename], menu paths."""
    return bool(re.search(r"Title is:|\$\[|%PRODUCTNAME|\w+ - \w+ - \w+|\w+ > \w+", text))


# Product names the help spells in Latin letters, written as Korean prose writes them (a
# tiny model otherwise drops `LibreOffice` into every other Korean reply).
HANGUL_NAMES = {"LibreOffice": "리브레오피스", "OpenOffice": "오픈오피스"}
_NAME = re.compile("|".join(HANGUL_NAMES))


def clean_korean(text: str, min_hangul: float = 0.85) -> str:
    """Korean prose sentences only: a line is kept when it ends like a sentence, has at least
    10 letters, `min_hangul` of them Hangul, no help markup or menu path, no run of 5+
    digits and digits under 10% of its characters. Headings, UI labels and tables go;
    product names are written in Hangul (`HANGUL_NAMES`)."""
    kept = []
    for line in text.split("\n"):
        line = _NAME.sub(lambda m: HANGUL_NAMES[m.group()], " ".join(line.split()))
        if (len(_LETTER.findall(line)) >= 10 and _SENTENCE_END.search(line)
                and hangul_share(line) >= min_hangul and not _HELP_MARKUP.search(line)
                and not re.search(r"\d{5}", line)
                and sum(c.isdigit() for c in line) < 0.1 * len(line)):
            kept.append(line)
    return "\n".join(kept) + "\n"
