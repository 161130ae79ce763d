"""Attention inside windows with an additive bias (relative-position bias), as GSASR's paper decoder runs it:

    out[b, i, h*d:(h+1)*d] = sum_j softmax_j(scale * q[b,h,i] . k[b,h,j] + bias[h,i,j]) v[b,h,j]

q (B, heads, Nq, d), k and v (B, heads, Nk, d) may be strided views (the decoder passes slices of its fused
projections); bias is (heads, Nq, Nk); the result is (B, Nq, heads*d), heads merged, contiguous.

Backends (`window_attention(..., backend=)`; which one ran is recorded in `asr_bench.ops.backend_log`):
- 'cpp': csrc/window_attention/cpu.cpp, one task per (window, head) whose scores never leave the cache; AVX2+FMA
  kernels where the CPU has them. Forward only (inference), float32; compiled at first use and trusted only after
  its self-test, like the other compiled ops.
- 'torch': `window_attention_torch`, the explicit math over groups of windows (the path it replaces).
'auto': 'cpp' for float32 CPU tensors without a gradient to compute when it is live, else 'torch'. (On CUDA the
decoder calls scaled_dot_product_attention itself, which equals this math there.)
"""
from __future__ import annotations

import torch

from ...errors import UnknownName, UserError
from ..spec import OpSpec
from ..usage import op_flops, record
from . import cases

OP_NAME = "window_attention"
BACKENDS = ("auto", "cpp", "torch")
GROUP = 4  # windows per torch-path chunk: 4 x 6 heads x 144^2 fp32 scores = 2 MB, about one L2


def window_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                               scale: float) -> torch.Tensor:
    """The definition, in one piece (the self-test's specification)."""
    p = ((q * scale) @ k.transpose(-2, -1) + bias).softmax(-1)
    out = p @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def window_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
                           group: int = GROUP) -> torch.Tensor:
    """The same math over groups of `group` windows, in the official operation order.

    Each group's q, k, v are copied contiguous (a strided q @ k^T costs 1.5x), and its scores stay in cache instead
    of a (windows x heads x N x N) tensor that reaches gigabytes on a 720p tile. Every window's arithmetic is the
    same whatever the grouping.
    """
    b_, heads, n, d = q.shape
    bias = bias.to(q.dtype)
    out = q.new_empty(b_, n, heads, d)
    for start in range(0, b_, group):
        rows = slice(start, start + group)
        scores = (q[rows] * scale).contiguous() @ k[rows].contiguous().transpose(-2, -1)
        scores += bias  # in place: one fewer scores buffer, same sum
        out[rows] = (scores.softmax(-1) @ v[rows].contiguous()).transpose(1, 2)
    return out.view(b_, n, heads * d)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
                     backend: str = "auto") -> torch.Tensor:
    """softmax(scale q k^T + bias) v per window and head, heads merged -> (B, Nq, heads*d) (module docstring)."""
    name, module = _choose(backend, (q, k, v, bias))
    record(OP_NAME, name)
    with op_flops(OP_NAME, lambda: cases.flops(q, k, v, bias, scale)):
        if module is None:
            return window_attention_torch(q, k, v, bias, scale)
        return module.forward(q, k, v, bias.to(q.dtype), float(scale))


def _choose(backend: str, tensors: tuple[torch.Tensor, ...]):
    """(backend that runs, compiled module or None)."""
    if backend not in BACKENDS:
        raise UnknownName("window attention backend", backend, BACKENDS)
    q = tensors[0]
    compiled_can = (q.device.type == "cpu" and all(t.dtype == torch.float32 for t in tensors[:3])
                    and q.shape[-1] <= 32 and all(t.stride(-1) == 1 for t in tensors[:3])
                    and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)))
    from ..backends import resolve_backend

    if backend == "torch" or (backend == "auto" and not compiled_can):
        return "torch", None
    if backend == "cpp" and not compiled_can:
        raise UserError("window attention backend 'cpp' takes float32 CPU tensors with a contiguous head dim of at "
                        "most 32 and no gradient to compute; use backend 'auto' or 'torch' otherwise.")
    return resolve_backend(OP_NAME, backend, q.device, fallback="the torch math (backend 'torch')")


def _bench_backends(device: torch.device) -> list[str]:
    from ..backends import loadable

    return ["torch", *loadable(OP_NAME, device)]


SPEC = OpSpec(
    name=OP_NAME,
    front=window_attention,
    reference=window_attention_reference,
    selftest=cases.SELFTEST_CASES,
    gradients=None,  # the compiled backend is forward-only (inference)
    workloads=cases.WORKLOADS,
    bench_backends=_bench_backends,
    flops=cases.flops,
    doc="attention inside windows with an additive bias (GSASR's paper decoder)",
)
