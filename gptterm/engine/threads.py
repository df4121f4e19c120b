"""How many intra-op CPU threads torch gets for a model: `pick_threads` (the rule),
`apply_threads` and `use_threads` (set it on the calling thread), `requested_threads`
(`--threads` or the config).

torch's default (one thread per core) collapses as soon as another process wants a core:
its OpenMP workers meet at a barrier after every kernel, so one descheduled worker stalls
them all. Measured on the 2-core development machine (KVM, shared with other jobs that
kept CPU pressure near 100%, so "idle" means no extra load of ours), threads 1 / 2, with
`python -c "while True: pass"` as the busy process:

    raw KV-cached decode, tok/s   idle                 + one busy process
    0.05M params                  1622 / 63   (0.04x)   579 / 41
    5.3M (shakespeare-mini shape)  374 / 26   (0.07x)   280 / 13
    13.9M                          178 / 5.6  (0.03x)    81 / 3.1
    33.7M                           45 / 7.8  (0.17x)    20 / 1.0
    124M (GPT-2 small)             9.7 / 1.3  (0.13x)   3.6 / 0.3

    shakespeare-mini via `gptterm generate --stats`, 128 tokens, median of 3:
                                   241 / 18             148 / 5.9
    30-step `gptterm train` (4.8M params, batch 4 x 128), loop seconds:
                                     6 / 115               12 / 144

On that shared machine two threads never won. On a quiet one they do for larger models:
the 124M shape decodes at 27.9 ms/token with 2 threads against 46.0 with 1 (1.65x), but
beside one busy process 2 threads take 497 ms/token against 44.9 (11x slower). The loss
from one thread too few is bounded (at most the parallel speed-up) while one thread too
many cost 3-30x; `--threads 2` takes the idle speed-up on purpose. The crossover for
machines with more cores (`PARAMS_PER_THREAD`) is an estimate, not a measurement. Hence:

* `requested` (``--threads N`` or the config's ``threads``) wins;
* otherwise one core stays free for the UI and whatever else runs, so a 2-core machine
  always gets 1 thread;
* and below `PARAMS_PER_THREAD` parameter-tokens per forward pass for each thread, the
  work per kernel is too small to split (a decode step of a 5M model is ~100 kernels of
  a few microseconds each); a training step (batch x block tokens) always has enough.

The count is per thread, not per process: `torch.set_num_threads` sets the calling
thread's OpenMP/MKL count and the default for threads that have not run a torch op yet;
a thread that already ran one keeps its own count (checked with torch 2.13, OpenMP
backend). So the engine applies it on its worker thread, training on the thread that
trains, and the caller's thread keeps its own.

The UI thread: the engine's per-token Python loop holds the GIL only between kernels
(torch releases it inside them) and Python hands the GIL over every 5 ms
(`sys.getswitchinterval`), so the UI is never starved by the loop itself; what starved
it was the second OpenMP thread spinning on the core the UI needs. `bench/decode.py`
measures a 10 ms timer on another thread while shakespeare-mini decodes beside a busy
process: late by p50 0.1 ms, max 17 ms with 1 thread; p50 2.0 ms, max 36 ms with 2.
"""

from __future__ import annotations

import os

PARAMS_PER_THREAD = 25_000_000  # parameter-tokens per pass and thread worth a split
MAX_THREADS = 8  # models this app runs stop scaling well before this


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset and cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def pick_threads(n_params: int, requested: int | None = None, cpu_count: int | None = None,
                 tokens: int = 1) -> int:
    """The intra-op thread count for a model of `n_params` parameters (see module doc).

    `tokens` is the tokens one forward pass works on: 1 when decoding, batch x block when
    training or scoring.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads: expected a positive number, got {requested}")
        return requested
    spare = (cpu_count or available_cpus()) - 1  # one core for the UI and other processes
    by_work = n_params * max(1, tokens) // PARAMS_PER_THREAD
    return max(1, min(spare, by_work, MAX_THREADS))


def apply_threads(n: int) -> int:
    """Set torch's intra-op threads for the calling thread (see module doc); returns n."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def use_threads(n_params: int, requested: int | None = None, tokens: int = 1) -> int:
    """pick_threads + apply_threads on the calling thread; returns the count in use."""
    return apply_threads(pick_threads(n_params, requested, tokens=tokens))


def requested_threads(flag: int | None) -> int | None:
    """`--threads N` when given, else the config's `threads` setting, else None (pick)."""
    if flag is not None:
        return flag
    from gptterm.config import load_settings

    return load_settings()[0].threads
