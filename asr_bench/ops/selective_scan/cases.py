"""The selective scan's self-test cases, benchmark workload and FLOP count (read by its package's SPEC)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..spec import Workload

# FLOPs per (batch, channel, step, state) element of the recurrence: delta A and its exp, delta B u (two
# multiplies), the state update (a multiply and an add) and its term of y (a multiply and an add).
STATE_FLOPS = 8
# Per (batch, channel, step): the delta bias add and softplus (counted as 3), and D u added to y (2).
STEP_FLOPS = 5


@dataclass(frozen=True)
class SelectiveScanCase:
    name: str
    batch: int
    groups: int
    per_group: int
    state: int
    length: int
    a_max: float       # A uniform in [-a_max, 0): large values make exp(delta A) underflow to 0
    delta_shift: float  # added to N(0, 1) delta: large values take softplus past its threshold of 20

    def inputs(self, device: torch.device, seed: int = 0) -> list[Any]:
        """The forward's arguments (u, delta, A, B, C, D, delta_bias)."""
        return selective_scan_inputs(self, device, seed)


SELFTEST_CASES = (
    SelectiveScanCase("b1, 1 group of 20 channels, N 16, L 64", 1, 1, 20, 16, 64, 4.0, 0.0),
    SelectiveScanCase("b2, 4 groups of 3 channels, N 5, L 37", 2, 4, 3, 5, 37, 4.0, 0.0),
    SelectiveScanCase("b1, 2 groups, N 17, L 129, A to -200, delta + 19", 1, 2, 3, 17, 129, 200.0, 19.0),
)


def selective_scan_inputs(case: SelectiveScanCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """(u, delta, A, B, C, D, delta_bias) for one case, float32 on `device`."""
    g = torch.Generator().manual_seed(seed)
    b, groups, d, n, length = case.batch, case.groups, case.groups * case.per_group, case.state, case.length
    tensors = [torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g) + case.delta_shift,
               -torch.rand(d, n, generator=g) * case.a_max - 1e-3, torch.randn(b, groups, n, length, generator=g),
               torch.randn(b, groups, n, length, generator=g), torch.randn(d, generator=g),
               torch.randn(d, generator=g) * 0.5]
    return [t.to(device) for t in tensors]


def mambair_scan(length: int, channels: int, state: int, groups: int = 4):
    """A workload maker: one SS2D scan of MambaIR: 4 directions x d_inner channels (groups = directions),
    d_state states, L pixels; delta, A and D as the official initialisation makes them (dt ~ 0.01 after
    softplus, A = -(1..N))."""

    def make(device: torch.device) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        u = torch.randn(1, channels, length, generator=g)
        delta = torch.randn(1, channels, length, generator=g) * 0.5
        A = -torch.arange(1, state + 1, dtype=torch.float32).repeat(channels, 1)
        B, C = (torch.randn(1, groups, state, length, generator=g) for _ in range(2))
        D, bias = torch.ones(channels), torch.full((channels,), math.log(math.expm1(0.01)))
        return [t.to(device) for t in (u, delta, A, B, C, D, bias)]

    return make


WORKLOADS = (
    Workload("fwd MambaIR L4096 D1440 N16", mambair_scan(4096, 1440, 16), reference_cost=4096 * 1440 * 16 / 3e7,
             timed_once=("torch", "chunked", "reference")),
)


def flops(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
          D: torch.Tensor, delta_bias: torch.Tensor) -> float:
    """FLOPs of one forward call, counted on the recurrence (`STATE_FLOPS` per state element, `STEP_FLOPS` per
    step; an exp counts as one): what every backend computes, whatever its order of work."""
    batch, channels, length = u.shape
    return float(batch * channels * length * (STATE_FLOPS * A.shape[1] + STEP_FLOPS))
