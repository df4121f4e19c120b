"""Reduced precision for the GPT-2 runner, and `auto`: the fastest one that keeps quality.

Methods (weights converted once, at load; layer norms and the residual stream stay fp32):

    fp32  the model's own weights (exact: greedy tokens equal transformers' generate)
    bf16  bfloat16 weights and KV cache; matmuls through oneDNN (AMX / AVX-512 bf16 here)
    fp16  float16 weights and KV cache (fast on GPUs; on most CPUs slower than bf16)
    int8  int8 weights, one scale per output row, the lm head too (it is the largest
          matrix of a small GPT-2). On an x86 CPU, fbgemm's dynamic linear (activations
          quantized to int8 on the fly, VNNI/AMX int8 dot products, fp32 KV cache):
          measured 2.7x fp32's speed on the 124M shape at one thread, perplexity +0.6% on
          shakespeare-mini. Elsewhere (a GPU), and on a CPU for a narrow model (width up
          to `WEIGHT_ONLY_WIDTH`, e.g. the shipped ones), weight-only int8 with bf16
          activations (`torch._weight_int8pack_mm`): there a step is mostly per-call work,
          and quantizing activations on the fly costs more than it saves (shakespeare-mini
          step: fp32 1419 us, fbgemm 1092 us, weight-only 878 us; on the 124M shape
          fbgemm is 1.6x faster than weight-only).

`auto` measures each precision this machine can run on the model itself: decode speed,
and perplexity on the model's own text (a seeded fp32 sample of it, so the figure is
the cost of the conversion, mean KL divergence from fp32 in effect, whatever the model
was trained on). It takes the fastest one whose perplexity is within `AUTO_TOLERANCE`
of fp32's, else fp32, and remembers the decision per model file, device and thread
count (`precision.json` in the data dir) so a start does not measure again.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gptterm.config import PRECISION_CHOICES as CHOICES
from gptterm.engine.runner import GPT2Runner, HFRunner, Linear, supports

PRECISIONS = CHOICES[1:]  # what a runner runs at; CHOICES adds "auto"
AUTO_TOLERANCE = 0.02  # perplexity may rise by at most 2% over fp32
SAMPLE_TOKENS = 256  # the model's own text `auto` scores
CACHE_NAME = "precision.json"
REDUCE_RANGE = False  # full 8-bit activations (VNNI/AMX do not saturate there)
WEIGHT_ONLY_WIDTH = 512  # int8 on a CPU: models up to this width take the weight-only kernel
_LOW = {"bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.bfloat16}


class PrecisionError(Exception):
    """A precision this model or machine cannot run; the message is one line."""


def default_for(device: str) -> str:
    """Without a flag or a config setting: fp32 on a CPU (exact), fp16 on a GPU."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def requested_precision(flag: str | None, device: str) -> str:
    """`--precision` when given, else the config's `precision`, else `default_for`."""
    if flag is not None:
        return check_choice(flag)
    from gptterm.config import load_settings

    return load_settings()[0].precision or default_for(device)


def check_choice(value: str, where: str = "--precision") -> str:
    """`value` when it is a known precision (auto included), else PrecisionError."""
    if value not in CHOICES:
        raise PrecisionError(f"{where} {value!r}: expected one of {', '.join(CHOICES)}")
    return value


# --- the linears of each precision ------------------------------------------------------


