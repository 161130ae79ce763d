"""ATD (Zhang et al., CVPR 2024, "Transcending the Limit of Local Window: Advanced Super-Resolution Transformer
with Adaptive Token Dictionary") as an encoder.

Each transformer layer adds three attentions of one LayerNormed input to the residual:
- (shifted) window self-attention with a relative-position bias, on a shared `wqkv` projection;
- ATD cross-attention: every token attends to a learned dictionary of `num_tokens` tokens with cosine
  similarity in a reduced `reducted_dim` space, scaled by 1 + clamp(scale, 0, 1) * log(num_tokens);
- AC-MSA: tokens are sorted by the dictionary entry they are most similar to (argmax of the ATD attention)
  and cut into groups of `category_size`; each group does plain self-attention on the shared qkv (raw dot
  products times exp(min(logit_scale, log 100))). The last group is filled up with the last tokens in reverse.
  Like the official code the sort is torch's default (unstable) one, so which tokens of one category land in
  a group is the sort implementation's choice (CPU and CUDA may differ; measured on CPU, a stable sort moves
  random-weight outputs by ~2e-2). `stable_sort=True` keeps raster order among ties: a definition that a
  test can re-derive; the default equals the official outputs.
Then a ConvFFN, and (except in the last layer of a block) the dictionary is refined: td <- s td + (1 - s) A x,
A = softmax over tokens of InstanceNorm(similarity^T), s = sigmoid(sigma).

Names are the official ones (IGConv's `atd_arch.py`, after LabShuHangGU/Adaptive-Token-Dictionary); the only
buffer, `relative_position_index_SA`, is top level. The shift mask is computed for the actual size (it is not in
the state dict). Any input size: padded on the bottom/right to a multiple of the window by mirroring that
includes the edge row (the official `torch.flip` padding), features cropped back. No normalisation inside.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .srformer import ConvFFN
from .swinir import PatchEmbed, relative_position_index, shift_mask, window_partition, window_reverse
from ..shapes import StateDict, dim, has_fragment, heads_per_group, residual_groups, size_text, window_side
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader, official_names


class WindowAttention(nn.Module):
    """Attention inside ws x ws windows on a given qkv, with a relative-position bias (official `attn_win`)."""

    def __init__(self, dim: int, ws: int, num_heads: int) -> None:
        super().__init__()
        self.ws, self.num_heads = ws, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)

    def forward(self, qkv: torch.Tensor, rpi: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b_, n, c3 = qkv.shape
        c = c3 // 3
        qkv = qkv.reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.num_heads, n, n)
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b_, n, c))


class DictionaryAttention(nn.Module):
    """Cross-attention from the tokens to the token dictionary (official `ATD_CA`); also returns the weights."""

    def __init__(self, dim: int, num_tokens: int, reducted_dim: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.scale = nn.Parameter(torch.ones(num_tokens) * 0.5)
        self.wq = nn.Linear(dim, reducted_dim)
        self.wk = nn.Linear(dim, reducted_dim)
        self.wv = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, td: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.wq(x), self.wk(td), self.wv(td)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = (attn * (1 + torch.clamp(self.scale, 0, 1) * math.log(self.num_tokens))).softmax(dim=-1)
        return attn @ v, attn


class CategoryAttention(nn.Module):
    """Self-attention inside groups of tokens sorted by their most similar dictionary entry (official `AC_MSA`)."""

    def __init__(self, dim: int, num_heads: int, category_size: int, stable_sort: bool = False) -> None:
        super().__init__()
        self.num_heads, self.category_size, self.stable_sort = num_heads, category_size, stable_sort
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((1, 1))))
        self.proj = nn.Linear(dim, dim)

    def forward(self, qkv: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
        b, n, c3 = qkv.shape
        c = c3 // 3
        gs = min(n, self.category_size)
        ng = -(-n // gs)
        pad = ng * gs - n
        order = torch.sort(sim.argmax(dim=-1), dim=-1, stable=self.stable_sort).indices  # (b, n)
        shuffled = torch.gather(qkv, 1, order.unsqueeze(-1).expand(b, n, c3))
        padded = torch.cat((shuffled, torch.flip(shuffled[:, n - pad:n], dims=[1])), dim=1)
        qkv = padded.reshape(b, ng, gs, 3, self.num_heads, c // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scale = torch.clamp(self.logit_scale, max=math.log(1.0 / 0.01)).exp()
        attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
        y = (attn @ v).permute(0, 1, 3, 2, 4).reshape(b, n + pad, c)[:, :n]
        out = torch.empty_like(y).scatter_(1, order.unsqueeze(-1).expand(b, n, c), y)  # undo the sort
        return self.proj(out)


class ATDLayer(nn.Module):
    """x + window attention + dictionary attention + category attention; + ConvFFN; refine the dictionary."""

    def __init__(self, dim: int, num_heads: int, ws: int, shift: int, category_size: int, num_tokens: int,
                 reducted_dim: int, convffn_kernel_size: int, mlp_ratio: float, is_last: bool,
                 stable_sort: bool = False) -> None:
        super().__init__()
        self.ws, self.shift, self.is_last = ws, shift, is_last
        if not is_last:  # registered first: the official state dict lists sigma before the children
            self.sigma = nn.Parameter(torch.zeros([num_tokens, 1]))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        if not is_last:
            self.norm3 = nn.InstanceNorm1d(num_tokens, affine=True)
        self.wqkv = nn.Linear(dim, 3 * dim)
        self.attn_win = WindowAttention(dim, ws, num_heads)
        self.attn_atd = DictionaryAttention(dim, num_tokens, reducted_dim)
        self.attn_aca = CategoryAttention(dim, num_heads, category_size, stable_sort)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio), convffn_kernel_size)

    def forward(self, x: torch.Tensor, td: torch.Tensor, hw: tuple[int, int], rpi: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = hw
        b, n, c = x.shape
        shortcut = x
        x = self.norm1(x)
        qkv = self.wqkv(x)
        x_atd, sim = self.attn_atd(x, td)
        x_aca = self.attn_aca(qkv, sim)
        grid = qkv.reshape(b, h, w, 3 * c)
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(grid, self.ws).view(-1, self.ws * self.ws, 3 * c)
        windows = self.attn_win(windows, rpi, mask if self.shift else None).view(-1, self.ws, self.ws, c)
        x_win = window_reverse(windows, self.ws, h, w)
        if self.shift:
            x_win = torch.roll(x_win, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x_win.reshape(b, n, c) + x_atd + x_aca
        x = x + self.convffn(self.norm2(x), hw)
        if not self.is_last:
            weights = self.norm3(sim.transpose(-1, -2)).softmax(dim=-1)  # (b, tokens of td, n)
            s = torch.sigmoid(self.sigma)
            td = s * td + (1 - s) * torch.einsum("btn,bnc->btc", weights, x)
        return x, td


class _Block(nn.Module):
    def __init__(self, dim: int, depth: int, num_tokens: int, **layer_kwargs) -> None:
        super().__init__()
        self.td = nn.Parameter(torch.randn([num_tokens, dim]))
        ws = layer_kwargs.pop("ws")
        self.layers = nn.ModuleList(
            ATDLayer(dim, ws=ws, shift=0 if i % 2 == 0 else ws // 2, num_tokens=num_tokens, is_last=i == depth - 1,
                     **layer_kwargs) for i in range(depth))

    def forward(self, x: torch.Tensor, hw: tuple[int, int], rpi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        td = self.td.expand(x.shape[0], -1, -1)
        for layer in self.layers:
            x, td = layer(x, td, hw, rpi, mask)
        return x


class ATDB(nn.Module):
    """An ATD block: `depth` layers sharing one dictionary, a 3x3 conv on the image layout, plus the input."""

    def __init__(self, dim: int, depth: int, **kwargs) -> None:
        super().__init__()
        self.residual_group = _Block(dim, depth, **kwargs)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], rpi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.residual_group(x, hw, rpi, mask)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, hw[0], hw[1]))
        return y.flatten(2).transpose(1, 2) + x


class ATD(nn.Module):
    """conv_first -> [LN, ATD blocks, LN] -> conv_after_body, + conv_first output; features at LR size."""

    def __init__(self, img_size: int = 96, window_size: int = 16, embed_dim: int = 210,
                 depths: tuple[int, ...] = (6,) * 6, num_heads: tuple[int, ...] = (6,) * 6,
                 category_size: int = 256, num_tokens: int = 128, reducted_dim: int = 20,
                 convffn_kernel_size: int = 5, mlp_ratio: float = 2.0, in_channels: int = 3,
                 stable_sort: bool = False) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise UserError(f"ATD depths {depths} and num_heads {num_heads} must have the same length.")
        del img_size  # the official img_size only sizes unused bookkeeping; kept for YAML compatibility
        self.window_size = self.size_multiple = window_size
        self.register_buffer("relative_position_index_SA", relative_position_index(window_size))
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            ATDB(embed_dim, d, num_heads=h, ws=window_size, category_size=category_size, num_tokens=num_tokens,
                 reducted_dim=reducted_dim, convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio,
                 stable_sort=stable_sort)
            for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.out_channels = embed_dim
        self._masks: dict[tuple, torch.Tensor] = {}

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Mirror-pad bottom/right (edge row repeated) to a multiple of the window, as the official forward."""
        h, w = x.shape[-2:]
        m = self.window_size
        ph, pw = (-h) % m, (-w) % m
        if ph > h or pw > w:
            raise UserError(f"ATD input {h}x{w} is too small to mirror-pad to a multiple of the window {m}; "
                            f"use an input of at least {m // 2} pixels per side.")
        x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :h + ph] if ph else x
        return torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :w + pw] if pw else x

    def mask_for(self, hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        key = (hw, like.device, like.dtype)
        if key not in self._masks:
            ws = self.window_size
            self._masks = {key: shift_mask(hw[0], hw[1], ws, ws // 2).to(like.device, like.dtype)}
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        first = self.conv_first(self.pad(x))
        b, c, hp, wp = first.shape
        mask = self.mask_for((hp, wp), first)
        tokens = self.patch_embed(first)
        for layer in self.layers:
            tokens = layer(tokens, (hp, wp), self.relative_position_index_SA, mask)
        body = self.norm(tokens).transpose(1, 2).reshape(b, c, hp, wp)
        return (self.conv_after_body(body) + first)[:, :, :h, :w]


def atd(**kwargs) -> ATD:
    """ATD as IGConv released it: 210 dims, 6 blocks x 6 layers, 6 heads, window 16, 128 tokens, groups of 256."""
    return ATD(**kwargs)


# ---------------------------------------------------------------------------- checkpoints


TILING = ("category attention mixes tokens across the whole input (groups of 256 after a global sort), so tiles "
          "change the output; its memory is linear in the pixels, tile only beyond ~512x512 LR, by multiples of 16")


def read(sd: StateDict) -> EncoderRead:
    embed, depths = residual_groups(sd, "layers")
    layer = "layers.0.residual_group.layers.0."
    hyper = {
        "embed_dim": embed, "depths": depths,
        "num_heads": heads_per_group(sd, len(depths), "layers.0.attn_win.relative_position_bias_table"),
        "window_size": window_side(sd, "relative_position_index_SA", layer + "attn_win.relative_position_bias_table"),
        "num_tokens": dim(sd, "layers.0.residual_group.td"),
        "reducted_dim": dim(sd, layer + "attn_atd.wq.weight"),
        "convffn_kernel_size": dim(sd, layer + "convffn.dwconv.depthwise_conv.0.weight", -1),
        "mlp_ratio": dim(sd, layer + "convffn.fc1.weight") / embed,
    }
    return EncoderRead("atd", hyper, size_text("ATD", embed, depths, "layers")
                       + f", window {hyper['window_size']}, {hyper['num_tokens']} tokens")


ENCODERS = (
    EncoderSpec("atd", atd, "ATD, 210 dims, 6x6 layers (window 16 + token-dictionary + category attention, 19.8 M)",
                Capabilities(("float32", "float64"), 16, TILING), network=ATD,
                schemes=official_names("atd", "igconv"),
                reader=ShapeReader("ATD", lambda keys: has_fragment(keys, ".attn_atd."), read, "ATD (attn_atd)")),
)
