"""HAT (Hybrid Attention Transformer, Chen et al. CVPR 2023) as a feature encoder, without its upsampler.

Body: conv_first -> patch embed + LN -> residual hybrid attention groups (RHAG) -> LN -> conv_after_body, plus
the conv_first output. A RHAG is `depth` hybrid attention blocks (HAB: shifted-window self-attention with a
channel-attention conv branch scaled by `conv_scale`) and one overlapping cross-attention block (OCAB: queries
from ws x ws windows, keys and values from the zero-padded (ws * (1 + overlap_ratio))^2 window around it), a 3x3
conv and a residual. Sizes: HAT (180 dims, 6 groups) and HAT-L (`large=True`: 12 groups), window 16.

`rope=True` is the variant GSASR's "ultra" model uses (docs/methods/gsasr.md §2.4): no relative-position bias, a
learned 2-D RoPE on q and k in both attention kinds, `scaled_dot_product_attention`, and **no shift mask**
(shifted windows attend across the wrapped seams, as the official code does). In OCAB the query tokens get the
positions of the first ws*ws entries of the wider key grid, as officially.

Module and buffer names are the official ones (IGConv's `hat_arch.py`, GSASR's `hatropeamp.py`), so every
scheme loads by identity. The persistent `relative_position_index_SA` / `_OCA` buffers are part of those state
dicts; like the official code, the bias tables are indexed with the stored buffers (unused with RoPE). The
official OCA index has negative entries, which index the table from its end: kept, since trained weights
depend on it.

Any input size: reflect-padded on the bottom/right to a multiple of the window and cropped back (a method that
needs the padded features pads first). No input normalisation inside. `out_features=64` adds GSASR's head
`conv_before_upsample` = Conv3x3(embed_dim -> 64) + LeakyReLU(0.01).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .rope import apply_rope, random_mixed_freqs, rope_cis, rope_positions
from .swinir import Mlp, PatchEmbed, relative_position_index, shift_mask, window_partition, window_reverse
from ..shapes import (StateDict, dim, has_fragment, heads_per_group, residual_groups, size_text,
                      window_side)
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


def overlap_relative_index(ws: int, ows: int) -> torch.Tensor:
    """(ws*ws, ows*ows) int64, the official OCA index: (dy + ws - ows + 1) * (ws + ows - 1) + dx + ws - ows + 1,
    with (dy, dx) = key position in the ows window minus query position in the ws window (can be negative)."""
    q = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    k = torch.stack(torch.meshgrid(torch.arange(ows), torch.arange(ows), indexing="ij")).flatten(1)
    rel = (k[:, None, :] - q[:, :, None]).permute(1, 2, 0).contiguous() + (ws - ows + 1)
    return rel[:, :, 0] * (ws + ows - 1) + rel[:, :, 1]


class ChannelAttention(nn.Module):
    """x * sigmoid(W2 relu(W1 mean_hw(x))) (RCAN's squeeze-and-excitation; keys attention.1 / attention.3)."""

    def __init__(self, dim: int, squeeze_factor: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // squeeze_factor, 1),
                                       nn.ReLU(), nn.Conv2d(dim // squeeze_factor, dim, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block: conv3x3 (dim -> dim/compress) -> GELU -> conv3x3 -> channel attention."""

    def __init__(self, dim: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        self.cab = nn.Sequential(nn.Conv2d(dim, dim // compress_ratio, 3, 1, 1), nn.GELU(),
                                 nn.Conv2d(dim // compress_ratio, dim, 3, 1, 1), ChannelAttention(dim, squeeze_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class HATWindowAttention(nn.Module):
    """Self-attention inside ws x ws windows: relative-position bias (+ shift mask), or RoPE + SDPA."""

    def __init__(self, dim: int, ws: int, heads: int, rope: bool, rope_theta: float) -> None:
        super().__init__()
        self.ws, self.heads, self.rope = ws, heads, rope
        self.scale = (dim // heads) ** -0.5
        if rope:
            self.rope_freqs = nn.Parameter(random_mixed_freqs(dim // heads, heads, rope_theta))
            t_x, t_y = rope_positions(ws)
            self.register_buffer("rope_t_x", t_x)
            self.register_buffer("rope_t_y", t_y)
        else:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rpi: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rope:
            cis = rope_cis(self.rope_freqs, self.rope_t_x, self.rope_t_y)
            out = F.scaled_dot_product_attention(apply_rope(q, cis), apply_rope(k, cis), v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            bias = self.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
            attn = attn + bias.unsqueeze(0)
            if mask is not None:
                nw = mask.shape[0]
                attn = attn.view(b_ // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.heads, n, n)
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b_, n, c))


class HAB(nn.Module):
    """LN -> [(shifted) window attention + conv_scale * CAB] + residual; LN -> MLP + residual."""

    def __init__(self, dim: int, heads: int, ws: int, shift: int, compress_ratio: int, squeeze_factor: int,
                 conv_scale: float, mlp_ratio: float, rope: bool, rope_theta: float) -> None:
        super().__init__()
        self.ws, self.shift, self.conv_scale = ws, shift, conv_scale
        self.norm1 = nn.LayerNorm(dim)
        self.attn = HATWindowAttention(dim, ws, heads, rope, rope_theta)
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int], rpi: torch.Tensor, mask: torch.Tensor | None
                ) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        conv_x = self.conv_block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(x, self.ws).view(-1, self.ws * self.ws, c)
        windows = self.attn(windows, rpi, mask if self.shift else None).view(-1, self.ws, self.ws, c)
        x = window_reverse(windows, self.ws, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c) + conv_x * self.conv_scale
        return x + self.mlp(self.norm2(x))


class OCAB(nn.Module):
    """Overlapping cross-attention: ws x ws query windows attend to the ows x ows zero-padded windows around them."""

    def __init__(self, dim: int, ws: int, overlap_ratio: float, heads: int, mlp_ratio: float, rope: bool,
                 rope_theta: float) -> None:
        super().__init__()
        self.ws, self.heads, self.rope, self.dim = ws, heads, rope, dim
        self.ows = int(ws * overlap_ratio) + ws
        self.scale = (dim // heads) ** -0.5
        if rope:
            self.rope_freqs = nn.Parameter(random_mixed_freqs(dim // heads, heads, rope_theta))
            t_x, t_y = rope_positions(max(ws, self.ows))
            self.register_buffer("rope_t_x", t_x)
            self.register_buffer("rope_t_y", t_y)
        else:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((ws + self.ows - 1) ** 2, heads))
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int], rpi: torch.Tensor) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        ws, ows, heads, d = self.ws, self.ows, self.heads, c // self.heads
        shortcut = x
        qkv = self.qkv(self.norm1(x).view(b, h, w, c)).reshape(b, h, w, 3, c).permute(3, 0, 4, 1, 2)  # 3,b,c,h,w
        q = window_partition(qkv[0].permute(0, 2, 3, 1), ws).view(-1, ws * ws, c)
        # Keys/values: the zero padding comes after the qkv projection, so padded keys and values are exactly 0.
        kv = F.unfold(torch.cat((qkv[1], qkv[2]), dim=1), ows, stride=ws, padding=(ows - ws) // 2)
        nw = kv.shape[-1]
        kv = kv.view(b, 2, c, ows * ows, nw).permute(1, 0, 4, 3, 2).contiguous().view(2, b * nw, ows * ows, c)
        b_ = q.shape[0]
        q = q.reshape(b_, ws * ws, heads, d).permute(0, 2, 1, 3)
        k = kv[0].reshape(b_, ows * ows, heads, d).permute(0, 2, 1, 3)
        v = kv[1].reshape(b_, ows * ows, heads, d).permute(0, 2, 1, 3)
        if self.rope:
            cis = rope_cis(self.rope_freqs, self.rope_t_x, self.rope_t_y)
            out = F.scaled_dot_product_attention(apply_rope(q, cis), apply_rope(k, cis), v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            bias = self.relative_position_bias_table[rpi.view(-1)].view(ws * ws, ows * ows, -1).permute(2, 0, 1)
            out = (attn + bias.unsqueeze(0)).softmax(dim=-1) @ v
        out = window_reverse(out.transpose(1, 2).reshape(b_, ws, ws, c), ws, h, w).view(b, h * w, c)
        x = self.proj(out) + shortcut
        return x + self.mlp(self.norm2(x))


class AttenBlocks(nn.Module):
    def __init__(self, blocks: list[HAB], overlap_attn: OCAB) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.overlap_attn = overlap_attn


class RHAG(nn.Module):
    """Residual hybrid attention group: HABs + OCAB, a 3x3 conv on the image layout, plus the input."""

    def __init__(self, dim: int, depth: int, heads: int, ws: int, compress_ratio: int, squeeze_factor: int,
                 conv_scale: float, overlap_ratio: float, mlp_ratio: float, rope: bool, rope_theta: float) -> None:
        super().__init__()
        blocks = [HAB(dim, heads, ws, 0 if i % 2 == 0 else ws // 2, compress_ratio, squeeze_factor, conv_scale,
                      mlp_ratio, rope, rope_theta) for i in range(depth)]
        self.residual_group = AttenBlocks(blocks, OCAB(dim, ws, overlap_ratio, heads, mlp_ratio, rope, rope_theta))
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], rpi_sa: torch.Tensor, rpi_oca: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        y = x
        for block in self.residual_group.blocks:
            y = block(y, hw, rpi_sa, mask)
        y = self.residual_group.overlap_attn(y, hw, rpi_oca)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, hw[0], hw[1]))
        return y.flatten(2).transpose(1, 2) + x


class HAT(nn.Module):
    """conv_first -> [patch embed + LN, RHAGs, LN] -> conv_after_body, + conv_first output (-> optional head)."""

    def __init__(self, window_size: int = 16, embed_dim: int = 180, depths: tuple[int, ...] = (6,) * 6,
                 num_heads: tuple[int, ...] = (6,) * 6, compress_ratio: int = 3, squeeze_factor: int = 30,
                 conv_scale: float = 0.01, overlap_ratio: float = 0.5, mlp_ratio: float = 2.0, rope: bool = False,
                 rope_theta: float = 10.0, out_features: int | None = None, in_channels: int = 3) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise UserError(f"HAT depths {depths} and num_heads {num_heads} must have the same length.")
        if embed_dim % compress_ratio or embed_dim % squeeze_factor or any(embed_dim % h for h in num_heads):
            raise UserError(f"HAT embed_dim {embed_dim} must be divisible by compress_ratio {compress_ratio}, "
                            f"squeeze_factor {squeeze_factor} and every num_heads {num_heads}.")
        self.window_size, self.rope = window_size, rope
        ows = int(window_size * overlap_ratio) + window_size
        self.register_buffer("relative_position_index_SA", relative_position_index(window_size))
        self.register_buffer("relative_position_index_OCA", overlap_relative_index(window_size, ows))
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            RHAG(embed_dim, d, h, window_size, compress_ratio, squeeze_factor, conv_scale, overlap_ratio, mlp_ratio,
                 rope, rope_theta) for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        if out_features is not None:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, out_features, 3, 1, 1), nn.LeakyReLU())
        self.out_channels = out_features if out_features is not None else embed_dim
        self._masks: dict[tuple, torch.Tensor] = {}

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right to a multiple of the window (what the official test code does outside)."""
        h, w = x.shape[-2:]
        ws = self.window_size
        ph, pw = (-h) % ws, (-w) % ws
        if ph >= h or pw >= w:
            raise UserError(f"HAT input {h}x{w} is too small to reflect-pad to a multiple of the window {ws}; "
                            f"use an input of at least {ws // 2 + 1} pixels per side.")
        return F.pad(x, (0, pw, 0, ph), "reflect") if ph or pw else x

    def shift_mask_for(self, hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor | None:
        """The -100 region mask of the shifted windows at this size (none with RoPE: the official skips it)."""
        if self.rope:
            return None
        key = (hw, like.device, like.dtype)
        if key not in self._masks:
            ws = self.window_size
            self._masks[key] = shift_mask(hw[0], hw[1], ws, ws // 2).to(like.device, like.dtype)
        return self._masks[key]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.patch_embed(x)
        mask = self.shift_mask_for((h, w), x)
        for layer in self.layers:
            tokens = layer(tokens, (h, w), self.relative_position_index_SA, self.relative_position_index_OCA, mask)
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        first = self.conv_first(self.pad(x))
        feat = self.conv_after_body(self.forward_features(first)) + first
        if hasattr(self, "conv_before_upsample"):
            feat = self.conv_before_upsample(feat)
        return feat[:, :, :h, :w]


def hat_kwargs(large: bool = False, **kwargs) -> dict:
    """The `HAT` arguments of `hat(large, **kwargs)`: what a preset builds, for detection to compare shapes with."""
    if large:
        kwargs.setdefault("depths", (6,) * 12)
        kwargs.setdefault("num_heads", (6,) * len(kwargs["depths"]))
    return kwargs


def hat(large: bool = False, **kwargs) -> HAT:
    """HAT: 180 dims, 6 RHAGs x 6 HABs, 6 heads, window 16, squeeze 30; `large=True` (HAT-L): 12 RHAGs."""
    return HAT(**hat_kwargs(large, **kwargs))


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    """HAT / HAT-L / GSASR's RoPE HAT: the window from the self-attention index, the overlap window from the OCA
    index, channel-attention ratios from the CAB convs, RoPE from `rope_freqs`."""
    embed, depths = residual_groups(sd)
    block = "layers.0.residual_group.blocks.0."
    rope = any(k.endswith("rope_freqs") for k in sd)
    window = window_side(sd, "relative_position_index_SA", block + "attn.relative_position_bias_table")
    oca_table = "layers.0.residual_group.overlap_attn.relative_position_bias_table"   # (window + overlap - 1)^2 rows
    overlap = (math.isqrt(dim(sd, "relative_position_index_OCA", 1)) if "relative_position_index_OCA" in sd
               else math.isqrt(dim(sd, oca_table)) - window + 1 if oca_table in sd else None)
    heads = heads_per_group(sd, len(depths), "blocks.0.attn.relative_position_bias_table", "blocks.0.attn.rope_freqs")
    hyper = {
        "embed_dim": embed, "depths": depths, "num_heads": heads, "window_size": window,
        "compress_ratio": embed // dim(sd, block + "conv_block.cab.0.weight"),
        "squeeze_factor": embed // dim(sd, block + "conv_block.cab.3.attention.1.weight"),
        "overlap_ratio": None if overlap is None else (overlap - window) / window,
        "mlp_ratio": dim(sd, block + "mlp.fc1.weight") / embed,
        "rope": rope, "out_features": dim(sd, "conv_before_upsample.0.weight"),
    }
    return EncoderRead("hat", hyper, size_text("HAT", embed, depths) + f", window {window}"
                       + (", RoPE" if rope else "") + (f", {hyper['out_features']}-ch head" if hyper["out_features"]
                                                       else ""))


ENCODERS = (
    EncoderSpec("hat", hat, "HAT, 180 dims, 6 groups x 6 blocks + OCAB, window 16 (20.6 M); large=True for "
                "HAT-L (12 groups), rope=True for GSASR's RoPE variant",
                Capabilities(dtypes=("float32", "bfloat16"), size_multiple=16, tile_overlap=16),
                network=HAT, schemes=official_names("hat", "basicsr", "igconv", "gsasr"),
                reader=ShapeReader("HAT", lambda keys: "relative_position_index_OCA" in keys
                                   or has_fragment(keys, ".overlap_attn."), read, "HAT (overlap_attn, OCA index)"),
                arguments=lambda declared: hat_kwargs(**declared)),
)
