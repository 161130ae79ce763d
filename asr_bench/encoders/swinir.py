"""SwinIR (classical-SR body) as a feature encoder, without its upsampler.

Module and buffer names are the official ones (JingyunLiang/SwinIR `network_swinir.py`, copied unchanged by
BasicSR, IGConv's `SwinIRMS` and GSASR's `SwinIRNOUP`), so every scheme loads by identity. The persistent buffers
`attn.relative_position_index` (every block) and `attn_mask` (shifted blocks, for an `img_size` x `img_size` map)
are in those state dicts and are required by a strict load; like the official code, the stored mask is used when
the (padded) input is exactly `img_size`, otherwise the mask is computed for the actual size.

Any input size: the input is reflect-padded on the bottom/right to a multiple of `window_size` (the official
`check_image_size`) and the features are cropped back to the input size. A method that needs the padded features
(IGConv runs its upsampler on them) pads the image itself to a multiple of the window first; the inner padding is
then a no-op. No input normalisation inside: SwinIR's `(x - mean) * img_range` belongs to the method.

`fused_attention=True` computes the window attention with `F.scaled_dot_product_attention` (same maths,
different float rounding, ~1e-6; faster and leaner on GPU); the default is the official op order.

`out_features=64` adds GSASR's head `conv_before_upsample` = Conv3x3(embed_dim -> 64) + LeakyReLU(0.01) (the
same module official SwinIR has before its pixel-shuffle upsampler).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..shapes import StateDict, dim, heads_per_group, residual_groups, window_side
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C), windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `window_partition`."""
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) int64: index into the (2ws-1)^2 bias table of the offset between two window tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


def shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws): -100 between tokens that came from different regions of the cyclically shifted map."""
    img = torch.zeros((1, h, w, 1))
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for wsl in cuts:
            img[:, hs, wsl, :] = label
            label += 1
    regions = window_partition(img, ws).view(-1, ws * ws)
    mask = regions.unsqueeze(1) - regions.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned relative-position bias."""

    def __init__(self, dim: int, ws: int, num_heads: int, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        self.ws = ws
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if self.fused:
            return self.proj(self._fused(q, k, v, bias, mask).transpose(1, 2).reshape(b_, n, c))
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + bias
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))

    def _fused(self, q, k, v, bias, mask):
        """scaled_dot_product_attention with bias (+ mask) as an additive float mask: same maths, other rounding."""
        b_, heads, n, _ = q.shape
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        nw = mask.shape[0]
        extra = (bias + mask.unsqueeze(1)).to(q.dtype)  # (nW, heads, n, n)
        out = F.scaled_dot_product_attention(q.view(b_ // nw, nw, heads, n, -1), k.view(b_ // nw, nw, heads, n, -1),
                                             v.view(b_ // nw, nw, heads, n, -1), attn_mask=extra, scale=self.scale)
        return out.view(b_, heads, n, -1)


class SwinBlock(nn.Module):
    """LN -> (shifted) window attention -> residual; LN -> MLP -> residual."""

    def __init__(self, dim: int, resolution: int, num_heads: int, ws: int, shift: int, mlp_ratio: float,
                 fused: bool = False) -> None:
        super().__init__()
        if resolution <= ws:  # the official rule: one window covers the map, no shift
            ws, shift = resolution, 0
        self.ws, self.shift, self.resolution = ws, shift, (resolution, resolution)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads, fused)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift > 0:
            self.register_buffer("attn_mask", shift_mask(resolution, resolution, ws, shift))
        else:
            self.attn_mask = None
        self._masks: dict[tuple, torch.Tensor] = {}

    def mask_for(self, hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor | None:
        """The stored mask at the build size (as the official code), else one computed for `hw` (cached)."""
        if self.shift == 0:
            return None
        if hw == self.resolution:
            return self.attn_mask
        key = (hw, like.device, like.dtype)
        if key not in self._masks:
            self._masks[key] = shift_mask(hw[0], hw[1], self.ws, self.shift).to(like.device, like.dtype)
        return self._masks[key]

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(x, self.ws).view(-1, self.ws * self.ws, c)
        windows = self.attn(windows, self.mask_for(hw, x)).view(-1, self.ws, self.ws, c)
        x = window_reverse(windows, self.ws, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.view(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    """A group's blocks in order, under the official name `blocks` (the key `residual_group.blocks.N.*`); the extra
    arguments (the token grid's size) go to every block. Shared by SwinIR, SRFormer, HiT-SRF and MambaIR."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, *args: object) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, *args)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: `depth` Swin blocks, a 3x3 conv on the image layout, plus the input."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, ws: int, mlp_ratio: float,
                 fused: bool = False) -> None:
        super().__init__()
        self.residual_group = BasicLayer([
            SwinBlock(dim, resolution, num_heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, fused)
            for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, hw)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).view(b, c, hw[0], hw[1]))
        return y.flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H*W, C) tokens, then LayerNorm (patch_norm=True, patch size 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


class SwinIR(nn.Module):
    """conv_first -> [patch embed + LN, RSTBs, LN] -> conv_after_body, + conv_first output (-> optional head)."""

    def __init__(self, img_size: int = 48, window_size: int = 8, embed_dim: int = 180,
                 depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6), num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6),
                 mlp_ratio: float = 2.0, out_features: int | None = None, in_channels: int = 3,
                 fused_attention: bool = False) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise UserError(f"SwinIR depths {depths} and num_heads {num_heads} must have the same length.")
        self.window_size = window_size
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, img_size, d, h, window_size, mlp_ratio, fused_attention) for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        if out_features is not None:
            # LeakyReLU with PyTorch's default slope 0.01 (GSASR/SwinIR `nn.LeakyReLU(inplace=True)`).
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, out_features, 3, 1, 1), nn.LeakyReLU())
        self.out_channels = out_features if out_features is not None else embed_dim

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right to a multiple of the window, as the official `check_image_size`."""
        h, w = x.shape[-2:]
        ws = self.window_size
        ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
        if ph >= h or pw >= w:
            raise UserError(f"SwinIR input {h}x{w} is too small to reflect-pad to a multiple of the window "
                            f"{ws}; use an input of at least {ws // 2 + 1} pixels per side.")
        return F.pad(x, (0, pw, 0, ph), "reflect") if ph or pw else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, (h, w))
        return self.norm(tokens).transpose(1, 2).view(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        first = self.conv_first(self.pad(x))
        feat = self.conv_after_body(self.forward_features(first)) + first
        if hasattr(self, "conv_before_upsample"):
            feat = self.conv_before_upsample(feat)
        return feat[:, :, :h, :w]


def swinir(**kwargs) -> SwinIR:
    """Classical SwinIR body: 180 dims, 6 RSTBs x 6 blocks, 6 heads, window 8, img_size 48, MLP ratio 2."""
    return SwinIR(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    embed, depths = residual_groups(sd)
    hyper = {
        "embed_dim": embed, "depths": depths,
        "num_heads": heads_per_group(sd, len(depths), "blocks.0.attn.relative_position_bias_table"),
        "window_size": window_side(sd, "", "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"),
        "mlp_ratio": sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed,
        "out_features": dim(sd, "conv_before_upsample.0.weight"),
    }
    return EncoderRead("swinir", hyper, f"SwinIR {embed} dims, depths {list(depths)}, window {hyper['window_size']}")


def recognise(keys: frozenset[str]) -> bool:
    return {"conv_first.weight", "patch_embed.norm.weight", "layers.0.residual_group.blocks.0.attn.qkv.weight"} <= keys


ENCODERS = (
    EncoderSpec("swinir", swinir, "SwinIR classical body, 180 dims, 6x6 Swin blocks, window 8 (11.5 M)",
                network=SwinIR, schemes=official_names("swinir", "basicsr", "igconv", "gsasr"),
                # HAT, SRFormer (and others) share these keys: tried after every specific reader
                reader=ShapeReader("SwinIR", recognise, read, "SwinIR (conv_first, patch_embed, "
                                   "layers.N.residual_group)", fallback=True)),
)
