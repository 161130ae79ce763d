"""SMFANet (Zheng et al. ECCV 2024, self-modulation feature aggregation) as a feature encoder, without its tail.

to_feat conv3x3 -> `n_blocks` feature modulation blocks, plus the to_feat output. A block is
x + SMFA(normalize(x)) then x + PCFN(normalize(x)), where normalize is the L2 norm over channels:
- SMFA: a 1x1 conv splits into (y, x); x is modulated by GELU(1x1(dwconv(adaptive max-pool of x to h/8 x w/8)
  * alpha + var_hw(x) * belt)) upsampled by nearest neighbour; y goes through a local MLP (depthwise 3x3 -> 1x1
  -> GELU -> 1x1); a final 1x1 mixes their sum.
- PCFN: 1x1 (dim -> 2 dim), GELU, a 3x3 conv + GELU on the first quarter of the channels, 1x1 back.
Names are IGConv's `sfmanet_arch.py` ones. Any size of at least 8 x 8 (the pooled map is h//8 x w//8); the
variance and pooling are global, so tiling changes the result.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..shapes import StateDict, count, dim, has_fragment
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


class LocalMlp(nn.Module):
    """SMFA's local detail branch (official `DMlp`): depthwise 3x3 (dim -> 2 dim), 1x1, GELU, 1x1 back."""

    def __init__(self, dim: int, growth: float = 2.0) -> None:
        super().__init__()
        hidden = int(dim * growth)
        self.conv_0 = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1, groups=dim), nn.Conv2d(hidden, hidden, 1))
        self.act = nn.GELU()
        self.conv_1 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.act(self.conv_0(x)))


class PCFN(nn.Module):
    """Partial convolution feed-forward network."""

    def __init__(self, dim: int, growth: float = 2.0, p_rate: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * growth)
        self.p_dim = int(hidden * p_rate)
        self.conv_0 = nn.Conv2d(dim, hidden, 1)
        self.conv_1 = nn.Conv2d(self.p_dim, self.p_dim, 3, 1, 1)
        self.act = nn.GELU()
        self.conv_2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_0(x))
        x = torch.cat([self.act(self.conv_1(x[:, : self.p_dim])), x[:, self.p_dim:]], dim=1)
        return self.conv_2(x)


class SMFA(nn.Module):
    DOWN = 8

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.belt = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.linear_0 = nn.Conv2d(dim, dim * 2, 1)
        self.linear_1 = nn.Conv2d(dim, dim, 1)
        self.linear_2 = nn.Conv2d(dim, dim, 1)
        self.lde = LocalMlp(dim, 2)
        self.dw_conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.gelu = nn.GELU()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h, w = f.shape[-2:]
        y, x = self.linear_0(f).chunk(2, dim=1)
        pooled = self.dw_conv(F.adaptive_max_pool2d(x, (h // self.DOWN, w // self.DOWN)))
        spread = torch.var(x, dim=(-2, -1), keepdim=True)
        gate = self.gelu(self.linear_1(pooled * self.alpha + spread * self.belt))
        return self.linear_2(x * F.interpolate(gate, size=(h, w), mode="nearest") + self.lde(y))


class FMB(nn.Module):
    def __init__(self, dim: int, ffn_scale: float) -> None:
        super().__init__()
        self.smfa = SMFA(dim)
        self.pcfn = PCFN(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.smfa(F.normalize(x)) + x
        return self.pcfn(F.normalize(x)) + x


class SMFANet(nn.Module):
    def __init__(self, dim: int = 48, n_blocks: int = 12, ffn_scale: float = 2.0, in_channels: int = 3) -> None:
        super().__init__()
        self.to_feat = nn.Conv2d(in_channels, dim, 3, 1, 1)
        self.feats = nn.Sequential(*[FMB(dim, ffn_scale) for _ in range(n_blocks)])
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < SMFA.DOWN or w < SMFA.DOWN:
            raise UserError(f"SMFANet input {h}x{w} is too small: it pools to h/8 x w/8, so each side must be at "
                            f"least {SMFA.DOWN} pixels.")
        first = self.to_feat(x)
        return self.feats(first) + first


def smfanet(**kwargs) -> SMFANet:
    """SMFANet+ as IGConv released it: 48 ch, 12 blocks, FFN scale 2."""
    return SMFANet(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    width = dim(sd, "to_feat.weight")
    hyper = {"dim": width, "n_blocks": count(sd, r"feats\.(\d+)\.smfa\.alpha$"),
             "ffn_scale": dim(sd, "feats.0.pcfn.conv_0.weight") / width}
    return EncoderRead("smfanet", hyper, f"SMFANet {width} ch, {hyper['n_blocks']} blocks")


ENCODERS = (
    EncoderSpec("smfanet", smfanet, "SMFANet+, 48 ch, 12 self-modulation feature aggregation blocks (0.5 M)",
                Capabilities(dtypes=("float32", "bfloat16"), tile_overlap=16), network=SMFANet,
                schemes=official_names("smfanet", "igconv"),
                reader=ShapeReader("SMFANet", lambda keys: "to_feat.weight" in keys and has_fragment(keys, ".smfa."),
                                   read, "SMFANet (to_feat, feats.N.smfa)")),
)
