"""Runners: the model forward pass the Decoder and the search strategies drive.

`GPT2Runner` is a hand-written GPT-2 forward over the Hugging Face weights (the same
math: layer norm, the fused qkv Conv1D, causal attention, gelu_new, the tied lm head)
on a `KVCache` of preallocated per-layer buffers. transformers' own forward spends most
of a decode step of a small model in Python (module calls, cache objects, mask
building, output dataclasses); this one issues only the kernels. At fp32 it shares the
model's weight tensors, so it costs no memory; the reduced precisions (`precision.py`)
hold converted copies.

`HFRunner` runs any other causal LM through transformers with a `DynamicCache`, behind
the same interface, so a model folder that is not GPT-2 still works (at HF's speed).

The interface both keep:
    runner.new_cache() -> cache
    runner.forward(ids [B, n], cache, all_logits=False) -> logits [B, V] (or [B, n, V])
        float32; the cache grows by n and keeps each position's last hidden state.
    cache.length, cache.crop(n), cache.fork(repeats), cache.reorder(index),
    cache.select(row), cache.hidden() [length, d] (batch row 0), cache.nbytes()
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable

import torch
import torch.nn.functional as F

GROW = 64  # KV capacity grows in steps of at least this many positions
FEW_QUERIES = 16  # on a GPU, attention for up to this many new positions is two matmuls


class KVCache:
    """Keys and values of every layer, one [2, B, heads, capacity, head_dim] buffer each
    (keys, then values), and the last hidden state of every position, [B, capacity, d];
    `length` positions are filled.

    Capacity grows (by copying) up to `limit` when a forward needs more room, so a short
    session does not hold the whole window; `reserve` makes room ahead of time.
    """

    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, width: int,
                 capacity: int, limit: int, dtype: torch.dtype, device: Any):
        self.shape = (layers, heads, head_dim, width)
        self.limit = limit
        self.dtype, self.device = dtype, device
        self.length = 0
        self.kv, self.h = self._alloc(batch, capacity)
        self.graph: tuple | None = None  # the runner's captured decode step (GPU)

    def _alloc(self, batch: int, capacity: int):
        layers, heads, head_dim, width = self.shape
        # Zeros, not empty: the fixed-shape step (CUDA graphs) attends over the whole
        # window, and a masked position still multiplies its value by 0 (NaN * 0 is NaN).
        kv = [torch.zeros(2, batch, heads, capacity, head_dim, dtype=self.dtype,
                          device=self.device) for _ in range(layers)]
        return kv, torch.zeros(batch, capacity, width, dtype=torch.float32, device=self.device)

    @property
    def batch(self) -> int:
        return self.h.shape[0]

    @property
    def capacity(self) -> int:
        return self.h.shape[1]

    def reserve(self, total: int) -> None:
        """Make room for `total` positions (copying what is filled)."""
        if total <= self.capacity:
            return
        if total > self.limit:
            raise ValueError(f"{total} positions do not fit the model's window of {self.limit}")
        capacity = min(self.limit, max(total, 2 * self.capacity, GROW))
        kv, h = self._alloc(self.batch, capacity)
        n = self.length
        for new, old in zip(kv, self.kv):
            new[:, :, :, :n] = old[:, :, :, :n]
        h[:, :n] = self.h[:, :n]
        self.kv, self.h = kv, h

    def get_seq_length(self) -> int:
        return self.length

    @property
    def layers(self) -> list:
        """Per layer, the filled keys and values (views), as transformers' caches name them."""
        n = self.length
        return [_LayerKV(kv[0, :, :, :n], kv[1, :, :, :n]) for kv in self.kv]

    def crop(self, n: int) -> None:
        """Keep only the first `n` positions (the buffers stay)."""
        self.length = max(0, min(n, self.length))

    def _copy(self, rows: torch.Tensor, capacity: int) -> KVCache:
        out = KVCache.__new__(KVCache)
        out.shape, out.limit, out.dtype, out.device = self.shape, self.limit, self.dtype, self.device
        out.length = n = self.length
        out.graph = None
        out.kv, out.h = out._alloc(len(rows), capacity)
        for new, old in zip(out.kv, self.kv):
            new[:, :, :, :n] = old[:, rows, :, :n]
        out.h[:, :n] = self.h[rows, :n]
        return out

    def fork(self, repeats: int, room: int = 1) -> KVCache:
        """A new cache with `repeats` copies of row 0 and room for `room` more positions;
        it shares nothing writable with this one."""
        rows = torch.zeros(repeats, dtype=torch.long, device=self.device)
        return self._copy(rows, min(self.limit, self.length + max(1, room)))

    def reorder(self, index: torch.Tensor) -> None:
        """Row i becomes the old row index[i] (beam search follows its beams)."""
        n = self.length
        for buf in self.kv:
            buf[:, :, :, :n] = buf[:, index, :, :n]
        self.h[:, :n] = self.h[index, :n]

    def select(self, row: int) -> KVCache:
        """A batch-1 cache holding row `row` (contrastive search keeps the winner)."""
        rows = torch.tensor([row], dtype=torch.long, device=self.device)
        return self._copy(rows, self.capacity)

    def hidden(self) -> torch.Tensor:
        """[length, d] last hidden state of each position of row 0."""
        return self.h[0, :self.length]

    def last_hidden(self) -> torch.Tensor:
        """[B, d] last hidden state of the newest position of each row."""
        return self.h[:, self.length - 1]

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (*self.kv, self.h))


