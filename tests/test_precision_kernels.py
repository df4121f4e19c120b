"""int8 on a CPU takes the kernel that is faster for the model's width: fbgemm's dynamic
int8 for wide models, weight-only int8 for narrow ones like the shipped models."""

import torch
from transformers import AutoModelForCausalLM

from gptterm.engine import precision
from tiny import build_model



def int8_kernels(tmp_path, width: int, monkeypatch) -> list[str]:
    """Which kernels building an int8 runner of a `width`-wide model calls."""
    model_dir = build_model(tmp_path / f"w{width}", n_layer=1, n_embd=width, n_head=2)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    used = []
    for name in ("_dynamic_int8", "_int8_matmul"):
        real = getattr(precision, name)
        monkeypatch.setattr(precision, name,
                            lambda *a, _real=real, _name=name: used.append(_name) or _real(*a))
    runner = precision.build(model, "int8")
    cache = runner.new_cache()
    logits = runner.forward(torch.tensor([[1, 2, 3]]), cache)
    assert torch.isfinite(logits).all()
    return sorted(set(used))


def test_narrow_models_take_the_weight_only_kernel_and_wide_ones_fbgemm(tmp_path, monkeypatch):
    if not precision._dynamic_int8_ok("cpu"):  # no fbgemm: weight-only for every width
        assert int8_kernels(tmp_path, 576, monkeypatch) == ["_int8_matmul"]
        return
    assert int8_kernels(tmp_path, precision.WEIGHT_ONLY_WIDTH, monkeypatch) == ["_int8_matmul"]
    monkeypatch.undo()
    assert int8_kernels(tmp_path, precision.WEIGHT_ONLY_WIDTH + 64, monkeypatch) \
        == ["_dynamic_int8"]
