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


TORCH_GRAIN_SIZE = 32768   # elements below which a torch CPU op runs on one thread (at::internal::GRAIN_SIZE)
MAX_STRIP_ROWS = 16


def _blur_valid(x: torch.Tensor) -> torch.Tensor:
    """(R+10, W) -> (R, W-10): the 11x11 Gaussian over the valid region, as two 1-D passes of 11 shifted
    multiply-adds (the same sums as the 2-D window, equal to float64 rounding)."""
    taps = gaussian_1d().tolist()
    rows, out_w = x.shape[0] - 10, x.shape[1] - 10
    vertical = x[0:rows] * taps[0]
    for k in range(1, 11):
        vertical.add_(x[k:k + rows], alpha=taps[k])
    out = vertical[:, 0:out_w] * taps[0]
    for k in range(1, 11):
        out.add_(vertical[:, k:k + out_w], alpha=taps[k])
    return out


def _ssim_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of BasicSR's SSIM map of one (H, W) channel pair (0..255 scale), over the valid region.

    Strip by strip (a few output rows with their 10 rows of context): float64 convolutions have no fast
    kernel in torch (conv2d falls back to im2col), while shifted adds on a cache-sized strip run at memory
    speed. Strips stay under torch's grain size so each op runs on one thread: thousands of tiny
    multi-threaded ops cost far more in thread hand-offs than they compute. Four blurs instead of BasicSR's five: only sigma1^2 + sigma2^2 enters the formula and the blur is
    linear, so blur(a^2 + b^2) replaces blur(a^2) and blur(b^2) (equal to float64 rounding).
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    sq_sum_map, cross_map = x * x + y * y, x * y
    strip = max(1, min(MAX_STRIP_ROWS, (TORCH_GRAIN_SIZE - 1) // x.shape[1]))
    sums = []
    for top in range(0, x.shape[0] - 10, strip):
        rows = slice(top, top + strip + 10)
        mu1, mu2 = _blur_valid(x[rows]), _blur_valid(y[rows])
        sq_sum, cross = _blur_valid(sq_sum_map[rows]), _blur_valid(cross_map[rows])
        mu1_mu2 = mu1 * mu2
        mu_sq_sum = mu1.mul_(mu1).addcmul_(mu2, mu2)
        sigma12 = cross.sub_(mu1_mu2)
        sigma_sq_sum = sq_sum.sub_(mu_sq_sum)
        numerator = mu1_mu2.mul_(2).add_(c1).mul_(sigma12.mul_(2).add_(c2))
        denominator = mu_sq_sum.add_(c1).mul_(sigma_sq_sum.add_(c2))
        sums.append(numerator.div_(denominator).sum())
    return torch.stack(sums).sum()


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, y_channel: bool = True) -> float:
    """BasicSR calculate_ssim: per-channel SSIM (mean of the map) over the valid region, averaged."""
    a, b = _prepare(sr, hr, crop, y_channel)
    if a.shape[-2] < 11 or a.shape[-1] < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after the crop, got {tuple(a.shape[-2:])}")
    n = (a.shape[-2] - 10) * (a.shape[-1] - 10)
    return float(sum(_ssim_sum(x, y).item() / n for x, y in zip(a, b)) / a.shape[0])


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
