"""SRFormer (Zhou et al., ICCV 2023, "Permuted Self-Attention for Single Image Super-Resolution") as an encoder.

A SwinIR-shaped body whose window attention is *permuted*: keys and values are projected to a quarter of the
channels per token, and each 2x2 block of tokens is folded into one key/value token with the full channel
count. So a ws x ws window of queries attends to (ws/2)^2 keys, with a relative-position bias between the
query's 2x2 cell and the key cell, and a shift mask whose key side lives on the half-resolution map, where the
shift ws//2 becomes ceil((ws//2) / 2) (the official `-shift_size // 2` rounds towards -inf: 6 for window 22). The MLP is a ConvFFN: fc1, GELU, plus a depthwise 5x5 conv
(+GELU) on the image layout, fc2.

Names and buffers are the official ones (IGConv's `srformer_ig_arch.py`, after HVision-NKU/SRFormer), so the
`igconv` scheme loads by identity; `aligned_relative_position_index` and the shifted blocks' `attn_mask` (for the
build size, `img_size` rounded up to a multiple of the window) are persistent buffers a strict load requires.
Any input size: reflect-padded on the bottom/right to a multiple of the window (the official
`check_image_size`), features cropped back. No input normalisation inside (that belongs to the method).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .swinir import BasicLayer, PatchEmbed, relative_position_index, window_partition, window_reverse
from ..shapes import StateDict, dim, has_fragment, heads_per_group, residual_groups, size_text
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


def aligned_position_index(ws: int) -> torch.Tensor:
    """(ws^2, (ws/2)^2): for query token (r, c) of a ws-window and key cell (pr, pc) of its half-size grid, the
    bias-table index of the offset between the query's cell (r//2, c//2) and (pr, pc)."""
    half = ws // 2
    base = relative_position_index(half).view(half, 1, half, 1, half * half)
    return base.expand(half, 2, half, 2, half * half).reshape(ws * ws, half * half).contiguous()


