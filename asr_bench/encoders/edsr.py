"""EDSR and EDSR-baseline as feature encoders (no upsampling tail).

Module names follow BasicSR (`conv_first`, `body.{i}.conv1/conv2`, `conv_after_body`), the naming GSASR and
IGConv checkpoints use; LIIF's naming is mapped onto it in `keymaps.py`. The encoder does no input
normalisation (LIIF's `sub_mean`/`add_mean` are never applied by LIIF either): the method owns it.

`global_skip` decides whether `conv_first`'s output is added back after `conv_after_body`: LIIF and IGConv keep
it, GSASR's `EDSRNOUP` computes it and then returns the body output without it.
"""
from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True)


class ResidualBlock(nn.Module):
    """x + conv2(relu(conv1(x))) * res_scale (no batch norm)."""

    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        # Same float ops as the official blocks: the product, then the identity added (order-free).
        return out * self.res_scale + x if self.res_scale != 1 else out + x


class EDSR(nn.Module):
    """conv_first -> n_blocks residual blocks -> conv_after_body (+ conv_first output if global_skip)."""

    def __init__(self, n_feats: int = 64, n_blocks: int = 16, res_scale: float = 1.0,
                 global_skip: bool = True, in_channels: int = 3) -> None:
        super().__init__()
        self.conv_first = conv3x3(in_channels, n_feats)
        self.body = nn.Sequential(*(ResidualBlock(n_feats, res_scale) for _ in range(n_blocks)))
        self.conv_after_body = conv3x3(n_feats, n_feats)
        self.global_skip = global_skip
        self.out_channels = n_feats
        self.n_blocks = n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_first(x)
        res = self.conv_after_body(self.body(head))
        return res + head if self.global_skip else res


def edsr_baseline(global_skip: bool = True, **kwargs) -> EDSR:
    """EDSR-baseline: 64 channels, 16 blocks, res_scale 1 (LIIF, GSASR 'paper' and IGConv class defaults)."""
    return EDSR(**{"n_feats": 64, "n_blocks": 16, "res_scale": 1.0, **kwargs}, global_skip=global_skip)


def edsr(global_skip: bool = True, **kwargs) -> EDSR:
    """Full EDSR: 256 channels, 32 blocks, res_scale 0.1 (IGConv's released EDSR models)."""
    return EDSR(**{"n_feats": 256, "n_blocks": 32, "res_scale": 0.1, **kwargs}, global_skip=global_skip)
