"""Image-quality metrics: PSNR/SSIM (BasicSR-equal), LPIPS (alex v0.1), DISTS, and piq's MS-SSIM, FSIM, VIF,
GMSD, HaarPSI when piq is installed.

`METRICS` is the declarative table the engine and the report read: direction, value range, unit, digits,
which pretrained files a metric needs (absent -> the value is None with "n/a (weights missing: <file>)") and
which optional package (absent -> "n/a (<package> not installed)").
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownName
from .dists import dists
from .lpips import lpips
from .piq_metrics import PIQ_METRICS, ImageTooSmall, PackageMissing, piq_metric
from .psnr_ssim import psnr, psnr_shave, ssim
from .weights import (ALEXNET_FILE, DISTS_HEAD, LPIPS_ALEX_HEAD, VGG16_FILE, WeightsMissing, find_head,
                      find_weights)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    lower_better: bool
    unit: str
    digits: int
    needs_weights: tuple[str, ...] = ()
    description: str = ""
    value_range: tuple[float, float] = (0.0, 1.0)   # (lowest, highest) possible; inf where unbounded
    needs_package: str | None = None


INF = float("inf")
METRICS: dict[str, MetricInfo] = {
    "psnr": MetricInfo("psnr", False, "dB", 2, (), "PSNR (protocol's colour space and border)", (0.0, INF)),
    "ssim": MetricInfo("ssim", False, "", 4, (), "SSIM, BasicSR: 11x11 Gaussian sigma 1.5, valid region", (-1.0, 1.0)),
    "lpips": MetricInfo("lpips", True, "", 4, (ALEXNET_FILE, LPIPS_ALEX_HEAD.relpath), "LPIPS alex v0.1, RGB",
                        (0.0, INF)),
    "dists": MetricInfo("dists", True, "", 4, (VGG16_FILE, DISTS_HEAD.relpath), "DISTS, RGB", (0.0, 1.0)),
    "ms-ssim": MetricInfo("ms-ssim", False, "", 4, (), "MS-SSIM (piq), RGB, 5 scales, 11x11 window",
                          (0.0, 1.0), "piq"),
    "fsim": MetricInfo("fsim", False, "", 4, (), "FSIMc (piq), RGB", (0.0, 1.0), "piq"),
    "vif": MetricInfo("vif", False, "", 4, (), "VIF, pixel domain (piq vif_p), luma; above 1 for contrast gain",
                      (0.0, INF), "piq"),
    "gmsd": MetricInfo("gmsd", True, "", 4, (), "GMSD (piq), luma", (0.0, INF), "piq"),
    "haarpsi": MetricInfo("haarpsi", False, "", 4, (), "HaarPSI (piq), RGB", (0.0, 1.0), "piq"),
}


def list_metrics() -> list[str]:
    return list(METRICS)


def get_metric(name: str) -> MetricInfo:
    if name not in METRICS:
        raise UnknownName("metric", name, METRICS)
    return METRICS[name]


__all__ = ["METRICS", "PIQ_METRICS", "ImageTooSmall", "MetricInfo", "PackageMissing", "WeightsMissing", "dists",
           "find_head", "find_weights", "get_metric", "list_metrics", "lpips", "piq_metric", "psnr", "psnr_shave",
           "ssim"]
