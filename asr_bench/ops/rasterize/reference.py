"""PyTorch reference of GSASR's Gaussian rasterizer: the specification every other backend is tested against.

It reproduces the maths of the official CUDA kernel (`utils/gs_cuda_dmax/gs.cu`, docs/methods/gsasr.md §4.2):
unnormalised peak-1 Gaussians, a plain sum of colour * value (no compositing), each Gaussian restricted to the
inclusive box |dx| <= dmax, |dy| <= dmax in align_corners=True NDC, pixel centres at X_w = 2w/(W-1) - 1. The
rounding follows the kernel too: pixel positions and the reciprocal constants are computed in double and stored
as float, everything else is float.

It is vectorised over Gaussians in chunks, each Gaussian visiting only the window of rows and columns its box
can reach, so memory stays bounded whatever N is (peak about `_CHUNK_ELEMENTS` * ~14 * 4 bytes, ~250 MB in
float32). When autograd is on, each chunk is checkpointed (recomputed in backward) so that training patches at
large dmax do not keep every chunk's intermediates alive.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

# Pixel-Gaussian pairs evaluated per chunk (bounds the peak memory of the reference).
_CHUNK_ELEMENTS = 1 << 22


def pixel_ndc(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """NDC positions of n pixel centres, align_corners=True, computed in double and stored in `dtype` (gs.cu)."""
    index = torch.arange(n, device=device, dtype=torch.float64)
    return ((2.0 * index) / (n - 1) - 1.0).to(dtype)


def gaussian_constants(sigma_x: torch.Tensor, sigma_y: torch.Tensor, rho: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(1/a^2, 1/b^2, 2 rho/(a b), -1/(2(1-rho^2))) with the kernel's mix of double and float arithmetic."""
    dtype = sigma_x.dtype
    wide_x, wide_y = sigma_x.to(torch.float64), sigma_y.to(torch.float64)
    inv_a2 = (1.0 / wide_x / wide_x).to(dtype)
    inv_b2 = (1.0 / wide_y / wide_y).to(dtype)
    two_rho_ab = 2 * rho / sigma_x / sigma_y
    neg_half_inv = (-0.5 / (1 - rho * rho).to(torch.float64)).to(dtype)
    return inv_a2, inv_b2, two_rho_ab, neg_half_inv


def _window_length(dmax: float, n: int) -> int:
    """How many pixels (of n along an axis) surely hold the dmax box around any centre."""
    return min(int(math.floor(dmax * (n - 1))) + 4, n)


def _window(centre: torch.Tensor, dmax: float, n: int) -> tuple[torch.Tensor, int]:
    """First pixel index and length of a window of pixels that surely holds the dmax box around each centre."""
    length = _window_length(dmax, n)
    first = torch.floor((centre.detach().to(torch.float64) - dmax + 1.0) * ((n - 1) / 2.0)) - 1.0
    first = first.nan_to_num(0.0).clamp(0, n - length).to(torch.long)
    return first, length


def _splat_chunk(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    rho: torch.Tensor,
    coords: torch.Tensor,
    colours: torch.Tensor,
    height: int,
    width: int,
    dmax: float,
) -> torch.Tensor:
    """The (H*W, 3) image of one chunk of Gaussians."""
    device, dtype = colours.device, colours.dtype
    inv_a2, inv_b2, two_rho_ab, neg_half_inv = (c[:, None, None] for c in gaussian_constants(sigma_x, sigma_y, rho))
    limit = torch.tensor(dmax, dtype=dtype, device=device)  # the kernel compares against float(dmax)

    col0, n_cols = _window(coords[:, 0], dmax, width)
    row0, n_rows = _window(coords[:, 1], dmax, height)
    cols = col0[:, None] + torch.arange(n_cols, device=device)  # (C, Kx)
    rows = row0[:, None] + torch.arange(n_rows, device=device)  # (C, Ky)
    dx = (pixel_ndc(width, device, dtype)[cols] - coords[:, 0:1])[:, None, :]  # (C, 1, Kx)
    dy = (pixel_ndc(height, device, dtype)[rows] - coords[:, 1:2])[:, :, None]  # (C, Ky, 1)
    inside = ((dx <= limit) & (dx >= -limit)) & ((dy <= limit) & (dy >= -limit))

    # Same evaluation order as gs.cu: v = a2*dx*dx; v -= 2rho/ab*dx*dy; v += b2*dy*dy; v *= nh; exp.
    power = ((inv_a2 * dx) * dx - (two_rho_ab * dx) * dy + (inv_b2 * dy) * dy) * neg_half_inv
    value = torch.where(inside, torch.exp(power), torch.zeros((), dtype=dtype, device=device))

    flat_index = (rows[:, :, None] * width + cols[:, None, :]).reshape(-1)
    contributions = (value[..., None] * colours[:, None, None, :]).reshape(-1, 3)
    image = torch.zeros(height * width, 3, dtype=dtype, device=device)
    return image.index_add(0, flat_index, contributions)


def rasterize_reference(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    rho: torch.Tensor,
    coords: torch.Tensor,
    colours: torch.Tensor,
    height: int,
    width: int,
    dmax: float,
) -> torch.Tensor:
    """The (3, H, W) image of the Gaussians (argument contract: `asr_bench.ops.rasterize`); differentiable."""
    n_cols, n_rows = _window_length(dmax, width), _window_length(dmax, height)
    chunk = max(1, _CHUNK_ELEMENTS // (n_cols * n_rows))
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (sigma_x, sigma_y, rho, coords, colours)
    )
    image = torch.zeros(height * width, 3, dtype=colours.dtype, device=colours.device)
    for start in range(0, colours.shape[0], chunk):
        part = [t[start : start + chunk] for t in (sigma_x, sigma_y, rho, coords, colours)]
        if needs_grad:
            image = image + checkpoint(_splat_chunk, *part, height, width, dmax, use_reentrant=False)
        else:
            image += _splat_chunk(*part, height, width, dmax)
    return image.reshape(height, width, 3).permute(2, 0, 1).contiguous()


def rasterize_reference_unchunked(*arguments: Any) -> torch.Tensor:
    """`rasterize_reference(*arguments)` in one chunk and without checkpointing, for the self-test's small cases:
    checkpointing imports torch._dynamo (seconds at first use), and the self-test runs in every worker process."""
    height, width = arguments[5], arguments[6]
    return _splat_chunk(*arguments).reshape(height, width, 3).permute(2, 0, 1)
