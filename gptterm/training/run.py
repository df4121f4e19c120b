"""Train-from-scratch and finetune runs: inputs checked, tokenizer, model, loop, final save.

`run(settings)` is what `gptterm train` and `gptterm finetune` call. Every user error
raises TrainingError (one line) before anything is written to the output folder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from gptterm.cli_types import INT_MAX, SEED_LIMIT, check_float, check_int
from gptterm.config import THREADS_MAX
from gptterm.engine.threads import use_threads
from gptterm.errors import first_line
from gptterm.training import TrainingError, card, corpus, outdir
from gptterm.training.trainer import Interrupted  # noqa: F401  (re-exported for callers)

SAVE_DTYPES = ("fp32", "bf16", "fp16")
# Settings a resumed run may change; the rest must match the checkpoint.
RESUMABLE_OVERRIDES = ("epochs", "max_steps", "save_every", "device", "precision")


@dataclass
class Settings:
    """Everything that defines a run (the recipe) plus model-card facts."""

    mode: str = "train"  # train | finetune
    corpus: list[str] = field(default_factory=list)
    out: str = ""
    base: str | None = None
    tokenizer: str = "bpe"
    vocab_size: int = 8000
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_ctx: int = 256
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    dropout: float = 0.0
    weight_decay: float = 0.1
    val: list[str] = field(default_factory=list)
    val_fraction: float = 0.05
    val_max_tokens: int = 100_000
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    save_dtype: str = "fp32"
    save_every: int = 0
    sample_prompt: str | None = None
    sample_tokens: int = 40
    resume: bool = False
    threads: int | None = None  # torch CPU threads; None: picked (engine/threads.py)
    overwrite: bool = False
    keep_checkpoint: bool = False
    name: str | None = None
    description: str = ""
    language: str = ""
    license: str = ""
    sources: list[str] = field(default_factory=list)
    attribution: str = ""
    script: str = ""
    recipe: str = ""

    def recipe_key(self) -> str:
        """What makes two runs 'the same model' (recorded in the model's RUN_INFO)."""
        keys = ("mode", "base", "tokenizer", "vocab_size", "n_layer", "n_embd", "n_head",
                "n_ctx", "corpus")
        return json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)


# (lo, hi, lo_open, hi_open) of each float setting; the CLI flags check the same ranges.
FLOAT_RANGES = {"lr": (0.0, 10.0, True, False), "dropout": (0.0, 1.0, False, True),
                "val_fraction": (0.0, 1.0, False, True), "weight_decay": (0.0, 10.0, False, False)}
# (flag, lowest) of each int setting; every one is at most INT_MAX.
INT_RANGES = {"vocab_size": ("--vocab-size", 1), "n_layer": ("--layers", 1),
              "n_embd": ("--width", 1), "n_head": ("--heads", 1), "n_ctx": ("--context", 1),
              "batch_size": ("--batch-size", 1), "epochs": ("--epochs", 0),
              "max_steps": ("--max-steps", 0), "save_every": ("--save-every", 0),
              "seed": ("--seed", 0), "sample_tokens": ("sample_tokens", 0),
              "val_max_tokens": ("val_max_tokens", 1)}


def _check_numbers(s: Settings) -> None:
    """Raise TrainingError for the first number out of range (inf, nan, 10**30 ...)."""
    for key, (lo, hi, lo_open, hi_open) in FLOAT_RANGES.items():
        try:
            check_float(getattr(s, key), lo, hi, lo_open=lo_open, hi_open=hi_open)
        except ValueError as exc:
            raise TrainingError(f"--{key.replace('_', '-')}: {exc}") from None
    for key, (flag, lo) in INT_RANGES.items():
        hi = SEED_LIMIT - 1 if key == "seed" else INT_MAX
        try:
            check_int(getattr(s, key), lo, hi)
        except ValueError as exc:
            raise TrainingError(f"{flag}: {exc}") from None


def check_settings(s: Settings) -> None:
    _check_numbers(s)
    if s.threads is not None:
        try:
            check_int(s.threads, 1, THREADS_MAX)
        except ValueError as exc:
            raise TrainingError(f"--threads: {exc}") from None
    if s.mode == "train" and s.n_embd % s.n_head:
        raise TrainingError(f"--width {s.n_embd} is not divisible by --heads {s.n_head}")
    if s.epochs < 1 and not s.max_steps:
        raise TrainingError(f"--epochs: expected at least 1, got {s.epochs}")
    if s.save_dtype not in SAVE_DTYPES:
        raise TrainingError(f"--save-dtype: expected one of {', '.join(SAVE_DTYPES)}")
    if s.tokenizer not in ("bpe", "sentencepiece"):
        raise TrainingError(f"--tokenizer: expected bpe or sentencepiece, got {s.tokenizer!r}")
    if s.mode == "train" and s.tokenizer == "bpe" and s.vocab_size < 257:
        raise TrainingError("--vocab-size: byte-level BPE needs at least 257 tokens")


