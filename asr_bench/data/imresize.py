"""MATLAB `imresize(img, scale, 'bicubic')`, vectorised in torch.

Why our own: every SR benchmark's LR images were made by MATLAB's bicubic (cubic kernel a = -0.5, width 4,
widened by 1/s when shrinking = antialiasing, symmetric padding at the borders). PIL, OpenCV and
`torch.nn.functional.interpolate` all differ from it by several grey levels, enough to move PSNR.

Two modes:
- ``"float"``: one linear resize without intermediate rounding; on [0,1] floats this equals BasicSR's
  `imresize` (to float rounding). A uint8 input is rounded once at the end.
- ``"uint8"``: what MATLAB does to a uint8 image: after *each* 1-D pass the values are rounded half away
  from zero and saturated to [0, 255]. This reproduces the benchmark `LR_bicubic` files pixel for pixel.

The passes run in MATLAB's order: the axis with the smaller scale first, the height axis first on a tie.
Each pass is a gather of the few contributing input rows/columns per output (weights + indices per axis),
accumulated over the kernel taps: O(taps * output) work, no per-pixel Python loops.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import UserError

MODES = ("float", "uint8")
KERNEL_WIDTH = 4.0


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return inner + outer


def contributions(
    in_len: int, out_len: int, scale: float, antialias: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output sample: the input indices it reads (symmetric padding folded in) and their weights.

    Returns (weights, indices), both (out_len, taps); weights float64 and each row sums to 1.
    Follows MATLAB's `contributions`: output pixel x (1-based) sits at u = x/s + (1 - 1/s)/2 in input
    coordinates; when shrinking with antialias the kernel is stretched by 1/s and scaled by s.
    """
    stretch = scale < 1 and antialias
    width = KERNEL_WIDTH / scale if stretch else KERNEL_WIDTH
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if stretch else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    keep = (weights != 0).any(dim=0)  # MATLAB drops tap columns that are zero for every output
    weights, indices = weights[:, keep], indices[:, keep].long()
    return weights, _mirror(indices - 1, in_len)


def _mirror(index: torch.Tensor, length: int) -> torch.Tensor:
    """Symmetric padding (edge sample repeated: ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...), any reach."""
    period = index.remainder(2 * length)
    return torch.where(period < length, period, 2 * length - 1 - period)


def _resize_axis(
    x: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool, dtype: torch.dtype
) -> torch.Tensor:
    """One 1-D pass along `dim`: out[i] = sum_k w[i, k] * x[idx[i, k]]."""
    if dim == -1:  # gathering whole rows is several times faster than gathering strided columns
        return _resize_axis(x.transpose(-1, -2).contiguous(), -2, out_len, scale, antialias, dtype).transpose(-1, -2)
    weights, indices = contributions(x.shape[dim], out_len, scale, antialias)
    weights = weights.to(dtype=dtype, device=x.device)
    indices = indices.to(x.device)
    shape = [1] * x.ndim
    shape[dim] = out_len
    out = x.index_select(dim, indices[:, 0]).mul_(weights[:, 0].view(shape))
    for k in range(1, weights.shape[1]):  # in place: peak memory is the output plus one tap
        out.add_(x.index_select(dim, indices[:, k]).mul_(weights[:, k].view(shape)))
    return out


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's round (half away from zero), not torch's half-to-even."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _saturate_uint8(x: torch.Tensor) -> torch.Tensor:
    return round_half_away(x).clamp_(0, 255)


