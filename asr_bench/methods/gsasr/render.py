"""GSASR's side of rendering: raw Gaussian parameters -> kernel inputs -> image (docs/methods/gsasr.md §3.5, §4.1).

The activations, the sigma-to-NDC conversion (with its swapped axes), the align_corners remap of the centres and
colour*opacity are part of the method and live here; the splatting maths (§4.2) is the shared op
`asr_bench.ops.rasterize`. Until that op is importable, `_reference_splat` below (a direct, chunked torch port of
§4.2) stands in, so the method works on any checkout.
"""
from __future__ import annotations

import torch

DEFAULT_STEP = 1.2  # official `default_step_size`: a sigma of 1 spans s/1.2 output pixels


def activate(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Official activations on raw (N, 9) columns; each result is (N, 1) or (N, 3), float32."""
    raw = raw.float()
    return {
        "sigma_x": 0.99999 * torch.sigmoid(raw[:, 0:1]) + 1e-6,  # std along the image HEIGHT (§9.10)
        "sigma_y": 0.99999 * torch.sigmoid(raw[:, 1:2]) + 1e-6,  # std along the image WIDTH
        "rho": 0.999999 * torch.tanh(raw[:, 2:3]),
        "colours": torch.sigmoid(raw[:, 4:7]) * torch.sigmoid(raw[:, 3:4]),
        "coords": raw[:, 7:9] * 2 - 1,  # NDC, align_corners=False, x (width) first
    }


def step_size(scale: float) -> torch.Tensor:
    """1.2 / s as the official computes it: reciprocal of float32 s, times 1.2, in float32."""
    return DEFAULT_STEP / torch.tensor(scale, dtype=torch.float32)


def kernel_inputs(raw: torch.Tensor, height: int, width: int, scale: tuple[float, float]) -> dict[str, torch.Tensor]:
    """The rasterizer's inputs for an height x width render, in the official float32 operation order.

    Returns std along x (`sx`, NDC of width), std along y (`sy`), rho, centres in align_corners=True NDC (N, 2)
    and premultiplied colours (N, 3). `scale` = (s_vertical, s_horizontal); the official code only knows s_v = s_h.
    """
    p = activate(raw)
    dev = raw.device
    w_sr = torch.tensor(width, device=dev)  # int64 tensors, as the official sr_size: 1/W is then a float32 op
    h_sr = torch.tensor(height, device=dev)
    step_h, step_v = step_size(scale[1]).to(dev), step_size(scale[0]).to(dev)
    sx = p["sigma_y"] / step_h * 2 / (w_sr - 1)
    sy = p["sigma_x"] / step_v * 2 / (h_sr - 1)
    x, y = centres(p["coords"], height, width)
    return {"sigma_x": sx[:, 0].contiguous(), "sigma_y": sy[:, 0].contiguous(), "rho": p["rho"][:, 0].contiguous(),
            "coords": torch.stack([x, y], dim=-1).contiguous(), "colours": p["colours"].contiguous()}


def centres(coords: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NDC centres (..., 2) with align_corners=False -> the kernel's align_corners=True x and y, float32 as official."""
    w_sr = torch.tensor(width, device=coords.device)
    h_sr = torch.tensor(height, device=coords.device)
    x = (coords[..., 0] + 1 - 1 / w_sr) * w_sr / (w_sr - 1) - 1.0
    y = (coords[..., 1] + 1 - 1 / h_sr) * h_sr / (h_sr - 1) - 1.0
    return x, y


def reaches(means: torch.Tensor, height: int, width: int, dmax: float, rows: tuple[int, int],
            cols: tuple[int, int]) -> torch.Tensor:
    """Whether each Gaussian, by its centre (..., 2) in [0, 1] (the decoder's mean columns), may add to a pixel in
    rows [start, stop) x cols [start, stop) of a height x width render -> bool (...).

    The rasterizer adds a Gaussian only inside its +-dmax NDC box around the centre; this test widens the box by two
    pixels on every side, so float rounding in the kernel's own test can never make it keep a pixel this drops.
    Gaussians it rejects add exactly nothing to the region (NaN centres are rejected: they render nothing either).
    """
    if rows[1] <= rows[0] or cols[1] <= cols[0]:
        return torch.zeros(means.shape[:-1], dtype=torch.bool, device=means.device)

    def inside(t: torch.Tensor, span: tuple[int, int], n: int) -> torch.Tensor:
        pixel = 2.0 / (n - 1)  # the NDC width of one pixel
        low, high = span[0] * pixel - 1.0, (span[1] - 1) * pixel - 1.0
        return (t + dmax >= low - 2 * pixel) & (t - dmax <= high + 2 * pixel)

    x, y = centres(means.float() * 2 - 1, height, width)
    return inside(x, cols, width) & inside(y, rows, height)


def render(raw: torch.Tensor, height: int, width: int, scale: tuple[float, float], dmax: float,
           backend: str = "auto") -> torch.Tensor:
    """Raw Gaussians (N, 9) of one image -> (3, height, width) float32, summed additively inside the dmax box."""
    k = kernel_inputs(raw, height, width, scale)
    try:
        from asr_bench.ops.rasterize import rasterize
    except ImportError:
        rasterize = None
    if rasterize is None:
        return _reference_splat(k["sigma_x"], k["sigma_y"], k["rho"], k["coords"], k["colours"], height, width, dmax)
    return rasterize(k["sigma_x"], k["sigma_y"], k["rho"], k["coords"], k["colours"], height, width, dmax,
                     backend=backend)


def _pixel_axis(n: int, device: torch.device) -> torch.Tensor:
    """NDC of pixel i, align_corners=True: float(2.0*i/(n-1) - 1.0) evaluated in double like the kernel."""
    return (2.0 * torch.arange(n, dtype=torch.float64, device=device) / (n - 1) - 1.0).float()


def _reference_splat(sx: torch.Tensor, sy: torch.Tensor, rho: torch.Tensor, coords: torch.Tensor,
                     colours: torch.Tensor, height: int, width: int, dmax: float, chunk: int = 1024) -> torch.Tensor:
    """Stand-in for the shared op: §4.2 maths per Gaussian over its inclusive NDC box, chunked, float32."""
    dev = coords.device
    xs, ys = _pixel_axis(width, dev), _pixel_axis(height, dev)
    d = torch.tensor(dmax, dtype=torch.float32, device=dev)
    kx = int(dmax * (width - 1)) + 3
    ky = int(dmax * (height - 1)) + 3
    out = torch.zeros(3, height * width, dtype=torch.float32, device=dev)
    # Per-Gaussian constants, with the kernel's double-then-float roundings.
    a2 = (1.0 / sx.double() / sx.double()).float()
    b2 = (1.0 / sy.double() / sy.double()).float()
    rab = 2 * rho / sx / sy
    nh = (-0.5 / (1 - rho * rho).double()).float()
    for s in range(0, coords.shape[0], chunk):
        e = slice(s, s + chunk)
        cx, cy = coords[e, 0], coords[e, 1]
        col0 = torch.floor((cx - d + 1) * (width - 1) / 2).long() - 1
        row0 = torch.floor((cy - d + 1) * (height - 1) / 2).long() - 1
        cols = col0[:, None] + torch.arange(kx, device=dev)
        rows = row0[:, None] + torch.arange(ky, device=dev)
        cols_ok = (cols >= 0) & (cols < width)
        rows_ok = (rows >= 0) & (rows < height)
        cols, rows = cols.clamp(0, width - 1), rows.clamp(0, height - 1)
        dx = xs[cols] - cx[:, None]
        dy = ys[rows] - cy[:, None]
        cols_ok &= (dx <= d) & (dx >= -d)
        rows_ok &= (dy <= d) & (dy >= -d)
        dx3, dy3 = dx[:, None, :], dy[:, :, None]
        v = a2[e, None, None] * dx3 * dx3
        v = v - rab[e, None, None] * dx3 * dy3
        v = v + b2[e, None, None] * dy3 * dy3
        v = torch.exp(v * nh[e, None, None])
        v = v * (rows_ok[:, :, None] & cols_ok[:, None, :])
        index = (rows[:, :, None] * width + cols[:, None, :]).reshape(-1)
        for c in range(3):
            out[c].index_add_(0, index, (v * colours[e, c, None, None]).reshape(-1))
    return out.view(3, height, width)
