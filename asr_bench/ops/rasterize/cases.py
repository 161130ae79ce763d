"""The rasterizer's self-test cases, benchmark workloads and FLOP count (read by asr_bench/ops/rasterize's SPEC)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..spec import Workload

# FLOPs of one evaluated pixel-Gaussian pair: the quadratic form a2 dx dx - (2 rho/ab) dx dy + b2 dy dy times
# -1/(2(1-rho^2)) (6 multiplies, 2 adds, 1 multiply), one exp (counted as one), and colour * value added into
# three channels (3 multiplies, 3 adds).
PAIR_FLOPS = 16


@dataclass(frozen=True)
class RasterizeCase:
    name: str
    height: int
    width: int
    dmax: float
    count: int
    centre_range: float  # centres uniform in [-centre_range, centre_range] (NDC; > 1 is beyond the border)
    sigma_pixels: tuple[float, float]  # sigmas uniform in this range, in pixels
    rho_max: float

    def inputs(self, device: torch.device, seed: int = 0) -> list[Any]:
        """The compiled forward's arguments: the case's Gaussians, then height, width, dmax."""
        return [*rasterize_inputs(self, device, seed), self.height, self.width, self.dmax]


SELFTEST_CASES = (
    RasterizeCase("non-square 13x21, dmax 0.1", 13, 21, 0.1, 60, 1.0, (0.3, 2.5), 0.9),
    RasterizeCase("centres beyond the border 16x11, dmax 0.25", 16, 11, 0.25, 50, 1.35, (0.5, 3.0), 0.9),
    RasterizeCase("2x9 image, one box over everything (dmax 2), |rho| to 0.995", 2, 9, 2.0, 8, 1.0, (0.5, 6.0), 0.995),
)


def rasterize_inputs(case: RasterizeCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """GSASR-like Gaussians for one case: (sigma_x, sigma_y, rho, coords, colours), float32, on `device`."""
    g = torch.Generator().manual_seed(seed)
    n, (low, high) = case.count, case.sigma_pixels
    sigma_x = (torch.rand(n, generator=g) * (high - low) + low) * 2 / (case.width - 1)
    sigma_y = (torch.rand(n, generator=g) * (high - low) + low) * 2 / (case.height - 1)
    rho = (torch.rand(n, generator=g) * 2 - 1) * case.rho_max
    coords = (torch.rand(n, 2, generator=g) * 2 - 1) * case.centre_range
    colours = torch.rand(n, 3, generator=g)
    return [t.to(device=device, dtype=torch.float32) for t in (sigma_x, sigma_y, rho, coords, colours)]


def backward_call(backward: Any, inputs: list[Any], grad_image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The compiled backward's ABI: (the five Gaussian tensors, grad_image, height, width, dmax)."""
    return backward(*inputs[:5], grad_image, *inputs[5:])


# -- benchmark workloads ----------------------------------------------------------------------------------------


def gsasr_like_gaussians(lr_h: int, lr_w: int, scale: float, device: torch.device, seed: int = 0):
    """Kernel inputs shaped like GSASR's: 16 Gaussians per LR pixel on a 4x4 sub-grid with ~1 cell offsets,
    sigma = 0.99999 sigmoid(N(0,1)) + 1e-6 (std up to s/1.2 output px), rho = 0.999999 tanh(N(0,1)),
    colour * opacity = U(0,1) * U(0,1) (docs/methods/gsasr.md §3.5, §4.1). Returns (params, height, width)."""
    g = torch.Generator().manual_seed(seed)
    hg, wg = 4 * lr_h, 4 * lr_w
    height, width = math.floor(scale * lr_h), math.floor(scale * lr_w)
    n = hg * wg
    iy, ix = torch.meshgrid(torch.arange(hg), torch.arange(wg), indexing="ij")
    x = ((ix.reshape(-1) + 0.5) + torch.randn(n, generator=g)) / wg * 2 - 1
    y = ((iy.reshape(-1) + 0.5) + torch.randn(n, generator=g)) / hg * 2 - 1
    x = (x + 1 - 1 / width) * width / (width - 1) - 1
    y = (y + 1 - 1 / height) * height / (height - 1) - 1
    step = 1.2 / scale
    sx = (0.99999 * torch.sigmoid(torch.randn(n, generator=g)) + 1e-6) / step * 2 / (width - 1)
    sy = (0.99999 * torch.sigmoid(torch.randn(n, generator=g)) + 1e-6) / step * 2 / (height - 1)
    rho = 0.999999 * torch.tanh(torch.randn(n, generator=g))
    colours = torch.rand(n, 3, generator=g) * torch.rand(n, 1, generator=g)
    params = [t.float().contiguous().to(device) for t in (sx, sy, rho, torch.stack([x, y], 1), colours)]
    return params, height, width


