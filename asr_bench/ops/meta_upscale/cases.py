"""The meta-upscale op's self-test cases, benchmark workloads and FLOP count (read by its package's SPEC)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..spec import Workload


@dataclass(frozen=True)
class MetaUpscaleCase:
    name: str
    batch: int
    channels: int
    out_channels: int
    lr: tuple[int, int]
    out: tuple[int, int]
    arbitrary_maps: bool  # random (non-monotone, repeated) maps instead of Meta-SR's, with both border lines

    def inputs(self, device: torch.device, seed: int = 0) -> list[Any]:
        """The compiled forward's arguments (features, table, row_source, row_phase, col_source, col_phase)."""
        return meta_upscale_inputs(self, device, seed)


SELFTEST_CASES = (
    MetaUpscaleCase("x2 on 5x7", 1, 8, 3, (5, 7), (10, 14), False),
    MetaUpscaleCase("x3.5 (7 phases per axis) on 4x6", 1, 8, 3, (4, 6), (14, 21), False),
    MetaUpscaleCase("arbitrary maps through the border lines, 2 images, 5 outputs", 2, 3, 5, (5, 4), (9, 11), True),
)


def _meta_sr_axis(n_lr: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta-SR's map of one axis: LR line floor(i n_lr / n_out), phase index of (i n_lr mod n_out)."""
    i = torch.arange(n_out)
    return (i * n_lr) // n_out, torch.unique((i * n_lr) % n_out, return_inverse=True)[1]


def _arbitrary_axis(n_lr: int, n_out: int, phases: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    source = torch.randint(0, n_lr, (n_out,), generator=g)
    source[0], source[-1] = n_lr - 1, 0  # both border lines, read where the zero padding matters
    return source, torch.randint(0, phases, (n_out,), generator=g)


def meta_upscale_inputs(case: MetaUpscaleCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """(features, table, row_source, row_phase, col_source, col_phase) for one case, float32 on `device`."""
    g = torch.Generator().manual_seed(seed)
    (h, w), (height, width) = case.lr, case.out
    if case.arbitrary_maps:
        rows, cols = _arbitrary_axis(h, height, 3, g), _arbitrary_axis(w, width, 2, g)
    else:
        rows, cols = _meta_sr_axis(h, height), _meta_sr_axis(w, width)
    phases = (int(rows[1].max()) + 1, int(cols[1].max()) + 1)
    features = torch.rand(case.batch, case.channels, h, w, generator=g)
    taps = 9 * case.channels
    table = torch.randn(*phases, taps, case.out_channels, generator=g) / math.sqrt(taps)
    return [features.to(device), table.to(device), *(t.to(device) for t in (*rows, *cols))]


def backward_call(backward: Any, inputs: list[Any], grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The compiled backward's ABI: (grad_out, features, table, the four maps) -> (grad_features, grad_table)."""
    return backward(grad_out, *inputs)


# -- benchmark workloads ----------------------------------------------------------------------------------------


def meta_sr_head(scale: float, lr: int = 180, channels: int = 64):
    """A workload maker: Meta-SR's head on an lr x lr map of `channels` channels at x`scale`: each output line
    reads LR line floor(i*h/H) with the weights of its phase, and the table holds the distinct phases (what the
    front hands a backend)."""

    def make(device: torch.device) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        size = math.floor(scale * lr)
        i = torch.arange(size)
        source = (i * lr) // size
        phase = torch.unique((i * lr) % size, return_inverse=True)[1]
        n_phases = int(phase.max()) + 1
        features = torch.randn(1, channels, lr, lr, generator=g)
        table = torch.randn(n_phases, n_phases, 9 * channels, 3, generator=g) / (9 * channels) ** 0.5
        return [t.to(device) for t in (features, table, source, phase, source, phase)]

    return make


def _head_cost(scale: float) -> float:
    """Multiply-adds of the x`scale` head over 3e8 (x4 ~ 3, like the rasterizer's x4 720)."""
    return math.floor(scale * 180) ** 2 * 9 * 64 * 3 / 3e8


WORKLOADS = (
    *[Workload(f"fwd x{s:g} 180x180 C64", meta_sr_head(s), reference_cost=_head_cost(s)) for s in (2, 3.5, 4, 12)],
    Workload("bwd x4 180x180 C64", meta_sr_head(4), "backward", reference_cost=3 * _head_cost(4)),
)


def flops(features: torch.Tensor, table: torch.Tensor, row_source: torch.Tensor, row_phase: torch.Tensor,
          col_source: torch.Tensor, col_phase: torch.Tensor) -> float:
    """FLOPs of one forward call: a 9C-long dot product (a multiply and an add per term) per output value."""
    batch, channels = features.shape[:2]
    return float(2 * batch * table.shape[-1] * row_source.numel() * col_source.numel() * 9 * channels)