def _region_labels(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws^2) region label (0..8) of each window token of the cyclically shifted h x w map."""
    img = torch.zeros((1, h, w, 1))
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            img[:, rows, cols, :] = label
            label += 1
    return window_partition(img, ws).view(-1, ws * ws)


def permuted_shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws^2, (ws/2)^2): -100 where a query's region (full map, shift) differs from its key cell's region
    (half map, shift ceil(shift / 2), as the official slices `-shift_size // 2` give)."""
    queries = _region_labels(h, w, ws, shift)
    keys = _region_labels(h // 2, w // 2, ws // 2, -(-shift // 2))
    mask = queries.unsqueeze(2) - keys.unsqueeze(1)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class PermutedAttention(nn.Module):
    """Window attention with 2x2-folded keys/values (official `PSA`)."""

    def __init__(self, dim: int, ws: int, num_heads: int) -> None:
        super().__init__()
        if ws % 2 or dim % 4 or dim % num_heads:
            raise UserError(f"SRFormer needs an even window (got {ws}), embed_dim divisible by 4 and by num_heads "
                            f"(got {dim}, {num_heads} heads).")
        self.ws, self.num_heads = ws, num_heads
        half = ws // 2
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * half - 1) ** 2, num_heads))
        self.register_buffer("aligned_relative_position_index", aligned_position_index(ws))
        self.kv = nn.Linear(dim, dim // 2)
        self.q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b_, n, c = x.shape
        half, heads = self.ws // 2, self.num_heads
        # token (2pr+dr, 2pc+dc) gives c/4 key and c/4 value channels; cell (pr, pc) concatenates its 4 tokens'.
        kv = (self.kv(x).reshape(b_, half, 2, half, 2, 2, c // 4).permute(0, 1, 3, 5, 2, 4, 6)
              .reshape(b_, n // 4, 2, heads, c // heads).permute(2, 0, 3, 1, 4))
        k, v = kv[0], kv[1]
        q = self.q(x).reshape(b_, n, heads, c // heads).transpose(1, 2) * self.scale
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.aligned_relative_position_index.view(-1)]
        attn = attn + bias.view(n, n // 4, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b_ // nw, nw, heads, n, n // 4) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n // 4)
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b_, n, c))


class ConvFFN(nn.Module):
    """fc1 -> GELU -> x + GELU(depthwise k x k conv of x on the image) -> fc2 (SRFormer and ATD; k = 5)."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = _DepthwiseConv(hidden, kernel_size)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x, hw))


class _DepthwiseConv(nn.Module):
    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, 1, (kernel_size - 1) // 2, groups=channels), nn.GELU())

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        img = x.transpose(1, 2).reshape(b, c, hw[0], hw[1])
        return self.depthwise_conv(img).flatten(2).transpose(1, 2)


class PSABlock(nn.Module):
    """LN -> (shifted) permuted window attention -> residual; LN -> ConvFFN -> residual."""

    def __init__(self, dim: int, resolution: int, num_heads: int, ws: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= ws:  # the official rule: one window covers the map, no shift
            ws, shift = resolution, 0
        self.ws, self.shift, self.resolution = ws, shift, (resolution, resolution)
        if shift > 0:  # registered first: the official state dict lists attn_mask before the block's children
            self.register_buffer("attn_mask", permuted_shift_mask(resolution, resolution, ws, shift))
        else:
            self.attn_mask = None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = PermutedAttention(dim, ws, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple, torch.Tensor] = {}

    def mask_for(self, hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor | None:
        """The stored mask at the build size (as the official code), else one computed for `hw` (cached)."""
        if self.shift == 0:
            return None
        if hw == self.resolution:
            return self.attn_mask
        key = (hw, like.device, like.dtype)
        if key not in self._masks:
            self._masks[key] = permuted_shift_mask(hw[0], hw[1], self.ws, self.shift).to(like.device, like.dtype)
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
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x), hw)


class PSAGroup(nn.Module):
    """`depth` PSA blocks (shift on the odd ones), a 3x3 conv on the image layout, plus the group input."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, ws: int, mlp_ratio: float) -> None:
        super().__init__()
        self.residual_group = BasicLayer([
            PSABlock(dim, resolution, num_heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio) for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, hw)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, hw[0], hw[1]))
        return y.flatten(2).transpose(1, 2) + x


class SRFormer(nn.Module):
    """conv_first -> [LN, PSA groups, LN] -> conv_after_body, + conv_first output; features at LR size."""

    def __init__(self, img_size: int = 64, window_size: int = 22, embed_dim: int = 180,
                 depths: tuple[int, ...] = (6,) * 6, num_heads: tuple[int, ...] = (6,) * 6,
                 mlp_ratio: float = 2.0, in_channels: int = 3) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise UserError(f"SRFormer depths {depths} and num_heads {num_heads} must have the same length.")
        self.window_size = self.size_multiple = window_size
        resolution = -(-img_size // window_size) * window_size  # the official PatchEmbed rounds img_size up
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            PSAGroup(embed_dim, resolution, d, h, window_size, mlp_ratio) for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.out_channels = embed_dim

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right to a multiple of the window, as the official `check_image_size`."""
        h, w = x.shape[-2:]
        ws = self.window_size
        ph, pw = (-h) % ws, (-w) % ws
        if ph >= h or pw >= w:
            raise UserError(f"SRFormer input {h}x{w} is too small to reflect-pad to a multiple of the window {ws}; "
                            f"use an input of at least {ws // 2 + 1} pixels per side.")
        return F.pad(x, (0, pw, 0, ph), "reflect") if ph or pw else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        first = self.conv_first(self.pad(x))
        b, c, hp, wp = first.shape
        tokens = self.patch_embed(first)
        for layer in self.layers:
            tokens = layer(tokens, (hp, wp))
        body = self.norm(tokens).transpose(1, 2).reshape(b, c, hp, wp)
        return (self.conv_after_body(body) + first)[:, :, :h, :w]


def srformer(**kwargs) -> SRFormer:
    """SRFormer as IGConv released it: 180 dims, 6 groups x 6 blocks, 6 heads, window 22, img_size 64."""
    return SRFormer(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


def read(sd: StateDict) -> EncoderRead:
    embed, depths = residual_groups(sd)
    block = "layers.0.residual_group.blocks.0."
    hyper = {
        "embed_dim": embed, "depths": depths,
        "num_heads": heads_per_group(sd, len(depths), "blocks.0.attn.relative_position_bias_table"),
        "window_size": math.isqrt(dim(sd, block + "attn.aligned_relative_position_index")),
        "mlp_ratio": dim(sd, block + "mlp.fc1.weight") / embed,
    }
    return EncoderRead("srformer", hyper, size_text("SRFormer", embed, depths) + f", window {hyper['window_size']}")


ENCODERS = (
    EncoderSpec("srformer", srformer, "SRFormer, 180 dims, 6x6 permuted-attention blocks, window 22 (10.1 M)",
                Capabilities(("float32", "float64", "float16", "bfloat16"), 22,
                             "attention memory grows with the window (22x22 queries x 11x11 keys per head); "
                             "tile by multiples of 22 LR pixels with a 22-pixel overlap"),
                network=SRFormer, schemes=official_names("srformer", "igconv"),
                reader=ShapeReader("SRFormer", lambda keys: has_fragment(keys, ".attn.aligned_relative_position_index"),
                                   read, "SRFormer (aligned_relative_position_index)")),
)
