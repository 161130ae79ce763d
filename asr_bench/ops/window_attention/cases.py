"""The window attention's self-test cases, benchmark workloads and FLOP count (read by its package's SPEC)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..spec import Workload

# FLOPs per (query, key) pair beyond the 4d of its two dot products: the bias sum, the max, the subtraction,
# the exp (counted as one) and the row sum.
PAIR_FLOPS = 5


@dataclass(frozen=True)
class WindowAttentionCase:
    name: str
    windows: int
    heads: int
    queries: int
    keys: int
    head_dim: int
    layout: str  # "qkv": q, k, v slices of one fused projection (GSASR's self-attention); "separate": own tensors

    def inputs(self, device: torch.device, seed: int = 0) -> list[Any]:
        """The forward's arguments (q, k, v, bias, scale)."""
        return window_attention_inputs(self, device, seed)


SELFTEST_CASES = (
    WindowAttentionCase("GSASR window: 2 windows, 6 heads, 144 tokens, d 30, fused qkv", 2, 6, 144, 144, 30, "qkv"),
    WindowAttentionCase("odd sizes: 13 queries, 21 keys, d 5", 3, 2, 13, 21, 5, "separate"),
    WindowAttentionCase("d 32, 9 queries, 8 keys", 1, 3, 9, 8, 32, "qkv_kv"),
)


def window_attention_inputs(case: WindowAttentionCase, device: torch.device, seed: int = 0) -> list[Any]:
    """q, k, v (windows, heads, N, d) as the decoder hands them (strided views of projections), a bias (heads,
    Nq, Nk) and the 1/sqrt(d) scale; scores spread over ~+-10 so the softmax is neither flat nor one-hot."""
    g = torch.Generator().manual_seed(seed)
    w, h, nq, nk, d = case.windows, case.heads, case.queries, case.keys, case.head_dim
    if case.layout == "qkv" and nq == nk:
        qkv = torch.randn(w, nq, 3, h, d, generator=g).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
    else:
        q = torch.randn(w, nq, h, d, generator=g).permute(0, 2, 1, 3)
        kv = torch.randn(w, nk, 2, h, d, generator=g).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
    bias = torch.randn(h, nq, nk, generator=g) * 2
    return [q.to(device), k.to(device), v.to(device), bias.to(device), d ** -0.5]


def gsasr_layer(windows: int):
    """A workload maker: one attention of GSASR's paper decoder over `windows` 12 x 12 windows (C 180, 6 heads)."""

    def make(device: torch.device) -> list[Any]:
        return window_attention_inputs(WindowAttentionCase("", windows, 6, 144, 144, 30, "qkv"), device)

    return make


WORKLOADS = (
    Workload("fwd GSASR 16 windows", gsasr_layer(16), reference_cost=0.05),
    Workload("fwd GSASR 400 windows (240 px tile)", gsasr_layer(400), reference_cost=1.0),
)


def flops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> float:
    """FLOPs of one call: q k^T and p v (2d each per query-key pair) plus `PAIR_FLOPS` of softmax work."""
    windows, heads, nq, d = q.shape
    return float(windows * heads * nq * k.shape[2] * (4 * d + PAIR_FLOPS))
