"""LPIPS (v0.1, AlexNet, linear heads): our torch code reproducing `lpips.LPIPS(net='alex')`.

Why our own: the `lpips` package imports torchvision, which does not work with every torch build. The
formula is small: inputs [0,1] -> [-1,1] -> (x - shift) / scale; AlexNet relu1..relu5 features; each unit-
normalised over channels (eps 1e-10); squared difference; 1x1 linear head (no bias); spatial mean; summed
over the five layers. Symmetric in its two arguments. Computed in float32, as the reference does.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .colour import as_rgb01
from .weights import ALEXNET_FILE, LPIPS_ALEX_HEAD, find_head, find_weights, require

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# torchvision alexnet.features: conv index -> (stride, padding); max-pool (3, 2) before convs 3 and 6.
ALEX_CONVS = ((0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1))
ALEX_POOL_BEFORE = {3, 6}


def normalize_channels(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (torch.sqrt(torch.sum(feat * feat, dim=1, keepdim=True)) + eps)


def alexnet_features(x: torch.Tensor, convs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """relu1..relu5 of torchvision's AlexNet (the LPIPS slices)."""
    outs = []
    for index, stride, padding in ALEX_CONVS:
        if index in ALEX_POOL_BEFORE:
            x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.relu(F.conv2d(x, convs[f"features.{index}.weight"], convs[f"features.{index}.bias"],
                            stride=stride, padding=padding))
        outs.append(x)
    return outs


@lru_cache(maxsize=4)
def _load(backbone: Path, head: Path) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    state = torch.load(backbone, map_location="cpu", weights_only=True)
    wanted = [f"features.{i}.{p}" for i, _, _ in ALEX_CONVS for p in ("weight", "bias")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"{backbone} is not a torchvision AlexNet checkpoint (missing {missing[0]})")
    convs = {k: state[k].float() for k in wanted}
    lins = torch.load(head, map_location="cpu", weights_only=True)
    heads = [lins[f"lin{i}.model.1.weight"].float() for i in range(len(ALEX_CONVS))]
    return convs, heads


def lpips_model(weights_dir: str | Path | None = None) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """(AlexNet convs, linear heads); raises WeightsMissing naming the absent file."""
    backbone = require(find_weights(ALEXNET_FILE, weights_dir), ALEXNET_FILE, weights_dir)
    head = require(find_head(LPIPS_ALEX_HEAD, weights_dir), LPIPS_ALEX_HEAD.filename, weights_dir)
    return _load(backbone, head)


@torch.no_grad()
def lpips(sr: torch.Tensor, hr: torch.Tensor, weights_dir: str | Path | None = None) -> float:
    """LPIPS-alex v0.1 of two RGB images in [0,1] ((3,H,W) or (1,3,H,W)); lower is better."""
    convs, heads = lpips_model(weights_dir)
    device = sr.device
    convs = {k: v.to(device) for k, v in convs.items()}
    shift = torch.tensor(SHIFT, device=device).view(1, 3, 1, 1)
    scale = torch.tensor(SCALE, device=device).view(1, 3, 1, 1)

    def features(image: torch.Tensor) -> list[torch.Tensor]:
        x = as_rgb01(image)[None].float() * 2 - 1
        return alexnet_features((x - shift) / scale, convs)

    total = torch.zeros((), device=device)
    for f0, f1, head in zip(features(sr), features(hr), heads):
        diff = (normalize_channels(f0) - normalize_channels(f1)) ** 2
        total = total + F.conv2d(diff, head.to(device)).mean(dim=(2, 3)).sum()
    return float(total.item())
