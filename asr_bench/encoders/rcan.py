"""RCAN (Zhang et al. ECCV 2018, residual channel attention network) as a feature encoder, without its tail.

head conv -> 10 residual groups (20 residual channel-attention blocks + a conv, plus the group input) -> a conv,
plus the head output. Module names are the official EDSR-PyTorch / IGConv `rcan_arch.py` ones (head.0,
body.g.body.b.body.{0,2,3.conv_du}, body.g.body.<n>, body.<G>), so every scheme loads by identity. RCAN's
`sub_mean` / `add_mean` MeanShift convs are input/output normalisation: they belong to the method (IGConv+
loads them), not to this encoder. Any input size; no padding. Channel attention pools the whole image, so the
receptive field is global (tiling changes the result).
"""
from __future__ import annotations

import torch
from torch import nn
from ..shapes import StateDict, count, dim
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


class CALayer(nn.Module):
    """x * sigmoid(W2 relu(W1 mean_hw(x)))."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(nn.Conv2d(dim, dim // reduction, 1), nn.ReLU(),
                                     nn.Conv2d(dim // reduction, dim, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> channel attention, plus the input."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.ReLU(), nn.Conv2d(dim, dim, 3, 1, 1),
                                  CALayer(dim, reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, dim: int, n_blocks: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RCAB(dim, reduction) for _ in range(n_blocks)], nn.Conv2d(dim, dim, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RCAN(nn.Module):
    def __init__(self, n_feats: int = 64, n_resgroups: int = 10, n_resblocks: int = 20, reduction: int = 16,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_channels, n_feats, 3, 1, 1))
        self.body = nn.Sequential(*[ResidualGroup(n_feats, n_resblocks, reduction) for _ in range(n_resgroups)],
                                  nn.Conv2d(n_feats, n_feats, 3, 1, 1))
        self.out_channels = n_feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.body(h) + h


def rcan(**kwargs) -> RCAN:
    """RCAN: 64 ch, 10 groups x 20 blocks, channel reduction 16 (15.3 M params without the tail)."""
    return RCAN(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    feats = dim(sd, "head.0.weight")
    hyper = {"n_feats": feats, "n_resgroups": count(sd, r"body\.(\d+)\.body\.0\.body\.0\.weight$"),
             "n_resblocks": count(sd, r"body\.0\.body\.(\d+)\.body\.0\.weight$"),
             "reduction": feats // dim(sd, "body.0.body.0.body.3.conv_du.0.weight")}
    return EncoderRead("rcan", hyper, f"RCAN {feats} ch, {hyper['n_resgroups']} groups x {hyper['n_resblocks']} blocks")


ENCODERS = (
    EncoderSpec("rcan", rcan, "RCAN, 64 ch, 10 residual groups x 20 channel-attention blocks (15.3 M)",
                Capabilities(dtypes=("float32", "bfloat16"), tile_overlap=16), network=RCAN,
                schemes=official_names("rcan", "igconv"),
                reader=ShapeReader("RCAN", lambda keys: {"head.0.weight", "body.0.body.0.body.0.weight"} <= keys, read,
                                   "RCAN (head.0, body.N.body.M.body)")),
)
