"""DISTS: our torch code reproducing `DISTS_pytorch.DISTS()` (Ding et al. 2020).

Why our own: `DISTS_pytorch` imports torchvision. Formula: VGG16 features with the max-pools replaced by
L2 pooling (a 3x3 Hann window, stride 2, on x^2, then sqrt(. + 1e-12)), input normalised by the ImageNet
mean/std; six stages (the raw image and relu1_2 .. relu5_3). Per channel, a structure term
S1 = (2 mx my + c1)/(mx^2 + my^2 + c1) and a texture term S2 = (2 cov + c2)/(vx + vy + c2) (c = 1e-6),
weighted by the learned alpha/beta (normalised by their total sum); DISTS = 1 - sum. No resize of the input.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .colour import as_rgb01
from .weights import DISTS_HEAD, VGG16_FILE, find_head, find_weights, require

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CHANNELS = (3, 64, 128, 256, 512, 512)
# torchvision vgg16.features conv indices per stage; an L2 pool precedes stages 2..5.
VGG_STAGES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))


def l2pool_window(channels: int) -> torch.Tensor:
    """np.hanning(5)[1:-1] outer itself, normalised: the DISTS L2-pooling filter, (C,1,3,3) float32."""
    a = np.hanning(5)[1:-1]
    g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
    return (g / g.sum())[None, None].repeat(channels, 1, 1, 1)


def l2pool(x: torch.Tensor) -> torch.Tensor:
    window = l2pool_window(x.shape[1]).to(x.device)
    return (F.conv2d(x * x, window, stride=2, padding=1, groups=x.shape[1]) + 1e-12).sqrt()


def vgg_stages(x: torch.Tensor, convs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """[x, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3] with L2 pooling, x already normalised."""
    outs = []
    h = x
    for stage, indices in enumerate(VGG_STAGES):
        if stage > 0:
            h = l2pool(h)
        for index in indices:
            h = F.relu(F.conv2d(h, convs[f"features.{index}.weight"], convs[f"features.{index}.bias"], padding=1))
        outs.append(h)
    return outs


@lru_cache(maxsize=4)
def _load(backbone: Path, head: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    state = torch.load(backbone, map_location="cpu", weights_only=True)
    wanted = [f"features.{i}.{p}" for stage in VGG_STAGES for i in stage for p in ("weight", "bias")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"{backbone} is not a torchvision VGG16 checkpoint (missing {missing[0]})")
    ab = torch.load(head, map_location="cpu", weights_only=True)
    return {k: state[k].float() for k in wanted}, ab["alpha"].float(), ab["beta"].float()


def dists_model(weights_dir: str | Path | None = None):
    backbone = require(find_weights(VGG16_FILE, weights_dir), VGG16_FILE, weights_dir)
    head = require(find_head(DISTS_HEAD, weights_dir), DISTS_HEAD.filename, weights_dir)
    return _load(backbone, head)


@torch.no_grad()
def dists(sr: torch.Tensor, hr: torch.Tensor, weights_dir: str | Path | None = None) -> float:
    """DISTS of two RGB images in [0,1] ((3,H,W) or (1,3,H,W)); lower is better. Symmetric."""
    convs, alpha, beta = dists_model(weights_dir)
    device = sr.device
    convs = {k: v.to(device) for k, v in convs.items()}
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def features(image: torch.Tensor) -> list[torch.Tensor]:
        x = as_rgb01(image)[None].float()
        return [x] + vgg_stages((x - mean) / std, convs)

    w_sum = alpha.sum() + beta.sum()
    alphas = torch.split(alpha.to(device) / w_sum, CHANNELS, dim=1)
    betas = torch.split(beta.to(device) / w_sum, CHANNELS, dim=1)
    c1 = c2 = 1e-6
    dist1 = dist2 = torch.zeros((), device=device)
    for f0, f1, a, b in zip(features(sr), features(hr), alphas, betas):
        m0, m1 = f0.mean((2, 3), keepdim=True), f1.mean((2, 3), keepdim=True)
        s1 = (2 * m0 * m1 + c1) / (m0 ** 2 + m1 ** 2 + c1)
        dist1 = dist1 + (a * s1).sum()
        v0 = ((f0 - m0) ** 2).mean((2, 3), keepdim=True)
        v1 = ((f1 - m1) ** 2).mean((2, 3), keepdim=True)
        cov = (f0 * f1).mean((2, 3), keepdim=True) - m0 * m1
        s2 = (2 * cov + c2) / (v0 + v1 + c2)
        dist2 = dist2 + (b * s2).sum()
    return float((1 - (dist1 + dist2)).item())
