"""Optional full-reference metrics from the `piq` package: MS-SSIM, FSIM, VIF, GMSD, HaarPSI.

Why piq's own functions rather than ours: these are the implementations users already report with, and the
point of the columns is comparability with those reports. Inputs are RGB in [0, 1] after the protocol's border
crop (as LPIPS/DISTS), as float64 so the value does not depend on float32 rounding; each function converts to
its own colour space internally (VIF, GMSD: luma; FSIM, HaarPSI: YIQ; MS-SSIM: per RGB channel). piq's DISTS
and LPIPS are deliberately not used: piq resizes images above 256 px before DISTS, unlike the official code.

Without piq installed the functions raise `PackageMissing`; the protocol turns it into
`n/a (piq not installed)`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .colour import as_rgb01

PIQ_METRICS = ("ms-ssim", "fsim", "vif", "gmsd", "haarpsi")
MS_SSIM_SCALES = 5
MS_SSIM_KERNEL = 11


class PackageMissing(ImportError):
    """An optional metric's package is not importable; the case keeps running with the value n/a."""

    def __init__(self, package: str) -> None:
        super().__init__(f"{package} not installed")
        self.package = package


class ImageTooSmall(ValueError):
    """The image (after the border crop) is smaller than a multi-scale metric can score."""

    def __init__(self, metric: str, minimum: int) -> None:
        super().__init__(f"image smaller than {minimum} px for {metric}")
        self.metric, self.minimum = metric, minimum


def _piq() -> Any:
    try:
        import piq
    except ImportError as error:   # sys.modules['piq'] = None (a hidden package) also lands here
        raise PackageMissing("piq") from error
    return piq


def _batch(image: torch.Tensor) -> torch.Tensor:
    return as_rgb01(image).to(torch.float64).clamp(0, 1)[None]


def _ms_ssim(piq: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # piq downsamples 4 times by 2 and needs the coarsest scale to hold the 11-px window
    minimum = (MS_SSIM_KERNEL - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1
    if min(x.shape[-2:]) < minimum:
        raise ImageTooSmall("ms-ssim", minimum)
    return piq.multi_scale_ssim(x, y, data_range=1.0, kernel_size=MS_SSIM_KERNEL)


_FUNCTIONS: dict[str, Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ms-ssim": _ms_ssim,
    "fsim": lambda piq, x, y: piq.fsim(x, y, data_range=1.0, chromatic=True),
    "vif": lambda piq, x, y: piq.vif_p(x, y, data_range=1.0),
    "gmsd": lambda piq, x, y: piq.gmsd(x, y, data_range=1.0),
    "haarpsi": lambda piq, x, y: piq.haarpsi(x, y, data_range=1.0),
}


def piq_metric(name: str, sr: torch.Tensor, hr: torch.Tensor) -> float:
    """piq's `name` (one of PIQ_METRICS) of sr against the reference hr, both RGB [0, 1], already cropped."""
    piq = _piq()
    with torch.no_grad():
        return float(_FUNCTIONS[name](piq, _batch(sr), _batch(hr)).item())
