"""`gptterm train`, `gptterm finetune` and `gptterm perplexity`: the training commands.

The work happens in `gptterm.training`; this module only maps flags to Settings and
errors to one-line messages. torch/transformers load inside the command functions.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from gptterm.cli_types import finite_float, non_negative_int, positive_int, seed_arg, text_arg
from gptterm.config import PRECISION_CHOICES
from gptterm.training.run import FLOAT_RANGES


def _float_flag(key: str):
    """The argparse type of a float setting: the range `run.check_settings` enforces."""
    lo, hi, lo_open, hi_open = FLOAT_RANGES[key]
    return finite_float(lo, hi, lo_open=lo_open, hi_open=hi_open)

# dest -> flag used when the recipe command is written into the model card.
_TRAIN_RECIPE = ["tokenizer", "vocab_size", "n_layer", "n_embd", "n_head", "n_ctx"]
_LOOP_RECIPE = ["epochs", "max_steps", "batch_size", "lr", "dropout", "val_fraction", "seed",
                "save_dtype", "sample_prompt"]
_FLAGS = {"tokenizer": "--tokenizer", "vocab_size": "--vocab-size", "n_layer": "--layers",
          "n_embd": "--width", "n_head": "--heads", "n_ctx": "--context", "epochs": "--epochs",
          "max_steps": "--max-steps", "batch_size": "--batch-size", "lr": "--lr",
          "dropout": "--dropout", "val_fraction": "--val-fraction", "seed": "--seed",
          "save_dtype": "--save-dtype", "sample_prompt": "--sample-prompt"}
# Flags a --resume run may change; None as the parse default tells "given" from "default".
_OVERRIDABLE = {"epochs": 1, "max_steps": 0, "save_every": 0, "device": "auto",
                "precision": "auto"}


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a tokenizer and a small GPT-2 from scratch",
                       description="Train a tokenizer and a GPT-2 from scratch on text files.")
    t.add_argument("corpus", nargs="+", metavar="CORPUS", help="UTF-8 text files (or folders)")
    t.add_argument("--tokenizer", choices=("bpe", "sentencepiece"), default="bpe",
                   help="byte-level BPE (tokenizers) or SentencePiece (default: bpe)")
    t.add_argument("--vocab-size", "--vocab", dest="vocab_size", type=positive_int, metavar="N", default=8000,
                   help="tokenizer vocabulary size (default: 8000)")
    t.add_argument("--layers", "--n-layer", dest="n_layer", type=positive_int, metavar="N", default=4,
                   help="transformer blocks (default: 4)")
    t.add_argument("--width", "--n-embd", "--d-model", dest="n_embd", type=positive_int, metavar="N", default=256,
                   help="embedding width (default: 256)")
    t.add_argument("--heads", "--n-head", dest="n_head", type=positive_int, metavar="N", default=4,
                   help="attention heads (default: 4)")
    t.add_argument("--context", "--n-positions", "--n-ctx", "--block-size", "--seq-len",
                   dest="n_ctx", type=positive_int, metavar="N", default=256,
                   help="context length in tokens (default: 256)")
    _loop_options(t, lr=1e-3)
    t.set_defaults(func=run_train, mode="train")

    f = sub.add_parser("finetune", help="finetune a model on your text (keeps its tokenizer)",
                       description="Continue training BASE (a catalog name or a directory) "
                       "on text files; the base tokenizer is kept.")
    f.add_argument("base", metavar="BASE", help="catalog name (see `gptterm models`) or dir")
    f.add_argument("corpus", nargs="+", metavar="CORPUS", help="UTF-8 text files (or folders)")
    f.add_argument("--context", "--n-ctx", "--block-size", "--seq-len", dest="n_ctx", type=positive_int,
                   metavar="N", default=None, help="training sequence length (default: the base's context)")
    _loop_options(f, lr=3e-4)
    f.set_defaults(func=run_finetune, mode="finetune")

    p = sub.add_parser("perplexity", help="a model's perplexity on a text file",
                       description="Perplexity of MODEL on FILE over consecutive windows.")
    p.add_argument("model", metavar="MODEL", help="catalog name or model directory")
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    scoring_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_perplexity)


def scoring_options(p: argparse.ArgumentParser) -> None:
    """How a text file is scored: `gptterm perplexity` and `gptterm diff` take the same."""
    p.add_argument("--context", type=positive_int, default=None, help="window in tokens "
                   "(default: the model's context)")
    p.add_argument("--max-tokens", type=non_negative_int, default=0, help="score at most this many tokens")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--precision", choices=PRECISION_CHOICES,
                   help="score with the engine's runner at this precision (auto: the one the "
                        "engine picks); default: transformers at fp32")
    _threads_option(p)


def _threads_option(p: argparse.ArgumentParser) -> None:
    from gptterm.cli_types import int_range
    from gptterm.config import THREADS_MAX

    p.add_argument("--threads", type=int_range(1, THREADS_MAX), default=None, metavar="N",
                   help="CPU threads for torch (default: the config's threads, else picked "
                   "for the model and machine)")


def _loop_options(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output model folder")
    _threads_option(p)
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="passes over the corpus "
                   "(default: 1)")
    p.add_argument("--max-steps", "--steps", dest="max_steps", type=non_negative_int,
                   metavar="N", default=None,
                   help="stop after this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="sequences per step "
                   "(default: 16)")
    p.add_argument("--lr", "--learning-rate", dest="lr", type=_float_flag("lr"), default=lr,
                   metavar="LR",
                   help=f"peak learning rate (default: {lr:g})")
    p.add_argument("--dropout", type=_float_flag("dropout"), default=0.0,
                   help="dropout probability in [0, 1) (default: 0)")
    p.add_argument("--val", action="append", default=[], metavar="FILE",
                   help="held-out validation file (repeatable; default: the end of each "
                   "corpus file)")
    p.add_argument("--val-fraction", type=_float_flag("val_fraction"), default=0.05,
                   help="share of each file held out when no --val (default: 0.05)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: auto)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=None,
                   help="bf16 autocast where the hardware has it (default: auto)")
    p.add_argument("--save-dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="dtype of the saved weights (default: fp32)")
    p.add_argument("--save-every", type=non_negative_int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps (default: each epoch)")
    p.add_argument("--sample-prompt", type=text_arg, default=None, help="prompt of the per-epoch sample")
    p.add_argument("--resume", action="store_true",
                   help="continue the run checkpointed in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="replace whatever model --out holds")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep DIR/checkpoint (optimizer state) after training")
    card = p.add_argument_group("model card")
    card.add_argument("--name", default=None, help="model name (default: the folder name)")
    card.add_argument("--description", default="", help="one line about the model")
    card.add_argument("--language", default="", help="language code, e.g. en")
    card.add_argument("--license", default="", help="license of the weights (SPDX id)")
    card.add_argument("--source", dest="sources", action="append", default=[],
                      help="corpus source and license line (repeatable)")
    card.add_argument("--attribution", default="", help="attribution text")
    card.add_argument("--script", default="", help="the script that reproduces the model")


def _recipe(args: argparse.Namespace) -> str:
    words = ["gptterm", args.mode]
    if args.mode == "finetune":
        words.append(args.base)
    words += list(args.corpus) + ["--out", args.out]
    keys = (_TRAIN_RECIPE if args.mode == "train" else ["n_ctx"]) + _LOOP_RECIPE
    for key in keys:
        value = getattr(args, key, None)
        if value is None or (key == "max_steps" and not value):
            continue
        if key == "epochs" and args.max_steps:
            continue
        words += [_FLAGS[key], f"{value:g}" if isinstance(value, float) else str(value)]
    for val in args.val:
        words += ["--val", val]
    return shlex.join(words)


def _settings(args: argparse.Namespace):
    from gptterm.engine.threads import requested_threads
    from gptterm.training.run import Settings

    explicit = {k for k in _OVERRIDABLE if getattr(args, k) is not None}
    for key, default in _OVERRIDABLE.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    same = ("mode", "out", "epochs", "max_steps", "batch_size", "lr", "dropout",
            "val_fraction", "seed", "device", "precision", "save_dtype", "save_every",
            "sample_prompt", "resume", "overwrite", "keep_checkpoint", "name", "description",
            "language", "license", "attribution", "script")
    values = {key: getattr(args, key) for key in same}
    values.update(corpus=list(args.corpus), val=list(args.val), sources=list(args.sources),
                  recipe=_recipe(args), threads=requested_threads(args.threads))
    if args.mode == "train":
        values.update(tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                      n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head,
                      n_ctx=args.n_ctx)
    else:
        values.update(base=args.base, n_ctx=args.n_ctx or 1_000_000)
    return Settings(**values), explicit


def _run(args: argparse.Namespace) -> int:
    from gptterm.cli import UsageError
    from gptterm.training import TrainingError
    from gptterm.training.run import run
    from gptterm.training.trainer import Interrupted

    settings, explicit = _settings(args)
    try:
        summary = run(settings, explicit=explicit)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    except Interrupted as exc:
        print(f"gptterm: interrupted at step {exc.step}; checkpoint saved in {exc.path} "
              f"(loadable); continue with the same command plus --resume", file=sys.stderr)
        return 130
    last = summary["history"][-1] if summary["history"] else None
    ppl = f", val perplexity {last['val_perplexity']:.2f}" if last else ""
    print(f"saved {summary['out']}: {summary['parameters']:,} parameters, "
          f"{summary['steps']} steps in {summary['seconds']:.0f} s{ppl}")
    from gptterm.local_models import remember_or_say

    remember_or_say(summary["out"], how="trained" if args.mode == "train" else "finetuned")
    return 0


run_train = _run
run_finetune = _run


def run_perplexity(args: argparse.Namespace) -> int:
    import json

    from gptterm.cli import UsageError
    from gptterm.engine.threads import requested_threads
    from gptterm.training import TrainingError
    from gptterm.training.perplexity import file_perplexity

    try:
        result = file_perplexity(args.model, args.file, context=args.context,
                                 max_tokens=args.max_tokens, device=args.device,
                                 threads=requested_threads(args.threads),
                                 precision=args.precision)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
    else:
        at = f" at {result['precision']}" if "precision" in result else ""
        print(f"perplexity {result['perplexity']:.2f} (loss {result['loss']:.4f} over "
              f"{result['tokens']:,} tokens, {result['model']}{at} on {result['file']})")
    return 0
