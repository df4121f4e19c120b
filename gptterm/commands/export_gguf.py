"""`gptterm export-gguf MODEL OUT.gguf`: a GPT-2 model as a GGUF file for llama.cpp.

The work happens in `gptterm.gguf_export`; this module resolves MODEL, guards OUT and
maps errors to one line (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gptterm.cli import UsageError

DESCRIPTION = """\
Write MODEL (a shipped model, a folder from `gptterm train` or `finetune`, or a
downloaded hub GPT-2) as a GGUF file that llama.cpp's llama-server (and Ollama) loads.

Byte-level BPE tokenizers (GPT-2's, and `gptterm train --tokenizer bpe`) are written
as they are; a SentencePiece-style tokenizer (ko-mini, `--tokenizer
sentencepiece`) cannot be expressed the same way in llama.cpp and is refused.

--dtype: f32 keeps the weights exactly (bf16 checkpoints widen without loss); f16
halves the file; q8_0 quarters it (8-bit blocks, matrices only)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-gguf", help="write a GPT-2 model as GGUF for llama.cpp",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="catalog name or model folder")
    p.add_argument("out", metavar="OUT.gguf", help="the file to write")
    p.add_argument("--dtype", choices=("f32", "f16", "q8_0"), default="f32",
                   help="weight type of the matrices (default: f32)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def model_folder(name: str) -> tuple[Path, str]:
    """(the folder MODEL loads from, its label): a local folder, or a hub model's
    snapshot in the cache."""
    from gptterm import catalog
    from gptterm.commands.models import config_path
    from gptterm.textsafe import inert

    spec = catalog.resolve(name)
    config = config_path(spec)
    if config is None or not config.is_file():
        hint = "" if spec.local else f"; run `gptterm download {inert(name, single_line=True)}`"
        raise UsageError(f"{inert(spec.where, single_line=True)}: no config.json, not a "
                         f"model folder{hint}")
    return config.parent, spec.label


def run(args: argparse.Namespace) -> int:
    from gptterm import gguf_export
    from gptterm.textsafe import inert

    out = Path(args.out)
    shown = inert(str(out), single_line=True)
    if out.suffix.lower() != ".gguf":
        raise UsageError(f"{shown}: expected a file name ending in .gguf")
    if (out.exists() or out.is_symlink()) and not args.force:
        raise UsageError(f"{shown} exists; pass --force to replace it")
    if out.exists() and not out.is_file():
        raise UsageError(f"{shown} is not a regular file")
    if not out.parent.is_dir():
        raise UsageError(f"{inert(str(out.parent), single_line=True)}: no such folder")
    folder, label = model_folder(args.model)
    try:
        gguf_export.write_gguf(folder, out, args.dtype, name=label)
    except gguf_export.ExportError as exc:
        raise UsageError(inert(str(exc), single_line=True)) from None
    except OSError as exc:
        reason = inert(exc.strerror or str(exc), single_line=True)
        raise UsageError(f"{shown}: cannot write ({reason})") from None
    size = out.stat().st_size
    print(f"wrote {shown} ({args.dtype}, {size / 2**20:.1f} MiB)")
    return 0
