"""RDN (Residual Dense Network) as a feature encoder, without its upsampling net.

Module names are the ones every official RDN checkpoint uses (LIIF, Meta-RDN, IGConv, GSASR): `SFENet1`,
`SFENet2`, `RDBs.{d}.convs.{c}.conv.0`, `RDBs.{d}.LFF`, `GFF.0`, `GFF.1`. No input scaling inside: LIIF and
GSASR feed [0,1] (GSASR's img_range is 1), Meta-RDN subtracts its mean at 0..255 outside the encoder.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..shapes import StateDict, count
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names

# config -> (D RDBs, C convs per RDB, G growth)
CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}


class DenseConv(nn.Module):
    """One dense layer: concat(x, relu(conv(x))) on channels."""

    def __init__(self, in_channels: int, growth: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, growth, kernel, padding=(kernel - 1) // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """C dense layers, a 1x1 local feature fusion back to G0 channels, plus the block input."""

    def __init__(self, g0: int, growth: int, n_convs: int, kernel: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(DenseConv(g0 + c * growth, growth, kernel) for c in range(n_convs)))
        self.LFF = nn.Conv2d(g0 + n_convs * growth, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    """SFENet1 -> SFENet2 -> D RDBs -> GFF(concat of all RDB outputs) + SFENet1 output (global skip)."""

    def __init__(self, config: str = "B", g0: int = 64, kernel: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        if config not in CONFIGS:
            from ..errors import UnknownName
            raise UnknownName("RDN config", config, CONFIGS)
        n_blocks, n_convs, growth = CONFIGS[config]
        pad = (kernel - 1) // 2
        self.SFENet1 = nn.Conv2d(in_channels, g0, kernel, padding=pad)
        self.SFENet2 = nn.Conv2d(g0, g0, kernel, padding=pad)
        self.RDBs = nn.ModuleList(RDB(g0, growth, n_convs, kernel) for _ in range(n_blocks))
        self.GFF = nn.Sequential(nn.Conv2d(n_blocks * g0, g0, 1), nn.Conv2d(g0, g0, kernel, padding=pad))
        self.out_channels = g0
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.GFF(torch.cat(outs, 1)) + f1


def rdn(config: str = "B", **kwargs) -> RDN:
    """RDN config B (D16 C8 G64, what LIIF, Meta-SR, IGConv and GSASR release) or config A (D20 C6 G32)."""
    return RDN(config=config, **kwargs)


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    """D, C and G from the block, conv and growth counts; they name the configuration."""
    d = count(sd, r"RDBs\.(\d+)\.LFF\.weight$")
    c = count(sd, r"RDBs\.0\.convs\.(\d+)\.conv\.0\.weight$")
    g = sd["RDBs.0.convs.0.conv.0.weight"].shape[0] if "RDBs.0.convs.0.conv.0.weight" in sd else 0
    config = next((name for name, dcg in CONFIGS.items() if dcg == (d, c, g)), None)
    if config is None:
        raise UserError(f"RDN with D={d} C={c} G={g} matches no configuration "
                        f"({', '.join(f'{n}: D={x} C={y} G={z}' for n, (x, y, z) in CONFIGS.items())}).")
    return EncoderRead("rdn", {"D": d, "C": c, "G": g, "G0": sd["SFENet1.weight"].shape[0], "config": config},
                       f"RDN config {config} (D{d} C{c} G{g})")


ENCODERS = (
    EncoderSpec("rdn", rdn, "RDN config B (D16 C8 G64, 22 M params); config='A' for D20 C6 G32", network=RDN,
                schemes=official_names("liif", "metasr", "basicsr", "igconv", "gsasr"),
                reader=ShapeReader("RDN", lambda keys: "SFENet1.weight" in keys, read, "RDN (SFENet1, RDBs)"),
                matches=lambda read, declared: declared.get("config", "B") == read.hyper["config"]),
)