class _LayerKV:
    __slots__ = ("keys", "values")

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values


Linear = Callable[[torch.Tensor], torch.Tensor]


def fp32_linear(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
    """transformers' Conv1D: x @ weight + bias, weight [in, out] (shared, not copied);
    x is [tokens, in] (the runner keeps activations 2-D)."""
    return functools.partial(torch.addmm, bias, mat2=weight)


def _gelu(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        # One kernel for gelu_new's tanh formula (transformers spells it in six).
        return functools.partial(F.gelu, approximate="tanh")
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                     mask: None = None) -> torch.Tensor:
    """A prefill from position 0: each position sees itself and those before it."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same attention as two matmuls and a softmax (in fp32). On a GPU this is the
    fast way for a few query rows: SDPA's fused kernels tile for many. On an H100, fp32,
    one row over the 1024-position window of a CUDA-graph step, the memory-efficient
    kernel took 123 us a layer, and the 124M step went from 2.19 to 0.94 ms with this.
    On a CPU SDPA is faster (1.4x for one row)."""
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype), v)


class _Layer:
    __slots__ = ("fc", "ln1", "ln2", "out", "proj", "qkv")


def supports(model: Any) -> bool:
    """Whether GPT2Runner can run `model` (a transformers GPT2LMHeadModel)."""
    config = getattr(model, "config", None)
    return (getattr(config, "model_type", None) == "gpt2"
            and hasattr(model, "transformer") and not getattr(config, "add_cross_attention",
                                                              False))