def _plan(
    in_hw: tuple[int, int], scale: float | Sequence[float] | None, size: Sequence[int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-axis kernel scale, as MATLAB derives them."""
    if (scale is None) == (size is None):
        raise UserError("imresize needs exactly one of scale= or size=; e.g. imresize(img, scale=1/4).")
    if size is not None:
        out = tuple(int(v) for v in size)
        if len(out) != 2 or min(out) < 1:
            raise UserError(f"imresize size {size!r} must be (H, W) with positive integers.")
        return out, (out[0] / in_hw[0], out[1] / in_hw[1])  # type: ignore[return-value]
    pair = tuple(float(s) for s in scale) if isinstance(scale, Sequence) else (float(scale), float(scale))
    if len(pair) != 2 or not all(math.isfinite(s) and s > 0 for s in pair):
        raise UserError(f"imresize scale {scale!r} must be a positive number or an (sy, sx) pair; e.g. 0.25.")
    # MATLAB: ceil(scale * size); the 1e-9 keeps 255 * (1/3) from becoming 86 through float error.
    out = tuple(max(1, math.ceil(s * n - 1e-9)) for s, n in zip(pair, in_hw))
    return out, pair  # type: ignore[return-value]


def resize_tensor(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    quantize_each_pass: bool = False,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize the last two axes of a float tensor (..., H, W); optionally round+saturate after each pass."""
    (out_h, out_w), (sy, sx) = _plan((x.shape[-2], x.shape[-1]), scale, size)
    passes = [(-2, out_h, sy), (-1, out_w, sx)]
    if sx < sy:  # MATLAB resizes the axis with the smallest scale first (stable sort: height on a tie)
        passes.reverse()
    for dim, out_len, s in passes:
        if out_len == x.shape[dim] and s == 1:
            continue  # the cubic kernel at integer offsets is the identity
        x = _resize_axis(x, dim, out_len, s, antialias, x.dtype)
        if quantize_each_pass:
            x = _saturate_uint8(x)
    return x


def imresize(
    img: torch.Tensor | np.ndarray,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    mode: str | None = None,
    antialias: bool = True,
) -> torch.Tensor | np.ndarray:
    """MATLAB bicubic resize; returns the same type (and layout) as the input.

    img: torch tensor (C,H,W) or (B,C,H,W), or numpy HxWxC / HxW. float values are taken as they are
    (usually [0,1]); uint8 values as 0..255.
    scale: factor or (sy, sx); < 1 shrinks (antialiased). size: exact (H, W) instead.
    mode: "float" (one rounding at the end for uint8 input) or "uint8" (MATLAB uint8 arithmetic:
    round and saturate after each pass); default "uint8" for uint8 input, else "float".
    """
    is_numpy = isinstance(img, np.ndarray)
    if not is_numpy and not isinstance(img, torch.Tensor):
        raise UserError(f"imresize takes a torch tensor or a numpy array, got {type(img).__name__}.")
    is_uint8 = img.dtype == (np.uint8 if is_numpy else torch.uint8)
    mode = mode or ("uint8" if is_uint8 else "float")
    if mode not in MODES:
        raise UserError(f"imresize mode '{mode}' is unknown; use 'float' or 'uint8'.")
    if mode == "uint8" and not is_uint8:
        raise UserError("imresize mode='uint8' needs uint8 input (0..255); "
                        "convert with to_uint8() or use mode='float'.")
    if img.ndim < 2:
        raise UserError(f"imresize needs an image, got shape {tuple(img.shape)}.")

    x = _to_channels_first(img) if is_numpy else img
    work_dtype = torch.float64 if is_uint8 else (x.dtype if x.is_floating_point() else torch.float32)
    y = resize_tensor(x.to(work_dtype).contiguous(), scale, size,
                      quantize_each_pass=(mode == "uint8"), antialias=antialias)
    if is_uint8:
        y = _saturate_uint8(y).to(torch.uint8)
    else:
        y = y.to(x.dtype) if x.is_floating_point() else y
    return _from_channels_first(y, img.ndim) if is_numpy else y


def _to_channels_first(array: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC numpy -> (C,H,W) or (1,H,W) tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor[None] if array.ndim == 2 else tensor.permute(2, 0, 1)


def _from_channels_first(tensor: torch.Tensor, ndim: int) -> np.ndarray:
    out = tensor[0] if ndim == 2 else tensor.permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())
