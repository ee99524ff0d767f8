"""Weight-only int8 linear layers for one-stream decoding on CPU.

At batch 1 every generated token reads every weight once, so a chat answer's speed is set by
how many bytes the weights take and how well the matrix-vector kernel streams them. PyTorch's
fp32 and bf16 ``linear`` at one row stream far below the machine's read bandwidth on some CPUs;
its int8 weight-only kernel (``_weight_int8pack_mm``, the one torchao and gpt-fast use on CPU)
reads a quarter of the fp32 bytes with bf16 activations. Each output channel keeps its own scale
(symmetric, per channel), which costs about 1 % of perplexity on the default model.

The kernel is built for a few rows: a prompt (many rows) goes through a bf16 matmul on the
int8 weights converted on the fly: a 791-token prompt takes within a few per cent of bf16.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

FEW_ROWS = 4  # up to this many rows the int8 kernel beats a bf16 matmul (measured; more rows lose)


def kernel_available() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights and one scale per output channel."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("qweight", torch.round(weight / scales[:, None]).clamp(-127, 127)
                             .to(torch.int8).contiguous())
        self.register_buffer("scales", scales.to(dtype))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(self.scales.dtype)
        if rows.shape[0] <= FEW_ROWS:
            out = torch._weight_int8pack_mm(rows, self.qweight, self.scales)
        else:  # (x @ q^T) * s == x @ (q * s)^T, without a scaled copy of the weights
            out = nn.functional.linear(rows, self.qweight.to(rows.dtype)).mul_(self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def quantize_linears(model: Any, dtype: Any = None) -> int:
    """Replace every ``nn.Linear`` of ``model`` (the output head included) by an int8 one, in
    place; returns how many. ``dtype`` is the activations' (bf16 unless given)."""
    dtype = dtype or torch.bfloat16
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child, dtype))
                replaced += 1
    return replaced


def is_int8(model: Any) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


def describe_weights(model: Any) -> str:
    """``int8 weights, bfloat16 activations`` or the float dtype, for the chat's status line."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    dtype = str(params[0].dtype if params else torch.float32).replace("torch.", "")
    return f"int8 weights, {dtype} activations" if is_int8(model) else f"{dtype} weights"


def decode_bytes(model: Any) -> int:
    """Bytes one generated token reads: every weight once, except the input embedding table,
    of which it reads one row (unless the output head is that same table)."""
    seen, total = set(), 0
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_is_embedding = head is not None and getattr(head, "weight", None) is embedding
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen or (tensor is embedding and not head_is_embedding):
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
    return total


@functools.lru_cache(maxsize=None)
def int8_pays(dtype_name: str) -> bool:
    """Whether one row through the int8 kernel beats ``dtype_name``'s linear on this CPU, in a
    quick timing on a weight larger than the caches (needs native bf16: the kernel runs bf16)."""
    if not kernel_available():
        return False
    from workbench.runtime import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        return False
    from workbench.models.generation import seconds_for

    linear = nn.Linear(4096, 4096, bias=False)
    quantized = Int8Linear(linear, torch.bfloat16)
    plain = linear.to(getattr(torch, dtype_name))
    row = torch.randn(1, 4096)
    with torch.inference_mode():
        int8 = seconds_for(lambda: quantized(row), 5)
        full = seconds_for(lambda: plain(row.to(plain.weight.dtype)), 5)
    return int8 * 1.3 < full