class GPT2Runner:
    """The GPT-2 forward pass over `model`'s weights (see the module docstring).

    Args:
        model: a transformers GPT2LMHeadModel in eval mode.
        make_linear: builds each projection from (weight [in, out], bias); fp32 by
            default, `precision.py` passes reduced-precision ones.
        head: the lm head, hidden [.., d] -> logits; None: the tied embedding at fp32.
        kv_dtype: dtype of the KV cache.
    """

    def __init__(self, model: Any, make_linear: Callable[[torch.Tensor, torch.Tensor], Linear]
                 = fp32_linear, head: Linear | None = None, kv_dtype: torch.dtype | None = None,
                 precision: str = "fp32"):
        config = model.config
        t = model.transformer
        self.model = model
        self.config = config
        self.precision = precision
        self.device = t.wte.weight.device
        self.width = config.n_embd
        self.heads = config.n_head
        self.head_dim = self.width // self.heads
        self.n_ctx = config.n_positions
        self.eps = config.layer_norm_epsilon
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        self.kv_dtype = kv_dtype or self.wte.dtype
        self.act = _gelu(config.activation_function)
        self.scales = [self._scale(i) for i in range(config.n_layer)]
        self.layers = []
        for block in t.h:
            layer = _Layer()
            layer.ln1 = (block.ln_1.weight, block.ln_1.bias)
            layer.ln2 = (block.ln_2.weight, block.ln_2.bias)
            layer.qkv = make_linear(block.attn.c_attn.weight, block.attn.c_attn.bias)
            layer.proj = make_linear(block.attn.c_proj.weight, block.attn.c_proj.bias)
            layer.fc = make_linear(block.mlp.c_fc.weight, block.mlp.c_fc.bias)
            layer.out = make_linear(block.mlp.c_proj.weight, block.mlp.c_proj.bias)
            self.layers.append(layer)
        self.ln_f = (t.ln_f.weight, t.ln_f.bias)
        lm_weight = model.lm_head.weight
        self.head = head or (lambda x: F.linear(x, lm_weight))
        # CUDA graphs for one-token steps on a GPU (GPTTERM_CUDA_GRAPHS=0 turns them off).
        self.graphs = (self.device.type == "cuda"
                       and os.environ.get("GPTTERM_CUDA_GRAPHS", "1") != "0")
        self.graph_error = ""  # why a capture failed, if one did
        self._positions = torch.arange(self.n_ctx, device=self.device)
        # Attention of a decode step (and of a short prefill): see matmul_attention.
        self.attend = matmul_attention if self.device.type == "cuda" else sdpa_attention

    def _scale(self, index: int) -> float:
        scale = 1.0 / math.sqrt(self.head_dim) if self.config.scale_attn_weights else 1.0
        if self.config.scale_attn_by_inverse_layer_idx:
            scale /= index + 1
        return scale

    def new_cache(self, batch: int = 1, capacity: int = 0) -> KVCache:
        """A cache with room for `capacity` positions (it grows); a session's cache on a
        GPU holds the whole window at once, so a CUDA graph can keep its buffers."""
        if self.graphs and batch == 1:
            capacity = self.n_ctx
        return KVCache(len(self.layers), batch, self.heads, self.head_dim, self.width,
                       min(self.n_ctx, max(capacity, GROW)), self.n_ctx, self.kv_dtype,
                       self.device)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: KVCache, all_logits: bool = False
                ) -> torch.Tensor:
        """Run `ids` [B, n] after the cached positions; returns float32 logits of the last
        position [B, V] (every position [B, n, V] with `all_logits`)."""
        if (self.graphs and ids.shape == (1, 1) and not all_logits
                and cache.capacity == self.n_ctx and cache.length < self.n_ctx):
            return self._replay(ids, cache)
        batch, n = ids.shape
        if n == 1 and not all_logits:
            return self._step(ids, cache)
        start = cache.length
        end = start + n
        cache.reserve(end)
        d, heads, hd, eps = self.width, self.heads, self.head_dim, self.eps
        # Activations stay [tokens, d]: the projections take them as they are.
        x = (F.embedding(ids, self.wte) + self.wpe[start:end]).view(batch * n, d)
        mask, causal = None, False
        if n > 1:  # a prefill: each new position sees the cache and the new ones up to itself
            if start:
                mask = torch.ones(n, end, dtype=torch.bool, device=self.device).tril(start)
            else:
                causal = True
        kv_dtype, act, layer_norm = self.kv_dtype, self.act, torch.layer_norm
        attend = causal_attention if causal else \
            self.attend if n <= FEW_QUERIES else sdpa_attention
        for layer, kv, scale in zip(self.layers, cache.kv, self.scales):
            h = layer_norm(x, (d,), *layer.ln1, eps)
            # [tokens, 3d] -> (q, k, v), each [B, heads, n, head_dim]
            qkv = layer.qkv(h).view(batch, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
            kv[:, :, :, start:end] = qkv[1:]  # keys and values in one copy
            q = qkv[0] if qkv.dtype == kv_dtype else qkv[0].to(kv_dtype)
            a = attend(q, kv[0, :, :, :end], kv[1, :, :, :end], scale, mask)
            # A reduced-precision output adds up in fp32.
            x = x + layer.proj(a.transpose(1, 2).reshape(batch * n, d))
            h = layer_norm(x, (d,), *layer.ln2, eps)
            x = x + layer.out(act(layer.fc(h)))
        x = layer_norm(x, (d,), *self.ln_f, eps).view(batch, n, d)
        cache.h[:, start:end] = x
        cache.length = end
        return self.head(x if all_logits else x[:, -1]).float()

    def _step(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """`forward` for one token per row ([B, 1]), the decode step: the same math in
        fewer kernels and views (a small model's step is mostly per-op overhead)."""
        batch = ids.shape[0]
        start = cache.length
        end = start + 1
        cache.reserve(end)
        d, heads, hd, eps = self.width, self.heads, self.head_dim, self.eps
        x = F.embedding(ids.view(batch), self.wte).add_(self.wpe[start])  # [B, d]
        kv_dtype, act, layer_norm, attend = self.kv_dtype, self.act, torch.layer_norm, \
            self.attend
        for layer, kv, scale in zip(self.layers, cache.kv, self.scales):
            qkv = layer.qkv(layer_norm(x, (d,), *layer.ln1, eps)).view(batch, 3, heads, 1, hd)
            kv[:, :, :, start:end] = qkv[:, 1:].transpose(0, 1)  # keys and values at once
            q = qkv[:, 0] if qkv.dtype == kv_dtype else qkv[:, 0].to(kv_dtype)
            # One query row: [B, heads, 1, hd] is already [B, d] in memory.
            a = attend(q, kv[0, :, :, :end], kv[1, :, :, :end], scale)
            x = x + layer.proj(a.view(batch, d))
            x = x + layer.out(act(layer.fc(layer_norm(x, (d,), *layer.ln2, eps))))
        x = layer_norm(x, (d,), *self.ln_f, eps)
        cache.h[:, start] = x
        cache.length = end
        return self.head(x).float()

    # --- one decode step as a CUDA graph ---------------------------------------------------
    #
    # On a GPU a decode step of a small model is a few hundred tiny kernels, and launching
    # them from Python costs more than running them. `_static_step` is the same step with
    # every shape fixed (attention over the whole window, masked past the position, which
    # is a tensor), so it can be captured once per session cache and replayed.

    def _static_step(self, ids: torch.Tensor, pos: torch.Tensor, cache: KVCache
                     ) -> torch.Tensor:
        """One token ([1, 1]) at position `pos` ([1] long tensor): fixed shapes only."""
        d, heads, hd, eps = self.width, self.heads, self.head_dim, self.eps
        x = (F.embedding(ids, self.wte) + self.wpe[pos]).view(1, d)
        mask = (self._positions <= pos)[None, None, None, :]
        for layer, kv, scale in zip(self.layers, cache.kv, self.scales):
            h = torch.layer_norm(x, (d,), *layer.ln1, eps)
            qkv = layer.qkv(h).view(1, 1, 3, heads, hd).permute(2, 0, 3, 1, 4)
            kv.index_copy_(3, pos, qkv[1:].to(kv.dtype))
            q = qkv[0].to(kv.dtype)
            a = self.attend(q, kv[0], kv[1], scale, mask)
            x = x + layer.proj(a.transpose(1, 2).reshape(1, d))
            h = torch.layer_norm(x, (d,), *layer.ln2, eps)
            x = x + layer.out(self.act(layer.fc(h)))
        x = torch.layer_norm(x, (d,), *self.ln_f, eps)
        cache.h.index_copy_(1, pos, x.view(1, 1, d))
        return self.head(x).float()

    def _replay(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        graph = cache.graph if cache.graph is not None and cache.graph[0] is cache.kv[0] \
            else None
        if graph is None:
            try:
                graph = cache.graph = self._capture(ids, cache)
            except RuntimeError as exc:  # no capture here: plain steps from now on
                from gptterm.errors import first_line

                self.graphs, self.graph_error = False, first_line(exc)
                return self.forward(ids, cache)
        _, g, static_ids, static_pos, out = graph
        static_ids.copy_(ids)
        static_pos.fill_(cache.length)
        if g is None:  # capture is not possible here: the same fixed-shape step, eagerly
            out = self._static_step(static_ids, static_pos, cache)
        else:
            g.replay()
        cache.length += 1
        return out.clone()  # the next replay overwrites `out`

    def _capture(self, ids: torch.Tensor, cache: KVCache) -> tuple:
        static_ids = ids.clone()
        static_pos = torch.full((1,), cache.length, dtype=torch.long, device=self.device)
        if self.device.type != "cuda":
            return (cache.kv[0], None, static_ids, static_pos, None)
        # Warm up on a side stream (as torch.cuda.graph asks), then capture. The warm-up
        # writes this very step's keys and values, which the replay writes again.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._static_step(static_ids, static_pos, cache)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads' CUDA work (another engine, the UI's) does not
        # break this thread's capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = self._static_step(static_ids, static_pos, cache)
        return (cache.kv[0], graph, static_ids, static_pos, out)


class HFCache:
    """A transformers DynamicCache with the KVCache interface (batch rows, hidden states)."""

    def __init__(self, past: Any = None, hidden: list | None = None):
        from transformers import DynamicCache

        self.past = past if past is not None else DynamicCache()
        self._hidden = hidden or []  # chunks [B, n, d], joined when asked for

    @property
    def length(self) -> int:
        return self.past.get_seq_length()

    def get_seq_length(self) -> int:
        return self.length

    def _joined(self) -> torch.Tensor | None:
        if len(self._hidden) > 1:
            self._hidden = [torch.cat(self._hidden, dim=1)]
        return self._hidden[0] if self._hidden else None

    def crop(self, n: int) -> None:
        drop = self.length - n
        if drop > 0:
            self.past.crop(-drop)  # transformers 5 accepts only "tokens to remove" here
            self._hidden = [self._joined()[:, :n]]

    @torch.inference_mode()
    def fork(self, repeats: int, room: int = 1) -> HFCache:
        import copy

        fork = copy.copy(self.past)
        fork.layers = [copy.copy(layer) for layer in self.past.layers]
        fork.batch_repeat_interleave(repeats)  # allocates new tensors
        hidden = self._joined()
        return HFCache(fork, [hidden.expand(repeats, -1, -1)] if hidden is not None else [])

    @torch.inference_mode()
    def reorder(self, index: torch.Tensor) -> None:
        self.past.reorder_cache(index)
        hidden = self._joined()
        if hidden is not None:
            self._hidden = [hidden[index]]

    @torch.inference_mode()
    def select(self, row: int) -> HFCache:
        rows = torch.tensor([row], device=self._joined().device)
        self.past.batch_select_indices(rows)
        return HFCache(self.past, [self._joined()[rows]])

    def hidden(self) -> torch.Tensor | None:
        joined = self._joined()
        return None if joined is None else joined[0]

    def last_hidden(self) -> torch.Tensor:
        return self._hidden[-1][:, -1]

    def nbytes(self) -> int:
        total = sum(chunk.element_size() * chunk.nelement() for chunk in self._hidden)
        for layer in getattr(self.past, "layers", []):
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None and hasattr(t, "element_size"):
                    total += t.element_size() * t.nelement()
        return total


class HFRunner:
    """Any transformers causal LM behind the runner interface (transformers' speed)."""

    precision = "fp32"

    def __init__(self, model: Any):
        import inspect

        self.model = model
        self.config = model.config
        self.device = next(model.parameters()).device
        params = inspect.signature(type(model).forward).parameters
        # transformers 5.24 renamed the cache argument.
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def new_cache(self, batch: int = 1, capacity: int = 0) -> HFCache:
        return HFCache()

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: HFCache, all_logits: bool = False
                ) -> torch.Tensor:
        out = self.model(input_ids=ids, use_cache=True, output_hidden_states=True,
                         logits_to_keep=0 if all_logits else 1,
                         **{self._cache_kwarg: cache.past})
        cache._hidden.append(out.hidden_states[-1])
        return out.logits.float() if all_logits else out.logits[:, -1].float()


Runner = GPT2Runner | HFRunner



def runner_for(model: Any) -> Runner:
    """The fp32 runner of a transformers model (made once, kept on the model), or `model`
    itself when it is a runner already."""
    if isinstance(model, (GPT2Runner, HFRunner)):
        return model
    runner = model.__dict__.get("_gptterm_runner")
    if runner is None:
        runner = GPT2Runner(model) if supports(model) else HFRunner(model)
        model.__dict__["_gptterm_runner"] = runner
    return runner
