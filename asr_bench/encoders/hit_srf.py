"""HiT-SRF (Zhang et al., ECCV 2024, "HiT-SR: Hierarchical Transformer for Efficient Image Super-Resolution"), the
SRFormer-based variant, as an encoder.

A SwinIR-shaped body (conv_first, LN, residual groups of blocks + a 3x3 conv, LN, conv_after_body, plus the
conv_first output). Within a group, block i works on windows of `base_win_size * hier_win_ratios[i]` (4 to 64
pixels for the released 8 x [0.5, 1, 2, 4, 6, 8]): the *hierarchical* windows. Each block is post-norm:
x = x + LN(SCC(x)); x = x + LN(ConvFFN(x)). SCC (spatial-channel correlation) on one window of L tokens:
- q, v = the two halves of DFE(x) = (1x1 -> LReLU -> 3x3 -> LReLU -> 1x1)(x) * 1x1(x), on the padded map;
- spatial: v is reduced to one token per cell of a base grid (min(window, base) cells per side) by a learned
  linear over the cell's pixels; per head, out = (q v_r^T / head_dim + B) v_r with no softmax, where B[p, cell]
  is the mean over the cell's pixels j of an MLP of the offset p - j (the dynamic position bias);
- channel: one head over all C/2 channels, out = v (q^T v / L)^T;
- concat (spatial first) and project.
Each block reflect-pads its input on the bottom/right to a multiple of its own window and crops the result back;
where the pad exceeds the image, the official two-step reflect pad equals the repeated reflection used here
(which also serves the sizes the official code rejects: under 17 pixels per side for the 64-pixel windows).

Names are the official ones (IGConv's `hit_srf_arch.py`, after XiangZ-0/HiT-SR); no buffers in the state dict.
No input normalisation inside (that belongs to the method).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .srformer import ConvFFN
from .swinir import BasicLayer, PatchEmbed
from ..shapes import StateDict, dim, has_fragment, residual_groups, size_text
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


def reflect_indices(size: int, target: int) -> torch.Tensor:
    """Indices 0..target-1 folded into 0..size-1 by repeated reflection (period 2 size - 2; 0 when size is 1)."""
    i = torch.arange(target)
    if size == 1:
        return torch.zeros_like(i)
    m = i % (2 * size - 2)
    return torch.where(m < size, m, 2 * size - 2 - m)


def pad_to_window(x: torch.Tensor, win: tuple[int, int]) -> torch.Tensor:
    """(b, c, h, w) reflect-padded bottom/right to a multiple of `win` (repeated reflection where it is larger)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % win[0], (-w) % win[1]
    if ph == 0 and pw == 0:
        return x
    if ph < h and pw < w:
        return F.pad(x, (0, pw, 0, ph), "reflect")
    rows, cols = reflect_indices(h, h + ph).to(x.device), reflect_indices(w, w + pw).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


