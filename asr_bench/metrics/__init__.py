"""Image-quality metrics: PSNR/SSIM (BasicSR-equal), LPIPS (alex v0.1), DISTS.

`METRICS` is the declarative table the engine and the report read: direction, unit, digits, and which
pretrained files a metric needs (absent -> the value is None with "n/a (weights missing: <file>)").
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownName
from .dists import dists
from .lpips import lpips
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


METRICS: dict[str, MetricInfo] = {
    "psnr": MetricInfo("psnr", False, "dB", 2, (), "PSNR (protocol's colour space and border)"),
    "ssim": MetricInfo("ssim", False, "", 4, (), "SSIM, BasicSR: 11x11 Gaussian sigma 1.5, valid region"),
    "lpips": MetricInfo("lpips", True, "", 4, (ALEXNET_FILE, LPIPS_ALEX_HEAD.relpath), "LPIPS alex v0.1, RGB"),
    "dists": MetricInfo("dists", True, "", 4, (VGG16_FILE, DISTS_HEAD.relpath), "DISTS, RGB"),
}


def list_metrics() -> list[str]:
    return list(METRICS)


def get_metric(name: str) -> MetricInfo:
    if name not in METRICS:
        raise UnknownName("metric", name, METRICS)
    return METRICS[name]


__all__ = ["METRICS", "MetricInfo", "WeightsMissing", "dists", "find_head", "find_weights", "get_metric",
           "list_metrics", "lpips", "psnr", "psnr_shave", "ssim"]
