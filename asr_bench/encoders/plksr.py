"""PLKSR (Lee & Yun 2024, partial large kernel CNN) as a feature encoder, without its upsampler.

`feats` = conv3x3 (3 -> dim) then `n_blocks` PLK blocks, no global skip: each block is a channel mixer (DCCM:
conv3x3 dim -> 2 dim, GELU, conv3x3 2 dim -> dim), a large `kernel_size` conv on the first dim * split_ratio
channels only (the others pass through), element-wise attention x * sigmoid(conv3x3 x), a 1x1 refinement, plus
the block input. Names are IGConv's `plksr_arch.py` ones (feats.0, feats.i.{channe_mixer, lk.conv, attn.f.0,
refine}; sic "channe_mixer"). Pure convolution: any size, and a bounded receptive field (see `receptive_radius`),
so tiles with that much overlap reproduce the whole-image features exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..shapes import StateDict, count, dim, has_fragment
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


CCM_KERNELS = {"CCM": (3, 1), "ICCM": (1, 3), "DCCM": (3, 3)}   # the two convs' kernel sizes of each mixer


def channel_mixer(dim: int, kind: str) -> nn.Sequential:
    """CCM (3x3 then 1x1), ICCM (1x1 then 3x3) or DCCM (3x3 then 3x3), expanding to 2 dim with a GELU between."""
    if kind not in CCM_KERNELS:
        raise UserError(f"PLKSR ccm_type '{kind}' is not one of {', '.join(CCM_KERNELS)}.")
    k1, k2 = CCM_KERNELS[kind]
    return nn.Sequential(nn.Conv2d(dim, dim * 2, k1, 1, k1 // 2), nn.GELU(), nn.Conv2d(dim * 2, dim, k2, 1, k2 // 2))


class PartialLargeKernel(nn.Module):
    """A kernel_size conv on the first `channels` channels; the rest are passed through unchanged."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x[:, : self.channels]), x[:, self.channels:]], dim=1)


class ElementAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f(x)


class PLKBlock(nn.Module):
    def __init__(self, dim: int, ccm_type: str, kernel_size: int, split_ratio: float, use_ea: bool) -> None:
        super().__init__()
        self.channe_mixer = channel_mixer(dim, ccm_type)
        self.lk = PartialLargeKernel(int(dim * split_ratio), kernel_size)
        self.attn = ElementAttention(dim) if use_ea else nn.Identity()
        self.refine = nn.Conv2d(dim, dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attn(self.lk(self.channe_mixer(x)))) + x


class PLKSR(nn.Module):
    def __init__(self, dim: int = 64, n_blocks: int = 28, kernel_size: int = 17, split_ratio: float = 0.25,
                 ccm_type: str = "DCCM", lk_type: str = "PLK", use_ea: bool = True, in_channels: int = 3) -> None:
        super().__init__()
        if lk_type != "PLK":
            raise UserError(f"PLKSR lk_type '{lk_type}' is not supported (only 'PLK', the released models' type).")
        self.feats = nn.Sequential(nn.Conv2d(in_channels, dim, 3, 1, 1),
                                   *[PLKBlock(dim, ccm_type, kernel_size, split_ratio, use_ea)
                                     for _ in range(n_blocks)])
        self.out_channels = dim
        mixer = {"CCM": 1, "ICCM": 1, "DCCM": 2}[ccm_type]
        self.receptive_radius = 1 + n_blocks * (mixer + kernel_size // 2 + (1 if use_ea else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feats(x)


def plksr(**kwargs) -> PLKSR:
    """PLKSR: 64 ch, 28 blocks, DCCM, 17x17 partial kernel on 1/4 of the channels, EA (7.4 M params)."""
    return PLKSR(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    width = dim(sd, "feats.0.weight")
    kernels = (dim(sd, "feats.1.channe_mixer.0.weight", -1), dim(sd, "feats.1.channe_mixer.2.weight", -1))
    hyper = {"dim": width, "n_blocks": count(sd, r"feats\.(\d+)\.lk\.conv\.weight$"),
             "kernel_size": dim(sd, "feats.1.lk.conv.weight", -1),
             "split_ratio": dim(sd, "feats.1.lk.conv.weight") / width,
             "ccm_type": next((k for k, v in CCM_KERNELS.items() if v == kernels), f"unknown {kernels}"),
             "use_ea": "feats.1.attn.f.0.weight" in sd}
    return EncoderRead("plksr", hyper, f"PLKSR {width} ch, {hyper['n_blocks']} blocks, {hyper['kernel_size']}x"
                       f"{hyper['kernel_size']} kernel, {hyper['ccm_type']}")


ENCODERS = (
    EncoderSpec("plksr", plksr, "PLKSR, 64 ch, 28 partial-large-kernel (17x17) blocks, DCCM, EA (7.4 M)",
                Capabilities(dtypes=("float32", "bfloat16"), receptive_radius=309, tile_overlap=309), network=PLKSR,
                schemes=official_names("plksr", "igconv"),
                reader=ShapeReader("PLKSR", lambda keys: has_fragment(keys, ".channe_mixer."), read,
                                   "PLKSR (feats.N.channe_mixer)")),
)
