"""EDSR and EDSR-baseline as feature encoders (no upsampling tail).

Module names follow BasicSR (`conv_first`, `body.{i}.conv1/conv2`, `conv_after_body`), the naming GSASR and
IGConv checkpoints use; LIIF's naming is its scheme `liif` (below). The encoder does no input
normalisation (LIIF's `sub_mean`/`add_mean` are never applied by LIIF either): the method owns it.

`global_skip` decides whether `conv_first`'s output is added back after `conv_after_body`: LIIF and IGConv keep
it, GSASR's `EDSRNOUP` computes it and then returns the body output without it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks import DIV2K_MEAN
from ..errors import UserError
from ..shapes import StateDict, count
from .spec import EncoderRead, EncoderSpec, Scheme, ShapeReader, identity_names, no_extras


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


# ---------------------------------------------------------------------------- checkpoints


def liif_names(encoder: nn.Module) -> dict[str, str]:
    """BasicSR names -> LIIF/EDSR-PyTorch names: conv_first=head.0, convK=body.i.body.{0,2}, conv_after_body=body.<n>."""
    names = {}
    for key in encoder.state_dict():
        parts = key.split(".")
        if parts[0] == "conv_first":
            names[key] = "head.0." + parts[-1]
        elif parts[0] == "conv_after_body":
            names[key] = f"body.{encoder.n_blocks}.{parts[-1]}"
        else:  # body.<i>.conv1|conv2.<param>
            names[key] = f"body.{parts[1]}.body.{0 if parts[2] == 'conv1' else 2}.{parts[3]}"
    return names


def liif_extras(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The unused MeanShift convs LIIF's EDSR registers: weight eye(3) (std 1), bias -/+ mean (rgb_range 1)."""
    eye = torch.eye(3).view(3, 3, 1, 1)
    mean = torch.tensor(DIV2K_MEAN)
    return {"sub_mean.weight": eye.clone(), "sub_mean.bias": -mean,
            "add_mean.weight": eye.clone(), "add_mean.bias": mean.clone()}


SCHEMES: dict[str, Scheme] = {
    "liif": (liif_names, liif_extras, True),
    **{name: (identity_names, no_extras, False) for name in ("basicsr", "igconv", "gsasr")},
}
SIZES = {(64, 16): "edsr-baseline", (256, 32): "edsr"}     # (channels, blocks): the name is the size


def recognise(keys: frozenset[str]) -> bool:
    return ("conv_first.weight" in keys and "body.0.conv1.weight" in keys) or \
        ("head.0.weight" in keys and "body.0.body.0.weight" in keys)


def read(sd: StateDict) -> EncoderRead:
    """Width and depth in either naming; only the two released sizes are encoders of ours."""
    if "conv_first.weight" in sd:
        feats, blocks, naming = sd["conv_first.weight"].shape[0], count(sd, r"body\.(\d+)\.conv1\.weight$"), "BasicSR"
    else:
        feats, blocks, naming = sd["head.0.weight"].shape[0], count(sd, r"body\.(\d+)\.body\.0\.weight$"), "LIIF"
    if (feats, blocks) not in SIZES:
        raise UserError(f"EDSR with {feats} channels x {blocks} blocks matches no encoder "
                        "(edsr-baseline is 64 x 16, edsr 256 x 32).")
    return EncoderRead(SIZES[feats, blocks], {"n_feats": feats, "n_blocks": blocks},
                       f"EDSR {feats} ch x {blocks} blocks ({naming} naming)")


READER = ShapeReader("EDSR", recognise, read, "EDSR (conv_first/body.N.conv1 or head.0/body.N.body.0)")
ENCODERS = (
    EncoderSpec("edsr-baseline", edsr_baseline, "EDSR-baseline, 64 ch, 16 res blocks (1.2 M params)",
                network=EDSR, schemes=SCHEMES, reader=READER, matches=lambda read, declared: True),
    EncoderSpec("edsr", edsr, "EDSR, 256 ch, 32 res blocks, res_scale 0.1 (38 M params)",
                network=EDSR, schemes=SCHEMES, reader=READER, matches=lambda read, declared: True),
)
