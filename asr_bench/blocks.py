"""Building blocks that more than one method uses, written once: methods import them from here, never from
each other.

- `MLP`: the Linear/ReLU stack of the LIIF repo (keys `layers.{0,2,4,...}`), LIIF's decoder and Meta-SR's
  weight predictor.
- `make_coord`, `nearest_index`: LIIF-style pixel-centre coordinates and the index `grid_sample` picks for them.
- `pad_to_multiple`: the bottom/right reflect padding that GSASR, SwinIR-based heads and RT4KSR need.
- `Normalisation`: a preset's input normalisation (mean, std, range) and its inverse, as a module so that its
  constants follow `.to(device, dtype)`.
- `DIV2K_MEAN`: the RGB mean that EDSR-family code subtracts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MLP(nn.Module):
    """Linear/ReLU stack named like the LIIF repo's `models/mlp.py` (keys `layers.{0,2,4,...}`)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).view(*shape, -1)


def make_coord(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of one axis in [-1, 1], float32, with the LIIF repo's operation order."""
    r = 2 / (2 * n)
    return -1 + r + (2 * r) * torch.arange(n, device=device).float()


def nearest_index(coord: torch.Tensor, n: int) -> torch.Tensor:
    """The index grid_sample(mode='nearest', align_corners=False) picks on an axis of length n.

    Asked of grid_sample itself (sampling an index ramp), so ties round exactly as in the official code.
    """
    ramp = torch.arange(n, device=coord.device, dtype=torch.float32).view(1, 1, n, 1)
    grid = torch.stack([torch.zeros_like(coord), coord], dim=-1).view(1, -1, 1, 2)
    return F.grid_sample(ramp, grid, mode="nearest", align_corners=False).view(-1).long()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom/right to a multiple (replicate where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


@dataclass(frozen=True)
class InputRange:
    """What a network expects: `(x * range - mean * range) / std` of RGB in [0, 1]; identity by default."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    range: float = 1.0

    def describe(self) -> str:
        return f"mean {self.mean}, std {self.std}, range {self.range:g}"


class Normalisation(nn.Module):
    """`forward` maps [0, 1] RGB into a network's range, `undo` maps its output back.

    Identity steps are skipped so that e.g. LIIF's (x - 0.5) / 0.5 is the same float sequence as the official.
    """

    def __init__(self, spec: InputRange = InputRange()) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * spec.range, persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.scaled, self.centred = spec.range != 1, any(spec.mean)
        self.divided = any(s != 1 for s in spec.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scaled:
            x = x * self.spec.range
        if self.centred:
            x = x - self.mean
        if self.divided:
            x = x / self.std
        return x

    def undo(self, y: torch.Tensor) -> torch.Tensor:
        if self.divided:
            y = y * self.std
        if self.centred:
            y = y + self.mean
        if self.scaled:
            y = y / self.spec.range
        return y
