"""MambaIR (Guo et al., ECCV 2024, "MambaIR: A Simple Baseline for Image Restoration with State-Space Model") as an
encoder; `mambair-light` is the same network at 60 dims, 4 groups, expansion 1.5.

Each block: x = s1 * x + SS2D(LN(x)); x = s2 * x + CAB(LN(x)), with learned per-channel scales s1, s2.
SS2D projects to 2 * d_inner channels (x, z), runs a depthwise 3x3 conv + SiLU on x, then a selective scan
(`asr_bench/ops/selective_scan`) over the pixels in four orders (row-major, column-major and both reversed) with per-order
projections x -> (dt, B, C); the four outputs are mapped back to raster order, summed, LayerNormed, gated by
SiLU(z) and projected back. CAB = conv3x3 (C -> C/3), GELU, conv3x3 back, channel attention (squeeze 30).

Names are the official ones (IGConv's `mambair_ig_arch.py`, after csguoh/MambaIR); no buffers. No padding: any
input size runs as it is (the official test model for MambaIR cuts images of 200+ pixels per side into
overlapping pieces, see the method's preset). No input normalisation inside (that belongs to the method).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..ops.selective_scan import selective_scan
from .swinir import BasicLayer
from ..shapes import StateDict, dim, has_fragment, residual_groups, same, size_text
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names

DIRECTIONS = 4
LIGHT = {"embed_dim": 60, "depths": (6,) * 4, "mlp_ratio": 1.5}   # MambaIR-light's arguments over MambaIR's


class SS2D(nn.Module):
    """2-D selective scan over four pixel orders (official `SS2D`, d_conv 3, dt_rank ceil(dim / 16))."""

    def __init__(self, dim: int, d_state: int, expand: float, scan_backend: str = "auto") -> None:
        super().__init__()
        inner = int(expand * dim)
        self.d_inner, self.d_state, self.dt_rank = inner, d_state, math.ceil(dim / 16)
        self.scan_backend = scan_backend
        # parameters first: the official state dict lists them before the child modules
        self.x_proj_weight = nn.Parameter(torch.randn(DIRECTIONS, self.dt_rank + 2 * d_state, inner) * inner ** -0.5)
        self.dt_projs_weight = nn.Parameter(torch.randn(DIRECTIONS, inner, self.dt_rank) * self.dt_rank ** -0.5)
        self.dt_projs_bias = nn.Parameter(torch.full((DIRECTIONS, inner), math.log(math.expm1(0.01))))
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(DIRECTIONS * inner, 1))
        self.Ds = nn.Parameter(torch.ones(DIRECTIONS * inner))
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv2d = nn.Conv2d(inner, inner, 3, 1, 1, groups=inner)
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """(b, inner, h, w) -> (b, inner, h*w) in raster order: the sum of the four directional scans."""
        b, c, h, w = x.shape
        length = h * w
        rows, cols = x.reshape(b, c, length), x.transpose(2, 3).reshape(b, c, length)
        xs = torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)          # (b, 4, c, L)
        proj = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(proj, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        y = selective_scan(xs.reshape(b, -1, length), dts.reshape(b, -1, length),
                           -torch.exp(self.A_logs.float()), Bs, Cs, self.Ds, self.dt_projs_bias.reshape(-1),
                           backend=self.scan_backend).view(b, DIRECTIONS, c, length)
        def from_columns(t):  # column-major order back to raster order
            return t.view(b, c, w, h).transpose(2, 3).reshape(b, c, length)
        return y[:, 0] + y[:, 2].flip(-1) + from_columns(y[:, 1]) + from_columns(y[:, 3].flip(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self.scan(x).to(z.dtype).transpose(1, 2).reshape(b, h, w, -1)
        return self.out_proj(self.out_norm(y) * F.silu(z))


class _ChannelAttention(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // squeeze, 1),
                                       nn.ReLU(), nn.Conv2d(channels // squeeze, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel-attention block: conv3x3 (C -> C/3), GELU, conv3x3 (-> C), channel attention (squeeze 30)."""

    def __init__(self, channels: int, compress: int = 3, squeeze: int = 30) -> None:
        super().__init__()
        self.cab = nn.Sequential(nn.Conv2d(channels, channels // compress, 3, 1, 1), nn.GELU(),
                                 nn.Conv2d(channels // compress, channels, 3, 1, 1), _ChannelAttention(channels, squeeze))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class VSSBlock(nn.Module):
    def __init__(self, dim: int, d_state: int, expand: float, scan_backend: str) -> None:
        super().__init__()
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.skip_scale2 = nn.Parameter(torch.ones(dim))
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SS2D(dim, d_state, expand, scan_backend)
        self.conv_blk = CAB(dim)
        self.ln_2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, h, w, c)."""
        x = x * self.skip_scale + self.self_attention(self.ln_1(x))
        return x * self.skip_scale2 + self.conv_blk(self.ln_2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ResidualGroup(nn.Module):
    """`depth` VSS blocks, a 3x3 conv, plus the group input."""

    def __init__(self, dim: int, depth: int, d_state: int, expand: float, scan_backend: str) -> None:
        super().__init__()
        self.residual_group = BasicLayer([VSSBlock(dim, d_state, expand, scan_backend) for _ in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, h, w, c)."""
        y = self.conv(self.residual_group(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return y + x


class _PatchNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class MambaIR(nn.Module):
    """conv_first -> [LN, residual state-space groups, LN] -> conv_after_body, + conv_first output."""

    def __init__(self, img_size: int = 64, embed_dim: int = 180, depths: tuple[int, ...] = (6,) * 6,
                 d_state: int = 16, mlp_ratio: float = 2.0, in_channels: int = 3, scan_backend: str = "auto") -> None:
        super().__init__()
        if embed_dim < 30:
            raise UserError(f"MambaIR embed_dim must be at least 30 (its channel attention squeezes by 30), "
                            f"got {embed_dim}.")
        del img_size  # official bookkeeping only
        self.size_multiple = 1
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = _PatchNorm(embed_dim)
        self.layers = nn.ModuleList(ResidualGroup(embed_dim, d, d_state, mlp_ratio, scan_backend) for d in depths)
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.out_channels = embed_dim

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_first(x)
        tokens = self.patch_embed(first.permute(0, 2, 3, 1))
        for layer in self.layers:
            tokens = layer(tokens)
        return self.conv_after_body(self.norm(tokens).permute(0, 3, 1, 2)) + first


def mambair(**kwargs) -> MambaIR:
    """MambaIR as IGConv released it (DF2K): 180 dims, 6 groups x 6 blocks, d_state 16, expansion 2."""
    return MambaIR(**kwargs)


def mambair_light(**kwargs) -> MambaIR:
    """MambaIR-light as IGConv released it (DIV2K): 60 dims, 4 groups x 6 blocks, d_state 16, expansion 1.5."""
    return MambaIR(**{**LIGHT, **kwargs})


# ---------------------------------------------------------------------------- checkpoints


TILING = ("the scans run over the whole image, so tiles change the output; the official test cuts images of 200+ "
          "pixels per side into pieces with a 10% overlap; the scan state is float32 whatever the dtype")


def read(sd: StateDict) -> EncoderRead:
    """MambaIR or MambaIR-light: the same network, told apart by size (width, depths, expansion)."""
    embed, depths = residual_groups(sd)
    ssm = "layers.0.residual_group.blocks.0.self_attention."
    hyper = {"embed_dim": embed, "depths": depths, "d_state": dim(sd, ssm + "A_logs", 1),
             "mlp_ratio": dim(sd, ssm + "in_proj.weight") / (2 * embed)}   # in_proj makes x and z, expand x dim each
    name = next((spec.name for spec in ENCODERS
                 if all(same(spec.constructor_arguments({}).get(k), v) for k, v in hyper.items())), "mambair")
    return EncoderRead(name, hyper, size_text("MambaIR", embed, depths) + f", expansion {hyper['mlp_ratio']:g}")


READER = ShapeReader("MambaIR", lambda keys: has_fragment(keys, ".self_attention.A_logs"), read,
                     "MambaIR (self_attention.A_logs)")
ENCODERS = (
    EncoderSpec("mambair", mambair, "MambaIR, 180 dims, 6x6 state-space blocks, d_state 16 (20.2 M)",
                Capabilities(("float32", "float64", "bfloat16"), 1, TILING), network=MambaIR,
                schemes=official_names("mambair", "igconv"), reader=READER),
    EncoderSpec("mambair-light", mambair_light, "MambaIR-light, 60 dims, 4x6 state-space blocks (1.6 M)",
                Capabilities(("float32", "float64", "bfloat16"), 1, TILING), network=MambaIR,
                schemes=official_names("mambair", "igconv"), reader=READER,
                arguments=lambda declared: {**LIGHT, **declared}),
)