def gsasr_case(lr: int, scale: float, dmax: float):
    """A workload maker: the front's arguments for GSASR-like Gaussians of an lr x lr input at x`scale`."""

    def make(device: torch.device) -> list[Any]:
        params, height, width = gsasr_like_gaussians(lr, lr, scale, device)
        return [*params, height, width, dmax]

    return make


WORKLOADS = (
    *[Workload(f"fwd x{s} 720x720 dmax0.1", gsasr_case(720 // s, s, 0.1),
               reference_cost=(720 / s) ** 2 * 16 * 75**2 / 1e9) for s in (2, 4, 12, 30)],
    Workload("fwd x4 48x48-patch dmax0.5", gsasr_case(48, 4, 0.5), reference_cost=1.2),
    Workload("bwd x4 48x48-patch dmax0.5", gsasr_case(48, 4, 0.5), "backward", reference_cost=3.0),
    Workload("bwd x12 720x720 dmax0.1", gsasr_case(60, 12, 0.1), "backward", reference_cost=1.0),
)


# -- FLOPs --------------------------------------------------------------------------------------------------------


def _pixels_in_box(centre: torch.Tensor, dmax: float, n: int) -> torch.Tensor:
    """Per Gaussian, how many of the n pixel centres X_i = 2i/(n-1) - 1 satisfy |X_i - centre| <= dmax."""
    half = (n - 1) / 2.0
    centre = centre.detach().to(torch.float64)
    first = torch.ceil((centre - dmax + 1.0) * half).clamp(min=0)
    last = torch.floor((centre + dmax + 1.0) * half).clamp(max=n - 1)
    return (last - first + 1).clamp(min=0)


def evaluated_pairs(coords: torch.Tensor, height: int, width: int, dmax: float) -> int:
    """Pixel-Gaussian pairs the op evaluates: each Gaussian's inclusive dmax box, cut at the image."""
    columns = _pixels_in_box(coords[:, 0], dmax, width)
    rows = _pixels_in_box(coords[:, 1], dmax, height)
    return int((columns * rows).sum().item())


def flops(sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor, coords: torch.Tensor,
          colours: torch.Tensor, height: int, width: int, dmax: float) -> float:
    """FLOPs of one forward call: `PAIR_FLOPS` per evaluated pixel-Gaussian pair (the op's definition: every
    pair in a box, also where a backend finds exp(...) to be 0 and skips it)."""
    return float(PAIR_FLOPS * evaluated_pairs(coords, int(height), int(width), float(dmax)))


def kernel_pairs(sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor, coords: torch.Tensor,
                 colours: torch.Tensor, height: int, width: int, dmax: float) -> int | None:
    """Pixel-Gaussian pairs the compiled backends evaluate, each an exp (the dmax box cut by the exact-zero ellipse,
    binning.h), counted by the C++ backend's own span code; None where it can't be built or the inputs aren't
    float32 on the CPU. Fewer than `evaluated_pairs`, which counts every pair of the boxes (the FLOP definition)."""
    from ..build import ExtensionUnavailable, load_extension

    tensors = (sigma_x, sigma_y, rho, coords, colours)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return None
    try:
        module = load_extension("rasterize", "cpp")
    except ExtensionUnavailable:
        return None
    return int(module.evaluated_pairs(*[t.contiguous() for t in tensors], int(height), int(width), float(dmax)))
