"""Luma (Y of BT.601 studio-range YCbCr) in the two forms SR papers use.

- BasicSR / GSASR / SwinIR: Y = 16 + (65.481 R + 128.553 G + 24.966 B) on RGB in [0,1], giving [16, 235].
  BasicSR's `to_y_channel` rounds the result to float32 before the float64 metric; `y_basicsr` does the same
  so that PSNR/SSIM equal BasicSR's to the last digit.
- EDSR / LIIF / Meta-SR `calc_psnr`: the *difference* image is weighted by (65.738, 129.057, 25.064) / 256
  (the +16 cancels); see `Y256_COEFFS`.
"""
from __future__ import annotations

import torch

Y_BT601_COEFFS = (65.481, 128.553, 24.966)   # R, G, B (on [0,1] input, output on the 0..255 scale)
Y256_COEFFS = (65.738, 129.057, 25.064)       # R, G, B, divided by 256 (EDSR-PyTorch utility.calc_psnr)


def as_rgb01(image: torch.Tensor) -> torch.Tensor:
    """(3,H,W) or (1,3,H,W) -> (3,H,W); the metrics score one image at a time."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"metrics score one image at a time, got a batch of {image.shape[0]}")
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3,H,W) or (1,3,H,W), got {tuple(image.shape)}")
    return image


def y_basicsr(rgb01: torch.Tensor) -> torch.Tensor:
    """(3,H,W) RGB in [0,1] -> (H,W) Y on the 0..255 scale, float64, BasicSR's float32 rounding reproduced.

    In place, in BasicSR's order of operations (float64 dot in B, G, R order, +16, /255, float32, *255): the
    metrics call this on full-size images, where every temporary is another pass over tens of MB."""
    r, g, b = rgb01.to(torch.float32).contiguous()   # decoded images arrive channels-last
    kr, kg, kb = Y_BT601_COEFFS
    y = b.to(torch.float64).mul_(kb)
    y.add_(g.to(torch.float64).mul_(kg)).add_(r.to(torch.float64).mul_(kr)).add_(16.0).div_(255.0)
    return y.to(torch.float32).mul_(255.0).to(torch.float64)


def y_exact(rgb01: torch.Tensor) -> torch.Tensor:
    """The same Y in plain float64 (no float32 step), for checks and RGB-free callers."""
    coeffs = torch.tensor(Y_BT601_COEFFS, dtype=torch.float64).view(3, 1, 1)
    return (rgb01.to(torch.float64) * coeffs).sum(0) + 16.0


def y256_difference(diff01: torch.Tensor) -> torch.Tensor:
    """(3,H,W) difference on [0,1] -> (H,W) luma difference, EDSR/LIIF style (coefficients / 256)."""
    coeffs = torch.tensor(Y256_COEFFS, dtype=torch.float64).view(3, 1, 1) / 256.0
    return (diff01.to(torch.float64) * coeffs).sum(0)
