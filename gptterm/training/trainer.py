"""The training loop: AdamW with warmup + cosine decay, autocast, progress, validation
perplexity and a sample every few epochs, checkpoints, and a clean stop on Ctrl+C.

A report (validation loss and a sample) comes at the end of an epoch, but at most
`MAX_REPORTS` times a run plus once at its last step: a small corpus makes epochs of a
step or two, and a report each would bury the progress. A checkpoint is still saved
at the end of every epoch.

The first Ctrl+C asks the loop to stop after the current step and save a checkpoint;
a second one aborts at once.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gptterm.textsafe import inert
from gptterm.training import evaluate, outdir
from gptterm.training.progress import Progress

MAX_REPORTS = 5  # validation reports (with a sample) per run, besides the last step's


class Interrupted(Exception):
    """Training stopped early on request; a checkpoint was saved at `path`."""

    def __init__(self, path: Path, step: int):
        super().__init__(f"stopped at step {step}")
        self.path, self.step = path, step


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 math (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def pick_precision(requested: str, device: str):
    """The autocast dtype (None for plain fp32) for `--precision auto|bf16|fp32`."""
    import torch

    if requested == "fp32":
        return None
    if requested == "bf16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_supports_bf16() else None


def report_every(total_steps: int, steps_per_epoch: int, max_reports: int = MAX_REPORTS) -> int:
    """Steps between reports: whole epochs, as few as keep the count to `max_reports`."""
    epochs = math.ceil(total_steps / steps_per_epoch)
    return steps_per_epoch * max(1, math.ceil(epochs / max_reports))


def sample_text(tokenizer, ids) -> str:
    """Token ids as text of whole characters, special tokens left out.

    A sample ends wherever `max_new_tokens` does, often inside a character that
    byte-level BPE split over several tokens, and an undertrained model puts byte
    tokens together that are no UTF-8 at all. The incomplete last character is
    dropped (the decoder is never flushed) and invalid bytes are left out, so a
    sample never fills with U+FFFD.
    """
    from gptterm.engine.detokenize import IncrementalDecoder

    special = set(tokenizer.all_special_ids)
    decoder = IncrementalDecoder(tokenizer)
    text = "".join(decoder.push([i]) for i in map(int, ids) if i not in special)
    return text.replace("\ufffd", "")


class Trainer:
    """Runs steps `state['step']` .. `total_steps` over `blocks`, validating on `val_rows`."""

    def __init__(self, *, model, tokenizer, optimizer, blocks, val_rows, out: Path,
                 state: dict, total_steps: int, lr: float, device: str, autocast_dtype,
                 sample_prompt: str, sample_tokens: int = 40, save_every: int = 0,
                 on_step: Callable | None = None, echo=print, stream=None):
        self.model, self.tokenizer, self.optimizer = model, tokenizer, optimizer
        self.blocks, self.val_rows, self.out, self.state = blocks, val_rows, out, state
        self.total_steps, self.lr, self.device = total_steps, lr, device
        self.autocast_dtype = autocast_dtype
        self.sample_prompt, self.sample_tokens = sample_prompt, sample_tokens
        self.save_every, self.on_step, self.echo = save_every, on_step, echo
        self.stream = stream or sys.stderr
        self.warmup = max(1, min(200, total_steps // 20))
        self.report_every = report_every(total_steps, blocks.steps_per_epoch)
        self._stop = False

    # -- control -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current step, saving a checkpoint (what Ctrl+C does)."""
        self._stop = True

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.blocks.steps_per_epoch)

    # -- pieces ----------------------------------------------------------------------------
    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(device_type=kind, dtype=self.autocast_dtype)

    def validate(self) -> tuple[float, int]:
        loss, count = evaluate.mean_loss(self.model, self.val_rows, self.device,
                                         self.autocast_dtype)
        self.model.train()
        return loss, count

    def sample(self, seed: int = 0) -> str:
        """A short generation from the sample prompt (top-k 40, temperature 0.8)."""
        import torch

        self.model.eval()
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.startswith("cuda") else None
        torch.manual_seed(seed)
        ids = self.tokenizer(self.sample_prompt, return_tensors="pt",
                             add_special_tokens=False)["input_ids"].to(self.device)
        if ids.shape[1] == 0:
            ids = torch.tensor([[self.tokenizer.eos_token_id]], device=self.device)
        # Learned positions end at n_positions: keep prompt + sample inside the window.
        n_ctx = self.model.config.n_positions
        ids = ids[:, -max(1, n_ctx // 2):]
        new_tokens = max(1, min(self.sample_tokens, n_ctx - ids.shape[1]))
        with torch.no_grad():
            out = self.model.generate(
                ids, max_new_tokens=new_tokens, do_sample=True, top_k=40,
                temperature=0.8, pad_token_id=self.tokenizer.eos_token_id,
            )
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        self.model.train()
        return sample_text(self.tokenizer, out[0].tolist())

    def save(self) -> Path:
        import torch

        self.state["torch_rng"] = torch.get_rng_state().tolist()
        return outdir.save_checkpoint(self.out, self.model, self.tokenizer, self.optimizer,
                                      self.state)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train to the end; return the state. Raises Interrupted after a requested stop."""
        with self._sigint_handler():
            return self._run()

    @contextlib.contextmanager
    def _sigint_handler(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop:  # second Ctrl+C: give up now
                raise KeyboardInterrupt
            self._stop = True
            self.stream.write("\nstopping after this step to save a checkpoint "
                              "(Ctrl+C again to abort without saving)\n")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self) -> dict:
        import torch
        import torch.nn.functional as F

        state, blocks, model = self.state, self.blocks, self.model
        spe = blocks.steps_per_epoch
        model.train()
        progress = Progress(self.total_steps, state["step"], stream=self.stream)
        started = time.monotonic()
        elapsed_before = state.get("seconds", 0.0)
        running = []
        while state["step"] < self.total_steps:
            step = state["step"]
            epoch, index = divmod(step, spe)
            x, y = blocks.batch(epoch, index)
            x, y = x.to(self.device), y.to(self.device)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(step)
            with self.autocast():
                logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            running.append(value)
            state["step"] = step + 1
            state["tokens"] = state.get("tokens", 0) + x.numel()
            state["seconds"] = elapsed_before + time.monotonic() - started
            progress.update(step + 1, value, x.numel(), epoch + 1, self.epochs)
            if self.on_step is not None:
                self.on_step(self, step + 1, value)
            last = step + 1 == self.total_steps
            if (step + 1) % self.report_every == 0 or last:
                progress.clear()
                self._report(step + 1, sum(running) / len(running))
                running = []
            if (step + 1) % spe == 0 or last:
                state["seconds"] = elapsed_before + time.monotonic() - started
                self.save()
            elif self.save_every and (step + 1) % self.save_every == 0:
                self.save()
            if self._stop and state["step"] < self.total_steps:
                progress.clear()
                path = self.save()
                raise Interrupted(path, state["step"])
        progress.clear()
        return state

    def _report(self, step: int, train_loss: float) -> None:
        """Validation loss and perplexity, and a sample; `train_loss` is the mean since
        the last report."""
        val_loss, _ = self.validate()
        ppl = evaluate.perplexity(val_loss)
        epoch = step / self.blocks.steps_per_epoch
        row = {"epoch": round(epoch, 2), "step": step, "train_loss": round(train_loss, 4),
               "val_loss": round(val_loss, 4), "val_perplexity": round(ppl, 2)}
        self.state.setdefault("history", []).append(row)
        self.echo(f"epoch {row['epoch']:g} step {step}/{self.total_steps}: train loss "
                  f"{train_loss:.3f}  val loss {val_loss:.3f}  val perplexity {ppl:.2f}")
        text = self.sample()
        self.state["sample"] = text
        self.echo("  sample: " + inert(text).replace("\n", "\n          "))