def load_base(name: str):
    """(model, tokenizer, source) for a catalog name, hub id or directory, offline only."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from gptterm import catalog

    hf_logging.set_verbosity_error()
    spec = catalog.resolve(name)
    if spec.local and not (Path(spec.source) / "config.json").is_file():
        what = "no such directory" if not Path(spec.source).exists() else "no config.json in it"
        raise TrainingError(f"base model {name}: cannot load ({what}: {spec.source})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(spec.source, local_files_only=True,
                                                     dtype="float32")
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's bad BASE
        first = first_line(exc)
        hint = "" if spec.local else " (not in the local hub cache; no network is used)"
        raise TrainingError(f"base model {name}: cannot load{hint}: {first[:200]}") from None
    for key, value in spec.special_tokens.items():
        setattr(tokenizer, key, value)
    if tokenizer.eos_token_id is None:
        raise TrainingError(f"base model {name}: its tokenizer has no eos token")
    return model, tokenizer, spec.source


def _default_prompt(docs: list[corpus.Document]) -> str:
    for line in docs[0].text.splitlines():
        if line.strip():
            return " ".join(line.split()[:6])[:60]
    return ""


def run(s: Settings, *, on_step: Callable | None = None, echo=print,
        explicit: set[str] | None = None) -> dict:
    """Train or finetune as `s` says; returns a summary dict. Raises TrainingError for bad
    input and trainer.Interrupted when stopped early (the checkpoint is saved)."""
    out = Path(s.out).expanduser()
    state = None
    if s.resume:
        outdir.check(out, resume=True, overwrite=False)
        state = outdir.read_state(out)
        saved = Settings(**{k: v for k, v in state["settings"].items()
                            if k in {f.name for f in fields(Settings)}})
        for key in RESUMABLE_OVERRIDES:
            if explicit and key in explicit:
                setattr(saved, key, getattr(s, key))
        saved.resume, saved.recipe = True, state["settings"].get("recipe", s.recipe)
        saved.corpus = s.corpus or saved.corpus  # the files may have moved; hashes must match
        saved.val = s.val or saved.val
        saved.threads = s.threads  # this machine's choice, never the checkpoint's
        s = saved
    check_settings(s)
    docs = corpus.read_corpus(s.corpus)
    val_docs = corpus.read_corpus(s.val, "validation") if s.val else []
    fingerprint = corpus.fingerprint(docs + val_docs)
    if state is not None and state.get("corpus_fingerprint") != fingerprint:
        raise TrainingError(f"--resume: the corpus differs from the one the checkpoint in "
                            f"{out} was trained on")
    if not s.resume:
        outdir.check(out, resume=False, overwrite=s.overwrite)

    import torch
    from transformers.utils import logging as hf_logging

    from gptterm.training import data
    from gptterm.training import tokenizer as toks
    from gptterm.training import trainer as trainer_mod

    hf_logging.disable_progress_bar()  # "Writing model shards" bars would mix with ours
    hf_logging.set_verbosity_error()

    torch.manual_seed(s.seed)
    device = trainer_mod.pick_device(s.device)
    autocast_dtype = trainer_mod.pick_precision(s.precision, device)
    base_source = None
    ckpt = out / outdir.CHECKPOINT
    if s.resume:
        from transformers import AutoModelForCausalLM

        tokenizer = toks.load_tokenizer(ckpt)
        model = AutoModelForCausalLM.from_pretrained(str(ckpt), local_files_only=True,
                                                     dtype="float32")
        base_source = state.get("base_source")
    elif s.mode == "finetune":
        model, tokenizer, base_source = load_base(s.base)
        if s.dropout:
            _set_dropout(model, s.dropout)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = toks.train_tokenizer(s.tokenizer, [d.text for d in docs],
                                             s.vocab_size, Path(tmp))
        model = _new_model(s, tokenizer)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    block = min(s.n_ctx, model.config.n_positions)
    threads = use_threads(n_params, s.threads, tokens=s.batch_size * block)
    if val_docs:
        train_texts, val_texts = [d.text for d in docs], [d.text for d in val_docs]
        val_source = "held-out files: " + ", ".join(Path(d.path).name for d in val_docs)
    else:
        pairs = [corpus.split_tail(d.text, s.val_fraction) for d in docs]
        train_texts = [head for head, _ in pairs]
        val_texts = [tail for _, tail in pairs if tail.strip()]
        val_source = f"last {s.val_fraction:.0%} of each file"
    train_ids = data.encode_documents(tokenizer, train_texts)
    val_ids = data.encode_documents(tokenizer, val_texts) if val_texts else train_ids[:0]
    blocks = data.Blocks(train_ids, block, s.batch_size, s.seed)
    val_rows = data.eval_blocks(val_ids, block, s.val_max_tokens)
    if not val_rows:
        raise TrainingError("corpus too small to hold out validation text: add --val FILE "
                            "or raise --val-fraction")
    total_steps = s.max_steps or s.epochs * blocks.steps_per_epoch

    optimizer = _optimizer(model, s)
    if state is None:
        state = {"version": 1, "step": 0, "tokens": 0, "seconds": 0.0, "history": [],
                 "corpus_fingerprint": fingerprint, "base_source": base_source}
    else:
        optimizer.load_state_dict(torch.load(ckpt / outdir.OPTIMIZER, weights_only=True))
        if state.get("torch_rng"):
            torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    state["settings"] = asdict(s)
    sample_prompt = s.sample_prompt if s.sample_prompt is not None else _default_prompt(docs)
    loop = trainer_mod.Trainer(
        model=model, tokenizer=tokenizer, optimizer=optimizer, blocks=blocks,
        val_rows=val_rows, out=out, state=state, total_steps=total_steps, lr=s.lr,
        device=device, autocast_dtype=autocast_dtype, sample_prompt=sample_prompt,
        sample_tokens=s.sample_tokens, save_every=s.save_every, on_step=on_step, echo=echo,
    )
    echo(f"{s.mode}: {n_params:,} parameters, {len(train_ids):,} training tokens, "
         f"{sum(len(r[1]) for r in val_rows):,} validation tokens, {total_steps} steps of "
         f"{blocks.batch_size}x{blocks.block} tokens on {device} "
         f"({'fp32' if autocast_dtype is None else 'bf16 autocast'}, {threads} CPU threads)")
    if s.mode == "finetune" and "before" not in state:
        loss, _ = loop.validate()
        from gptterm.training.evaluate import perplexity

        state["before"] = {"loss": round(loss, 4), "perplexity": round(perplexity(loss), 2)}
        echo(f"base model: val loss {loss:.3f}  val perplexity {perplexity(loss):.2f}")
    state = loop.run()

    # Finished: stage the model, its tokenizer and card, then move them in (config last).
    staged = out / outdir.STAGING
    outdir.remove_work_dir(staged)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[s.save_dtype]
    model.to("cpu").to(dtype)
    model.config.use_cache = True
    model.save_pretrained(staged)
    toks.save_tokenizer(tokenizer, staged)
    info = _card_info(s, state, model, tokenizer, n_params, docs, val_docs, train_ids,
                      val_rows, val_source, blocks, total_steps, device, autocast_dtype)
    card.write(staged, info)
    (staged / outdir.RUN_INFO).write_text(json.dumps(
        {"recipe_key": s.recipe_key(), "recipe": s.recipe, "history": state["history"],
         "before": state.get("before"), "steps": state["step"], "seconds": state["seconds"],
         "parameters": n_params}, indent=2, ensure_ascii=False), encoding="utf-8")
    outdir.finish(out, staged, s.keep_checkpoint)
    return {"out": str(out), "parameters": n_params, "steps": state["step"],
            "history": state["history"], "before": state.get("before"),
            "seconds": state["seconds"], "sample": state.get("sample", "")}


def _new_model(s: Settings, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=s.n_ctx, n_embd=s.n_embd, n_layer=s.n_layer,
        n_head=s.n_head, resid_pdrop=s.dropout, embd_pdrop=s.dropout, attn_pdrop=s.dropout,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _set_dropout(model, p: float) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def _optimizer(model, s: Settings):
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad]
    groups = [{"params": decay, "weight_decay": s.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, 0.95))


def _card_info(s, state, model, tokenizer, n_params, docs, val_docs, train_ids, val_rows,
               val_source, blocks, total_steps, device, autocast_dtype) -> dict:
    cfg = model.config
    return {
        "name": s.name or Path(s.out).name, "description": s.description, "mode": s.mode,
        "base": s.base, "language": s.language, "license": s.license,
        "parameters": n_params, "n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
        "n_head": cfg.n_head, "n_positions": cfg.n_positions, "vocab_size": cfg.vocab_size,
        "tokenizer": type(tokenizer).__name__ if s.mode == "finetune"
        else ("byte-level BPE" if s.tokenizer == "bpe" else "SentencePiece unigram"),
        "recipe": s.recipe, "script": s.script, "sources": s.sources,
        "attribution": s.attribution,
        "corpus": [{"file": d.path, "chars": len(d.text)} for d in docs + val_docs],
        "train_tokens": len(train_ids), "val_tokens": sum(len(r[1]) for r in val_rows),
        "val_source": val_source, "steps": state["step"], "batch_size": blocks.batch_size,
        "block": blocks.block, "epochs_done": state["step"] / blocks.steps_per_epoch,
        "lr": s.lr, "precision": "fp32" if autocast_dtype is None else "bf16 autocast",
        "device": device, "seconds": state["seconds"], "save_dtype": s.save_dtype,
        "history": state["history"], "before": state.get("before"),
        "sample_prompt": s.sample_prompt if s.sample_prompt is not None
        else _default_prompt(docs), "sample": state.get("sample", ""),
    }