class DFE(nn.Module):
    """Dual feature extraction: a 1x1 -> 3x3 -> 1x1 bottleneck (C/5) gated by a 1x1 conv, on the image layout."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        mid = dim // 5
        self.conv = nn.Sequential(nn.Conv2d(dim, mid, 1), nn.LeakyReLU(0.2), nn.Conv2d(mid, mid, 3, 1, 1),
                                  nn.LeakyReLU(0.2), nn.Conv2d(mid, dim, 1))
        self.linear = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.linear(x)


class DynamicPosBias(nn.Module):
    """An MLP (Linear 2 -> d, then three LN -> ReLU -> Linear, the last to `heads`) of a (dy, dx) offset."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        d = dim // 4
        self.pos_proj = nn.Linear(2, d)
        self.pos1 = nn.Sequential(nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, d))
        self.pos2 = nn.Sequential(nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, d))
        self.pos3 = nn.Sequential(nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class SCC(nn.Module):
    """Spatial-channel correlation on `window` windows of an already padded (b, c, H, W) map (official `SCC`)."""

    def __init__(self, dim: int, base_win_size: tuple[int, int], window: tuple[int, int], num_heads: int) -> None:
        super().__init__()
        if dim % (2 * num_heads) or dim % 5:
            raise UserError(f"HiT-SRF needs embed_dim divisible by 5 and by 2 x num_heads (got {dim}, "
                            f"{num_heads} heads).")
        base = (min(window[0], base_win_size[0]), min(window[1], base_win_size[1]))
        if window[0] % base[0] or window[1] % base[1]:
            raise UserError(f"HiT-SRF window {window} must be smaller than or a multiple of the base window "
                            f"{tuple(base_win_size)}; change hier_win_ratios.")
        self.window, self.base, self.num_heads = window, base, num_heads
        self.cell = (window[0] // base[0], window[1] // base[1])  # pixels per base cell, per side
        self.head_dim = dim // (2 * num_heads)
        self.qv = DFE(dim)
        self.proj = nn.Linear(dim, dim)
        self.spatial_linear = nn.Linear(self.cell[0] * self.cell[1], 1)
        self.pos = DynamicPosBias(dim // 4, num_heads)
        wh, ww = window
        dy, dx = torch.meshgrid(torch.arange(1 - wh, wh), torch.arange(1 - ww, ww), indexing="ij")
        self.register_buffer("offsets", torch.stack([dy, dx], -1).float(), persistent=False)
        # bias of (query p, cell (a, b)) = the cell-mean table at (p_y - a kh + wh - kh, p_x - b kw + ww - kw)
        py, px = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        cy, cx = torch.meshgrid(torch.arange(base[0]), torch.arange(base[1]), indexing="ij")
        kh, kw = self.cell
        self.register_buffer("cell_row", py.reshape(-1, 1) - kh * cy.reshape(1, -1) + wh - kh, persistent=False)
        self.register_buffer("cell_col", px.reshape(-1, 1) - kw * cx.reshape(1, -1) + ww - kw, persistent=False)

    def position_bias(self) -> torch.Tensor:
        """(heads, L, cells): the mean, over each cell's pixels, of the offset MLP (a box filter on its table)."""
        table = self.pos(self.offsets).permute(2, 0, 1).unsqueeze(0)          # (1, heads, 2wh-1, 2ww-1)
        means = F.avg_pool2d(table, self.cell, stride=1)[0]                   # (heads, 2wh-kh, 2ww-kw)
        return means[:, self.cell_row, self.cell_col]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, H, W), H and W multiples of the window -> (b, H, W, c)."""
        b, c, H, W = x.shape
        (wh, ww), (bh, bw), (kh, kw) = self.window, self.base, self.cell
        heads, hd, length = self.num_heads, self.head_dim, wh * ww
        qv = self.qv(x).view(b, c, H // wh, wh, W // ww, ww).permute(0, 2, 4, 3, 5, 1).reshape(-1, length, c)
        q, v = qv.view(-1, length, 2, heads, hd).permute(2, 0, 3, 1, 4)      # (n, heads, L, hd) each
        cells = (v.reshape(-1, heads, bh, kh, bw, kw, hd).permute(0, 1, 2, 4, 6, 3, 5)
                 .reshape(-1, heads, bh * bw, hd, kh * kw))
        v_r = self.spatial_linear(cells).squeeze(-1)                           # (n, heads, cells, hd)
        corr = q @ v_r.transpose(-2, -1) / hd + self.position_bias()
        spatial = (corr @ v_r).transpose(1, 2).reshape(-1, length, c // 2)
        q1, v1 = q.transpose(1, 2).reshape(-1, length, c // 2), v.transpose(1, 2).reshape(-1, length, c // 2)
        channel = v1 @ (q1.transpose(-2, -1) @ v1 / length).transpose(-2, -1)
        out = torch.cat([spatial, channel], -1).view(b, H // wh, W // ww, wh, ww, c)
        return self.proj(out.permute(0, 1, 3, 2, 4, 5).reshape(b, H, W, c))


class HierarchicalBlock(nn.Module):
    """x + LN(SCC(pad(x)) cropped) -> x + LN(ConvFFN(x)) (official `HierarchicalTransformerBlock`)."""

    def __init__(self, dim: int, num_heads: int, base_win_size: tuple[int, int], window: tuple[int, int],
                 mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.correlation = SCC(dim, base_win_size, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        img = pad_to_window(x.transpose(1, 2).reshape(b, c, h, w), self.window)
        corr = self.correlation(img)[:, :h, :w].reshape(b, h * w, c)
        x = x + self.norm1(corr)
        return x + self.norm2(self.mlp(x, hw))


class RHTB(nn.Module):
    """A residual hierarchical transformer group: block i on window base * ratios[i], a 3x3 conv, plus the input."""

    def __init__(self, dim: int, depth: int, num_heads: int, base_win_size: tuple[int, int],
                 ratios: Sequence[float], mlp_ratio: float) -> None:
        super().__init__()
        windows = [(int(base_win_size[0] * r), int(base_win_size[1] * r)) for r in ratios]
        self.residual_group = BasicLayer([
            HierarchicalBlock(dim, num_heads, base_win_size, windows[i], mlp_ratio) for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, hw)
        b, _, c = y.shape
        return self.conv(y.transpose(1, 2).reshape(b, c, *hw)).flatten(2).transpose(1, 2) + x


class HiTSRF(nn.Module):
    """conv_first -> [LN, RHTB groups, LN] -> conv_after_body, + conv_first output; features at LR size."""

    def __init__(self, embed_dim: int = 60, depths: Sequence[int] = (6,) * 4, num_heads: Sequence[int] = (6,) * 4,
                 base_win_size: Sequence[int] = (8, 8), hier_win_ratios: Sequence[float] = (0.5, 1, 2, 4, 6, 8),
                 mlp_ratio: float = 2.0, in_channels: int = 3) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise UserError(f"HiT-SRF depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same "
                            "length.")
        if max(depths) > len(hier_win_ratios):
            raise UserError(f"HiT-SRF needs one window ratio per block: depth {max(depths)} but hier_win_ratios "
                            f"{tuple(hier_win_ratios)}.")
        base = (int(base_win_size[0]), int(base_win_size[1]))
        self.size_multiple = 1  # each block pads to its own window and crops back; the input is not padded
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            RHTB(embed_dim, d, h, base, hier_win_ratios, mlp_ratio) for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.out_channels = embed_dim

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """No whole-input padding (the blocks pad inside)."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_first(x)
        b, c, h, w = first.shape
        tokens = self.patch_embed(first)
        for layer in self.layers:
            tokens = layer(tokens, (h, w))
        body = self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)
        return self.conv_after_body(body) + first


def hit_srf(**kwargs) -> HiTSRF:
    """HiT-SRF as IGConv released it: 60 dims, 4 groups x 6 blocks, 6 heads, base window 8, ratios 0.5..8."""
    return HiTSRF(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


TILING = ("windows are anchored at the top-left and reach 64x64 LR pixels (with the 48-pixel ones, the window grids "
          "line up only every 192 pixels), and the channel correlation mixes each whole window, so tiles change the "
          "output; the official test cuts LR images of 200+ pixels per side into pieces with a 10% overlap")


def read(sd: StateDict) -> EncoderRead:
    """Heads are the rows of each group's position-bias MLP output; the window hierarchy shows only as the
    spatial_linear widths (cells per base window), which every preset's hier_win_ratios must reproduce."""
    embed, depths = residual_groups(sd)
    hyper = {"embed_dim": embed, "depths": depths,
             "num_heads": tuple(dim(sd, f"layers.{i}.residual_group.blocks.0.correlation.pos.pos3.2.weight")
                                for i in range(len(depths))),
             "mlp_ratio": dim(sd, "layers.0.residual_group.blocks.0.mlp.fc1.weight") / embed}
    return EncoderRead("hit-srf", hyper, size_text("HiT-SRF", embed, depths))


ENCODERS = (
    EncoderSpec("hit-srf", hit_srf, "HiT-SRF, 60 dims, 4x6 spatial-channel correlation blocks on hierarchical "
                "windows 4..64 (0.8 M)", Capabilities(("float32", "float64", "bfloat16"), 1, TILING),
                network=HiTSRF, schemes=official_names("hit-srf", "igconv"),
                reader=ShapeReader("HiT-SRF", lambda keys: has_fragment(keys, ".correlation.spatial_linear."), read,
                                   "HiT-SRF (correlation.spatial_linear)")),
)
