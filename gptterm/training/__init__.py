"""Training: tokenizers, train-from-scratch, finetune and perplexity for small GPT-2 models.

torch, transformers, tokenizers and sentencepiece are imported inside functions, so
importing this package (or the CLI that registers its commands) stays cheap.

Modules:
    corpus      read and check corpus files, split train/validation text
    tokenizer   byte-level BPE (tokenizers) and SentencePiece (sentencepiece) training
    data        token streams -> fixed-length blocks, shuffled per epoch, resumable
    trainer     the training loop: autocast, progress, validation, samples, checkpoints
    run         one train/finetune run end to end (Settings -> finished model folder)
    outdir      output folder rules: what may be overwritten, checkpoints, final save
    card        the model card (README.md) written next to the weights
    evaluate    mean loss / perplexity over token windows
    perplexity  `gptterm perplexity MODEL FILE`
    progress    the plain-text progress bar on stderr
"""

from __future__ import annotations


class TrainingError(Exception):
    """Bad input for training (a file, an option, an output dir): one line for the user."""