def _float_linear(dtype: torch.dtype) -> Callable[[torch.Tensor, torch.Tensor], Linear]:
    def make(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
        w = weight.detach().t().contiguous().to(dtype)  # [out, in]: oneDNN's layout
        b = bias.detach().to(dtype)

        def linear(x: torch.Tensor) -> torch.Tensor:
            return F.linear(x if x.dtype == dtype else x.to(dtype), w, b)

        return linear

    return make


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row: (int8 [out, in], bf16 scales [out]), with
    weight ~= q * scale[:, None]. `weight` is [out, in]."""
    w = weight.detach().float()
    # The scale is stored in bf16 (the kernel's dtype): round it up a little, so that the
    # largest weight still fits in 127 steps of the stored scale, and quantize with that.
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12) * (1 + 2 ** -7)
    stored = scale.to(torch.bfloat16)
    q = torch.round(w / stored.float()[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    return q, stored


def _int8_matmul(weight_out_in: torch.Tensor) -> Linear:
    q, scale = quantize_rows(weight_out_in)

    def matmul(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != torch.bfloat16:
            flat = flat.to(torch.bfloat16)
        return torch._weight_int8pack_mm(flat, q, scale).view(*x.shape[:-1], -1)

    return matmul


def _int8_linear(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
    """A layer's projection. Its input is 2-D ([tokens, in]: the runner keeps activations
    so), so it needs no reshapes, and the bias goes onto the fresh product in place: on a
    narrow model a step is mostly per-call work (shakespeare-mini: 0.68 -> 0.59 ms)."""
    q, scale = quantize_rows(weight.t())
    b = bias.detach().to(torch.bfloat16)

    def linear(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.bfloat16:
            x = x.to(torch.bfloat16)
        return torch._weight_int8pack_mm(x, q, scale).add_(b)

    return linear


def _dynamic_int8(weight_out_in: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
    """int8 weights (one scale per output row) and int8 activations quantized on the fly
    (fbgemm's dynamic linear: VNNI/AMX int8 dot products), fp32 in and out."""
    import warnings

    w = weight_out_in.detach().float().contiguous()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    with warnings.catch_warnings():  # quantized tensors are deprecated, still the way in
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(w, scale, torch.zeros(len(scale), dtype=torch.long),
                                       0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(
            q, None if bias is None else bias.detach().float())

    def linear(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != torch.float32:
            flat = flat.float()
        return torch.ops.quantized.linear_dynamic(flat, packed, REDUCE_RANGE
                                                  ).view(*x.shape[:-1], -1)

    return linear


def _dynamic_int8_linear(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
    return _dynamic_int8(weight.t(), bias)


def _dynamic_int8_ok(device: Any) -> bool:
    """fbgemm's dynamic int8 linear: x86 CPUs (the weight-only kernel elsewhere)."""
    return (torch.device(device).type == "cpu"
            and "fbgemm" in torch.backends.quantized.supported_engines)


def build(model: Any, precision: str) -> GPT2Runner | HFRunner:
    """A runner of `model` at `precision` (not auto). PrecisionError when it cannot run:
    a model that is not GPT-2 runs at fp32 only, and each reduced precision is tried on
    the model's device first, so a missing kernel is one line, not a crash mid-reply."""
    from gptterm.engine.runner import runner_for

    if precision == "fp32":
        return runner_for(model)
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if not supports(model):
        kind = getattr(model.config, "model_type", "?")
        raise PrecisionError(f"precision {precision}: only GPT-2 models run below fp32 "
                             f"(this one is {kind!r}); use fp32")
    device = model.transformer.wte.weight.device
    fbgemm = (precision == "int8" and _dynamic_int8_ok(device)
              and model.config.n_embd > WEIGHT_ONLY_WIDTH)
    probe(precision, device, fbgemm=fbgemm)
    low = _LOW[precision]
    if fbgemm:
        make_linear, head = _dynamic_int8_linear, _dynamic_int8(model.lm_head.weight)
        return GPT2Runner(model, make_linear, head=head, precision=precision)
    if precision == "int8":
        make_linear, head = _int8_linear, _int8_matmul(model.lm_head.weight)
    else:
        make_linear = _float_linear(low)
        head_weight = model.lm_head.weight.detach().to(low)
        head = (lambda x: F.linear(x if x.dtype == low else x.to(low), head_weight))
    return GPT2Runner(model, make_linear, head=head, kv_dtype=low, precision=precision)


def probe(precision: str, device: Any, fbgemm: bool = False) -> None:
    """Run one small matmul of `precision` on `device` (int8: fbgemm's kernel or the
    weight-only one); PrecisionError if it fails."""
    try:
        w = torch.randn(32, 64, device=device)
        x = torch.randn(2, 64, device=device)
        if precision == "int8" and fbgemm:
            out = _dynamic_int8(w)(x)
        elif precision == "int8":
            q, scale = quantize_rows(w)
            out = torch._weight_int8pack_mm(x.to(torch.bfloat16), q.to(device), scale.to(device))
        else:
            out = F.linear(x.to(_LOW[precision]), w.to(_LOW[precision]))
            F.scaled_dot_product_attention(*(x.to(_LOW[precision])[None, None],) * 3)
        if not torch.isfinite(out.float()).all():
            raise RuntimeError("the result is not finite")
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises, one line
        from gptterm.errors import first_line

        where = "this GPU" if torch.device(device).type == "cuda" else "this CPU"
        raise PrecisionError(f"precision {precision}: {where} cannot run it with this torch "
                             f"({first_line(exc)}); use fp32 or auto") from None


# --- measuring --------------------------------------------------------------------------


def mean_loss(runner: Any, rows: list) -> tuple[float, int]:
    """(mean next-token cross-entropy, tokens scored) over (inputs, targets) id rows (as
    training/data.eval_blocks makes them), each on a fresh cache."""
    losses = token_losses(runner, rows)
    count = sum(len(row) for row in losses)
    return sum(float(row.double().sum()) for row in losses) / max(count, 1), count


@torch.inference_mode()
def token_losses(runner: Any, rows: list) -> list:
    """Each row's next-token cross-entropies (nats), one float32 CPU tensor per row: the
    numbers `mean_loss` averages, kept per token for `gptterm diff`."""
    out = []
    for inputs, targets in rows:
        x = torch.as_tensor(inputs, dtype=torch.long, device=runner.device)[None]
        y = torch.as_tensor(targets, dtype=torch.long, device=runner.device)
        logits = runner.forward(x, runner.new_cache(capacity=x.shape[1]), all_logits=True)
        out.append(F.cross_entropy(logits[0], y, reduction="none").cpu())
    return out


def perplexity(runner: Any, rows: list) -> float:
    return math.exp(min(mean_loss(runner, rows)[0], 50.0))


@torch.inference_mode()
def own_text(runner: Any, start_token: int, n_ctx: int, tokens: int = SAMPLE_TOKENS,
             seed: int = 0) -> list:
    """(inputs, targets) rows of a seeded sample of the model's own text (temperature 1,
    no filters), each at most the model's window, `tokens` in all."""
    generator = torch.Generator(device=runner.device).manual_seed(seed)
    one = torch.zeros((1, 1), dtype=torch.long, device=runner.device)
    rows, left = [], tokens
    while left > 0:
        row = [start_token]
        cache = runner.new_cache(capacity=n_ctx)
        one.fill_(start_token)
        logits = runner.forward(one, cache)
        while len(row) < min(n_ctx, left + 1):
            probs = torch.softmax(logits[0], dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
            row.append(token)
            one.fill_(token)
            logits = runner.forward(one, cache)
        rows.append((row[:-1], row[1:]))
        left -= len(row) - 1
    return rows


@torch.inference_mode()
def decode_ms(runner: Any, steps: int = 16, repeats: int = 3) -> float:
    """Best-of-`repeats` milliseconds per one-token decode step after a short prompt."""
    best = math.inf
    for _ in range(repeats):
        cache = runner.new_cache(capacity=32 + steps)
        runner.forward(torch.zeros((1, 32), dtype=torch.long, device=runner.device), cache)
        one = torch.zeros((1, 1), dtype=torch.long, device=runner.device)
        _sync(runner.device)
        start = time.perf_counter()
        for _ in range(steps):
            int(runner.forward(one, cache).argmax())  # as the engine does: one sync a token
        best = min(best, (time.perf_counter() - start) * 1000 / steps)
    return best


def _sync(device: Any) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(model: Any, start_token: int, n_ctx: int, rows: list | None = None
            ) -> dict[str, dict]:
    """{precision: {"ms": decode ms/token, "ppl": perplexity, "ok": within tolerance}} for
    every precision this machine runs (others: {"error": line}). `rows` defaults to the
    model's own text."""
    runners: dict[str, Any] = {}
    table: dict[str, dict] = {}
    for name in PRECISIONS:
        try:
            runners[name] = build(model, name)
        except PrecisionError as exc:
            table[name] = {"error": str(exc)}
    fp32 = runners["fp32"]
    if rows is None:
        rows = own_text(fp32, start_token, n_ctx, tokens=SAMPLE_TOKENS)
    base = perplexity(fp32, rows)
    for name, runner in runners.items():
        ppl = base if name == "fp32" else perplexity(runner, rows)
        table[name] = {"ms": round(decode_ms(runner), 3), "ppl": round(ppl, 4),
                       "ok": ppl <= base * (1 + AUTO_TOLERANCE)}
    return table


def pick(table: dict[str, dict]) -> str:
    """The fastest precision within tolerance (fp32 when none is faster)."""
    usable = [(row["ms"], name) for name, row in table.items() if row.get("ok")]
    return min(usable)[1] if usable else "fp32"


# --- the remembered decision ------------------------------------------------------------


def weights_key(model_dir: str | None, device: str, threads: int) -> str | None:
    """What `auto`'s decision depends on: the weight files (path, size, mtime), the device,
    the thread count and torch's version. None when the weights are not local files."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    files = sorted(p for p in Path(model_dir).iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        return None
    stamp = ";".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return f"{stamp}|{device}|{threads}|torch {torch.__version__}"


def _cache_path() -> Path:
    from gptterm import paths

    return paths.data_dir() / CACHE_NAME


def remembered(key: str | None) -> str | None:
    """The precision `auto` picked before for `key`, if any (a broken file is ignored)."""
    if key is None:
        return None
    try:
        entry = json.loads(_cache_path().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    choice = entry.get("precision") if isinstance(entry, dict) else None
    return choice if choice in PRECISIONS else None


def remember(key: str | None, choice: str, table: dict) -> None:
    if key is None:
        return
    from gptterm.safefile import replace_file

    path = _cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[key] = {"precision": choice, "measured": table}
    try:
        replace_file(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass  # only a cache: the next start measures again


def resolve(model: Any, requested: str, *, model_dir: str | None, device: str, threads: int,
            start_token: int, n_ctx: int) -> GPT2Runner | HFRunner:
    """The runner for `requested` (auto | fp32 | bf16 | fp16 | int8); PrecisionError when
    an explicit precision cannot run. `auto` never fails: it falls back to fp32."""
    check_choice(requested)
    if requested != "auto":
        return build(model, requested)
    if not supports(model):
        return build(model, "fp32")
    key = weights_key(model_dir, device, threads)
    choice = remembered(key)
    if choice is None:
        table = measure(model, start_token, n_ctx)
        choice = pick(table)
        remember(key, choice, table)
    try:
        return build(model, choice)
    except PrecisionError:  # the machine changed under the same key: measure next time
        return build(model, "fp32")
