"""PSNR and SSIM exactly as BasicSR's `calculate_psnr` / `calculate_ssim`, plus the EDSR/LIIF PSNR.

BasicSR works on [0,255] float64 images, after an optional Y conversion (`colour.y_basicsr`) and a border
crop. SSIM: 11x11 Gaussian window (sigma 1.5, normalised like cv2.getGaussianKernel), valid region only,
C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean of the map, averaged over channels. Everything in float64 so the
result is deterministic and equal to the reference to ~1e-12.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .colour import as_rgb01, y256_difference, y_basicsr


def _prepare(sr: torch.Tensor, hr: torch.Tensor, crop: int, y_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as (C,H,W) float64 on the 0..255 scale, cropped, Y or RGB."""
    sr, hr = as_rgb01(sr), as_rgb01(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"image sizes differ: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")
    crop = int(crop)
    if crop:
        sr, hr = sr[:, crop:-crop, crop:-crop], hr[:, crop:-crop, crop:-crop]
    if y_channel:
        return y_basicsr(sr)[None], y_basicsr(hr)[None]
    return _levels(sr), _levels(hr)


def _levels(rgb01: torch.Tensor) -> torch.Tensor:
    """RGB on the 0..255 scale, float64; exact integers when the image holds uint8 levels (k/255 in float32),
    as BasicSR sees a saved PNG, so RGB PSNR equals its value to the last digit."""
    scaled = rgb01.to(torch.float64) * 255.0
    levels = scaled.round()
    if torch.equal(levels.to(torch.float32) / 255, rgb01.to(torch.float32)):
        return levels
    return scaled


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, y_channel: bool = True) -> float:
    """BasicSR calculate_psnr (peak 255) on RGB [0,1] tensors; inf for identical images."""
    a, b = _prepare(sr, hr, crop, y_channel)
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """cv2.getGaussianKernel(size, sigma), float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """BasicSR's 2-D window: the 1-D kernel's outer product."""
    g = gaussian_1d(size, sigma)
    return g[:, None] * g[None, :]


def _blur_valid(x: torch.Tensor) -> torch.Tensor:
    """(C,H,W) -> (C,H-10,W-10): the 11x11 Gaussian over the valid region, as two 1-D passes (same sums, 5x
    fewer operations than the 2-D window; equal to float64 rounding)."""
    c = x.shape[0]
    g = gaussian_1d()
    x = F.conv2d(x[None], g.view(1, 1, 11, 1).expand(c, 1, 11, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, 11).expand(c, 1, 1, 11), groups=c)[0]


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, y_channel: bool = True) -> float:
    """BasicSR calculate_ssim: per-channel SSIM over the valid region, averaged."""
    a, b = _prepare(sr, hr, crop, y_channel)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = _blur_valid(a), _blur_valid(b)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _blur_valid(a * a) - mu1_sq
    sigma2_sq = _blur_valid(b * b) - mu2_sq
    sigma12 = _blur_valid(a * b) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean(dim=(1, 2)).mean().item())


def psnr_shave(sr: torch.Tensor, hr: torch.Tensor, shave: int, y_channel: bool = True) -> float:
    """EDSR/LIIF `calc_psnr`: diff on [0,1]; Y = sum diff_c * k_c / 256 or RGB; shave a border; peak 1.

    Float64 here (LIIF computes in float32: our value differs from its print-out by ~1e-5 dB at most).
    """
    sr, hr = as_rgb01(sr), as_rgb01(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"image sizes differ: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")
    diff = sr.to(torch.float64) - hr.to(torch.float64)
    diff = y256_difference(diff)[None] if y_channel else diff
    shave = int(shave)
    if shave:
        diff = diff[:, shave:-shave, shave:-shave]
    mse = torch.mean(diff * diff).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
