"""GSASR's Fea2GS decoder: LR features -> 16 raw Gaussian parameter vectors per LR pixel.

One class covers both official variants (docs/methods/gsasr.md §3):
- paper (`rope=False`, C=180): relative-position bias; the cross-attention bias index is a non-standard,
  colliding table that official checkpoints carry as a persistent buffer, so it is loaded, never recomputed;
- enhanced / ultra (`rope=True`, C=192): mixed learnable 2-D RoPE, SDPA, a 3x3 conv closing every block and a
  `conv_final` + residual before the up-sampling net.
Parameter and buffer names equal the official ones, so official state dicts load strictly.
The output is the raw (B, N, 9) tensor [sigma(2), rho, alpha, rgb(3), mean(2)]; activations happen at render time.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.ops.window_attention import window_attention
from asr_bench.encoders.rope import apply_rope, random_mixed_freqs, rope_cis, rope_positions  # noqa: F401 - shared with HAT-RoPE


# ----------------------------------------------------------------------------- layout helpers
def tokens_to_image(x: torch.Tensor, hc: int, wc: int, side: int, channels_last: bool = False) -> torch.Tensor:
    """(B*hc*wc, side*side, C) window tokens -> (B, C, hc*side, wc*side) image.

    `channels_last` returns the same values in NHWC memory: one copy fewer for the tokens, and the layout in
    which oneDNN's CPU convolutions run fastest (and the heads then read the map without a transpose).
    """
    c = x.shape[-1]
    b = x.shape[0] // (hc * wc)
    if channels_last:
        x = x.reshape(b, hc, wc, side, side, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, hc * side, wc * side, c).permute(0, 3, 1, 2)
    x = x.reshape(b, hc, wc, side, side, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, hc * side, wc * side)


def image_to_tokens(img: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, hc*side, wc*side) image -> (B*hc*wc, side*side, C) window tokens (window-major, row-major inside)."""
    b, c, h, w = img.shape
    hc, wc = h // side, w // side
    x = img.reshape(b, c, hc, side, wc, side).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b * hc * wc, side * side, c)


def shuffle_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Write pixel_shuffle(src, 2) into `dst` (B, C, 2h, 2w), any strides: dst[b, c, 2y+i, 2x+j] =
    src[b, 4c+2i+j, y, x]. One strided copy straight into its destination (a view of a bigger buffer, or the heads'
    token rows), where F.pixel_shuffle would make a tensor that then has to be copied there."""
    b, c4, h, w = src.shape
    dst.unflatten(2, (h, 2)).unflatten(4, (w, 2)).copy_(src.unflatten(1, (c4 // 4, 2, 2)).permute(0, 1, 4, 2, 5, 3))


def window_major_grid(hc: int, wc: int, side: int) -> torch.Tensor:
    """(hc*side, wc*side) grid of each pixel's token number in the window-major, row-major-inside order."""
    t = torch.arange(hc * wc * side * side).reshape(hc, wc, side, side)
    return t.permute(0, 2, 1, 3).reshape(hc * side, wc * side)


@functools.lru_cache(maxsize=64)
def _roll_source(hc: int, wc: int, side: int, shift: int, device: torch.device) -> torch.Tensor:
    grid = window_major_grid(hc, wc, side)
    return image_to_tokens(torch.roll(grid, shifts=(shift, shift), dims=(0, 1))[None, None], side).reshape(-1).to(device)


def roll_tokens(x: torch.Tensor, hc: int, wc: int, side: int, shift: int) -> torch.Tensor:
    """Cyclically roll the window tokens' full grid by `shift` on both axes (channels-last).

    One gather with a cached source index instead of un-windowing, rolling and re-windowing (three copies);
    pure data movement, so the values are bit-identical.
    """
    c = x.shape[-1]
    b = x.shape[0] // (hc * wc)
    src = _roll_source(hc, wc, side, shift, x.device)
    return x.reshape(b, -1, c).index_select(1, src).reshape(x.shape)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B_, N, C) -> (B_, heads, N, C/heads): head h owns channels [h*C/heads, (h+1)*C/heads)."""
    b_, n, c = x.shape
    return x.reshape(b_, n, heads, c // heads).permute(0, 2, 1, 3)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b_, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b_, n, heads * d)


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """softmax(q*scale @ k^T + bias) @ v, heads merged -> (B_, N, heads*d).

    SDPA on CUDA (fused; it equals the math there). On CPU, where SDPA with a float mask takes a slower generic
    path (~1.8x measured on the 144-token windows), the window-attention op (asr_bench/ops/window_attention): its
    compiled backend keeps each (window, head)'s scores in cache, else the explicit math over groups of windows.
    """
    if q.is_cuda:
        return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale))
    return window_attention(q, k, v, bias, scale)


# ----------------------------------------------------------------------------- position encodings
def swin_relative_index(side: int) -> torch.Tensor:
    """The standard Swin relative-position index over a side x side window (GSSelfAttn)."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + side - 1
    dx = xs[:, None] - xs[None, :] + side - 1
    return dy * (2 * side - 1) + dx


def cross_relative_index(seeds_side: int, window: int) -> torch.Tensor:
    """The official cross-attention index for fresh models (checkpoints carry their own copy).

    Deltas between seed centres ((i+0.5)*window) and pixel centres ((j+0.5)*seeds_side) are numbered by their
    position in CPython's iteration order of a set of floats (deterministic for float hashes), and rows use the
    number of unique deltas minus one as stride, so indices collide: docs/methods/gsasr.md §3.2 lists both orders.
    """
    src = [(i + 0.5) * window for i in range(seeds_side)]
    tgt = [(j + 0.5) * seeds_side for j in range(window)]
    deltas = sorted({s - t for s in src for t in tgt})
    order = list(set(deltas))
    position = {d: k for k, d in enumerate(order)}
    stride = len(order) - 1
    sy, sx = torch.meshgrid(torch.tensor(src, dtype=torch.float64), torch.tensor(src, dtype=torch.float64),
                            indexing="ij")
    ty, tx = torch.meshgrid(torch.tensor(tgt, dtype=torch.float64), torch.tensor(tgt, dtype=torch.float64),
                            indexing="ij")
    dy = sy.flatten()[:, None] - ty.flatten()[None, :]
    dx = sx.flatten()[:, None] - tx.flatten()[None, :]
    lookup = lambda t: torch.tensor([position[v] for v in t.flatten().tolist()]).reshape(t.shape)  # noqa: E731
    return lookup(dy) * stride + lookup(dx)


# ----------------------------------------------------------------------------- building blocks
def _fused_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


FUSED_LINEAR = _fused_linear_available()


def _fused(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The hand-fused oneDNN call, in eager only: inductor cannot lower it with weights as graph inputs, and under
    torch.compile it fuses bias, ReLU and residual into its own kernels from the plain F.linear path."""
    return (FUSED_LINEAR and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and not torch.compiler.is_compiling())


def linear_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(x W^T + b). On CPU float32 without autograd: one oneDNN call with bias and ReLU as post-ops (no bias
    broadcast copy before the GEMM, no separate ReLU pass over the output); the same values as F.linear + ReLU,
    which also runs through oneDNN. Elsewhere: F.linear, then ReLU in place."""
    if _fused(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
    return F.linear(x, weight, bias).relu_()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """[residual +] x W^T + b. On CPU float32 without autograd, one oneDNN call with the bias (and the residual
    sum) as post-ops: no bias broadcast copy, no separate residual pass; the same values as F.linear [+ add]."""
    out_shape = (*x.shape[:-1], weight.shape[0])
    if _fused(x, weight):
        if residual is None:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        if residual.dtype == torch.float32 and residual.is_contiguous() and tuple(residual.shape) == out_shape:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    y = F.linear(x, weight, bias)
    return y if residual is None else residual + y


def run_mlp(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """An official Linear -> ReLU -> Linear [-> ReLU -> Linear ...] Sequential, each Linear+ReLU fused."""
    layers = list(seq)
    i = 0
    while i < len(layers):
        if i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            x = linear_relu(x, layers[i].weight, layers[i].bias)
            i += 2
        elif isinstance(layers[i], nn.Linear):
            x = linear(x, layers[i].weight, layers[i].bias)
            i += 1
        else:
            x = layers[i](x)
            i += 1
    return x


class MLP(nn.Module):
    """fc1 -> ReLU -> fc2 (official class `MLP`, hidden = C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """fc2(relu(fc1(x))), plus `residual` when given (summed by the GEMM on CPU)."""
        return linear(linear_relu(x, self.fc1.weight, self.fc1.bias), self.fc2.weight, self.fc2.bias, residual)


def mlp_seq(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, dim_out))


def head_mlp(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim * 4), nn.ReLU(),
                         nn.Linear(dim * 4, out))


class ScaleAttention(nn.Module):
    """The official `nn.MultiheadAttention(C, heads)` from Gaussian queries to the scale embedding.

    Every key and value is the same scale embedding e, so the softmax is uniform and the output is
    out_proj(W_v e + b_v) for every query; computing that once per image is exact up to float rounding
    (docs/methods/gsasr.md §9.4) and saves a full attention per layer. Names match nn.MultiheadAttention.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, scale_embedding: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, C): the value every query of image b receives."""
        c = scale_embedding.shape[-1]
        v = F.linear(scale_embedding, self.in_proj_weight[2 * c:], self.in_proj_bias[2 * c:])
        return self.out_proj(v)


def add_per_image(x: torch.Tensor, per_image: torch.Tensor) -> torch.Tensor:
    """x (B*windows, N, C) + per_image (B, C), image b's windows being contiguous (batch-major)."""
    b = per_image.shape[0]
    return (x.reshape(b, -1, x.shape[-1]) + per_image[:, None, :]).reshape(x.shape)


class WindowCrossAttn(nn.Module):
    """Seeds of one window attend to the (rolled) feature pixels of that window."""

    def __init__(self, dim: int, heads: int, window: int, seeds_side: int, rope: bool) -> None:
        super().__init__()
        self.heads, self.window, self.seeds_side, self.rope = heads, window, seeds_side, rope
        self.scale = (dim // heads) ** -0.5
        if rope:
            t_x, t_y = rope_positions(max(seeds_side, window))
            self.register_buffer("rope_t_x", t_x)
            self.register_buffer("rope_t_y", t_y)
            self.rope_freqs = nn.Parameter(random_mixed_freqs(dim // heads, heads))
        else:
            table = (2 * max(seeds_side, window) - 1) ** 2
            self.relative_position_bias_table = nn.Parameter(torch.empty(table, heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", cross_relative_index(seeds_side, window))
        self.qhead = nn.Linear(dim, dim)
        self.khead = nn.Linear(dim, dim)
        self.vhead = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def bias(self) -> torch.Tensor:
        n_q, n_k = self.seeds_side ** 2, self.window ** 2
        table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return table.view(n_q, n_k, -1).permute(2, 0, 1)

    def forward(self, gs: torch.Tensor, feat: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """[residual +] the attention's projected output."""
        if self.rope:  # the enhanced path as it was
            q = split_heads(self.qhead(gs), self.heads)
            k = split_heads(self.khead(feat), self.heads)
            v = split_heads(self.vhead(feat), self.heads)
            cis = rope_cis(self.rope_freqs, self.rope_t_x, self.rope_t_y)
            q, k = apply_rope(q, cis), apply_rope(k, cis)
            out = self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))
            return out if residual is None else residual + out
        q = split_heads(linear(gs, self.qhead.weight, self.qhead.bias), self.heads)
        b_, n, c = feat.shape
        # k and v read the same features: one (2C x C) matmul, the same dot products as two Linears.
        kv = linear(feat, torch.cat([self.khead.weight, self.vhead.weight]), torch.cat([self.khead.bias, self.vhead.bias]))
        kv = kv.view(b_, n, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = biased_attention(q, kv[0], kv[1], self.bias(), self.scale)
        return linear(out, self.proj.weight, self.proj.bias, residual)


class GSSelfAttn(nn.Module):
    """Self-attention among the seeds of one window (Swin bias in the paper, RoPE in the enhanced version)."""

    def __init__(self, dim: int, heads: int, side: int, rope: bool) -> None:
        super().__init__()
        self.heads, self.side, self.rope = heads, side, rope
        self.scale = (dim // heads) ** -0.5
        self.proj = nn.Linear(dim, dim)
        if rope:
            t_x, t_y = rope_positions(side)
            self.register_buffer("rope_t_x", t_x)
            self.register_buffer("rope_t_y", t_y)
            self.rope_freqs = nn.Parameter(random_mixed_freqs(dim // heads, heads))
        else:
            self.relative_position_bias_table = nn.Parameter(torch.empty((2 * side - 1) ** 2, heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", swin_relative_index(side))
        self.qhead = nn.Linear(dim, dim)
        self.khead = nn.Linear(dim, dim)
        self.vhead = nn.Linear(dim, dim)

    def qkv(self, gs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v (B_, heads, N, d) from one fused (3C x C) matmul: the same dot products as three Linears."""
        b_, n, c = gs.shape
        weight = torch.cat([self.qhead.weight, self.khead.weight, self.vhead.weight])
        bias = torch.cat([self.qhead.bias, self.khead.bias, self.vhead.bias])
        qkv = linear(gs, weight, bias).view(b_, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, gs: torch.Tensor) -> torch.Tensor:
        if self.rope:  # the enhanced path is left exactly as it was (CUDA/bf16 behaviour unchanged)
            q, k, v = (split_heads(f(gs), self.heads) for f in (self.qhead, self.khead, self.vhead))
            cis = rope_cis(self.rope_freqs, self.rope_t_x, self.rope_t_y)
            q, k = apply_rope(q, cis), apply_rope(k, cis)
            return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))
        n = self.side ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        q, k, v = self.qkv(gs)
        return linear(biased_attention(q, k, v, bias.permute(2, 0, 1), self.scale), self.proj.weight, self.proj.bias)


class WindowCrossAttnLayer(nn.Module):
    """Condition injection: scale attention + MLP, then window cross-attention to the features + MLP."""

    def __init__(self, dim: int, heads: int, window: int, seeds_side: int, shift: int, rope: bool) -> None:
        super().__init__()
        self.gs_cross_attn_scale = ScaleAttention(dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm3, self.norm4 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.shift, self.window = shift, window
        self.window_cross_attn = WindowCrossAttn(dim, heads, window, seeds_side, rope)
        self.mlp_crossattn_scale = MLP(dim)
        self.mlp_crossattn_feature = MLP(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, feat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        x = add_per_image(x, self.gs_cross_attn_scale(e))
        x = self.mlp_crossattn_scale(self.norm2(x), residual=x)
        # The feature map is rolled, the queries are not, and nothing is rolled back (official behaviour).
        shifted = torch.roll(feat, shifts=(-self.shift, -self.shift), dims=(2, 3)) if self.shift else feat
        x = self.window_cross_attn(self.norm3(x) + pos, image_to_tokens(shifted, self.window), residual=x)
        return self.mlp_crossattn_feature(self.norm4(x), residual=x)


class GSSelfAttnLayer(nn.Module):
    """Gaussian interaction: scale attention + MLP, then shifted-window self-attention (no mask) + MLP."""

    def __init__(self, dim: int, heads: int, side: int, shift: int, rope: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm3, self.norm4 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.gs_self_attn = GSSelfAttn(dim, heads, side, rope)
        self.mlp_selfattn = MLP(dim)
        self.side, self.shift = side, shift
        self.gs_cross_attn_scale = ScaleAttention(dim)
        self.mlp_crossattn = MLP(dim)

    def forward(self, x: torch.Tensor, hc: int, wc: int, e: torch.Tensor) -> torch.Tensor:
        x = add_per_image(x, self.gs_cross_attn_scale(e))
        x = self.mlp_crossattn(self.norm4(x), residual=x)
        y = self.norm1(x)
        if self.shift:
            y = roll_tokens(y, hc, wc, self.side, -self.shift)
        y = self.gs_self_attn(y)
        if self.shift:
            y = roll_tokens(y, hc, wc, self.side, self.shift)
        x = x + y
        return self.mlp_selfattn(self.norm2(x), residual=x)


class WindowCrossAttnBlock(nn.Module):
    """y = x + [conv](MLP(layers(LN(x)))); the conv (enhanced only) runs on the whole token image."""

    def __init__(self, dim: int, heads: int, window: int, seeds_side: int, layers: int, rope: bool) -> None:
        super().__init__()
        self.mlp = mlp_seq(dim, dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            WindowCrossAttnLayer(dim, heads, window, seeds_side, 0 if i % 2 == 0 else window // 2, rope)
            for i in range(layers))
        self.side = seeds_side
        if rope:
            self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, feat: torch.Tensor, e: torch.Tensor,
                hc: int, wc: int) -> torch.Tensor:
        y = self.norm(x)
        for layer in self.blocks:
            y = layer(y, pos, feat, e)
        y = run_mlp(self.mlp, y)
        if hasattr(self, "conv"):
            y = image_to_tokens(self.conv(tokens_to_image(y, hc, wc, self.side)), self.side)
        return x + y


class GSSelfAttnBlock(nn.Module):
    def __init__(self, dim: int, heads: int, side: int, layers: int, rope: bool) -> None:
        super().__init__()
        self.mlp = mlp_seq(dim, dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            GSSelfAttnLayer(dim, heads, side, 0 if i % 2 == 0 else side // 2, rope) for i in range(layers))
        self.side = side
        if rope:
            self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hc: int, wc: int, e: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        for layer in self.blocks:
            y = layer(y, hc, wc, e)
        y = run_mlp(self.mlp, y)
        if hasattr(self, "conv"):
            y = image_to_tokens(self.conv(tokens_to_image(y, hc, wc, self.side)), self.side)
        return x + y


# ----------------------------------------------------------------------------- the decoder
class Fea2GS(nn.Module):
    """Features (B, 64, H, W), H and W multiples of `window`, and scales (B,) -> raw Gaussians (B, 16HW, 9)."""

    HEADS = (("sigma", 2), ("rho", 1), ("alpha", 1), ("rgb", 3), ("mean", 2))

    def __init__(self, inchannel: int = 64, channel: int = 180, num_heads: int = 6, num_crossattn_blocks: int = 1,
                 num_crossattn_layers: int = 2, num_selfattn_blocks: int = 6, num_selfattn_layers: int = 6,
                 window_size: int = 12, rope: bool = False, head_chunk: int = 1024, band_tokens: int = 65536) -> None:
        super().__init__()
        self.channel, self.window, self.rope = channel, window_size, rope
        self.head_chunk = head_chunk
        self.band_tokens = band_tokens  # Gaussians per image in one band of the up-sampling net's second half
        seeds = window_size * window_size  # one seed per LR pixel
        self.gs_embedding = nn.Parameter(torch.randn(seeds, channel))
        self.pos_embedding = nn.Parameter(torch.randn(seeds, channel))
        self.img_feat_proj = nn.Sequential(nn.Conv2d(inchannel, channel, 3, 1, 1), nn.ReLU(),
                                           nn.Conv2d(channel, channel, 3, 1, 1))
        self.window_crossattn_blocks = nn.ModuleList(
            WindowCrossAttnBlock(channel, num_heads, window_size, window_size, num_crossattn_layers, rope)
            for _ in range(num_crossattn_blocks))
        self.gs_selfattn_blocks = nn.ModuleList(
            GSSelfAttnBlock(channel, num_heads, window_size, num_selfattn_layers, rope)
            for _ in range(num_selfattn_blocks))
        for name, k in self.HEADS:
            setattr(self, f"mlp_block_{name}", head_mlp(channel, k))
        self.scale_mlp = mlp_seq(1, channel * 4, channel)
        if rope:
            self.conv_final = nn.Conv2d(channel, channel, 3, 1, 1)
        self.UPNet = nn.Sequential(nn.Conv2d(channel, channel * 4, 3, 1, 1), nn.PixelShuffle(2),
                                   nn.Conv2d(channel, channel * 4, 3, 1, 1), nn.PixelShuffle(2))

    def trunk(self, feat_in: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The token trunk, up to the (B, C, H, W) map the up-sampling net reads (NHWC memory on CPU)."""
        b, _, h, w = feat_in.shape
        ws = self.window
        hc, wc = h // ws, w // ws
        windows = b * hc * wc
        query = self.gs_embedding.unsqueeze(0).expand(windows, -1, -1)
        pos = self.pos_embedding.unsqueeze(0).expand(windows, -1, -1)
        # The network sees 1/s (float32 reciprocal, as the official code feeds it).
        e = self.scale_mlp((1 / scale).unsqueeze(1).to(self.scale_mlp[0].weight.dtype))
        if feat_in.device.type == "cpu":
            feat_in = feat_in.contiguous(memory_format=torch.channels_last)
        feat = self.img_feat_proj(feat_in)
        for block in self.window_crossattn_blocks:
            query = block(query, pos, feat, e, hc, wc)
        resi = query
        for block in self.gs_selfattn_blocks:
            query = block(query, hc, wc, e)
        nhwc = query.device.type == "cpu"  # CUDA keeps its NCHW convolutions unchanged
        if self.rope:
            img = (self.conv_final(tokens_to_image(query, hc, wc, ws, nhwc))
                   + tokens_to_image(resi, hc, wc, ws, nhwc))
        else:
            img = tokens_to_image(query + resi, hc, wc, ws, nhwc)
        return img

    def upsampled_bands(self, img: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """UPNet (conv, pixel shuffle, conv, pixel shuffle) on the trunk's (B, C, H, W) map, its second half in
        bands of rows: yields (first row of the 4H x 4W grid, (B, rows * 4W, C) tokens in row-major order).

        Why: at the second half the map is 16x the LR's pixels times C; a 480 px tile's is 2.65 GB before and
        2.65 GB after the shuffle, and whole it was written, shuffled, transposed for the heads and faulted in
        fresh each tile. In bands of about `band_tokens` Gaussians only the 2H x 2W middle map is whole. The middle
        map is shuffled into a buffer with one zero row above and below, so each band's convolution reads its
        rows plus one either side with no padding on that axis: every output pixel is the same 3x3 dot product
        as the whole-map convolution's. A map that fits in one band runs as one band.
        """
        conv1, conv2 = self.UPNet[0], self.UPNet[2]
        mid = conv1(img)
        b, c4, h, w = mid.shape
        c = c4 // 4
        nhwc = mid.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if nhwc else torch.contiguous_format
        padded = mid.new_empty(b, c, 2 * h + 2, 2 * w).contiguous(memory_format=layout)
        padded[:, :, :1].zero_()
        padded[:, :, -1:].zero_()
        shuffle_into(padded[:, :, 1:-1], mid)
        del mid
        rows_per_band = max(1, self.band_tokens // (2 * 2 * w))  # one middle row gives two grid rows of 4W
        for start in range(0, 2 * h, rows_per_band):
            stop = min(2 * h, start + rows_per_band)
            out = F.conv2d(padded[:, :, start:stop + 2], conv2.weight, conv2.bias, padding=(0, 1))
            tokens = out.new_empty(b, 2 * (stop - start), 4 * w, c)
            shuffle_into(tokens.permute(0, 3, 1, 2), out)
            yield 2 * start, tokens.view(b, -1, c)

    def head_columns(self, flat: torch.Tensor, names: list[str]) -> torch.Tensor:
        """The named heads (in the official column order) on (rows, C) features, in bounded row chunks.

        The heads' first layers read the same input, so they run as one (kC x C) matmul per chunk (the same dot
        products); each head's 4C-wide second layer and its output layer then run before the next head's, so with
        the default 1024-row chunk a head's hidden rows (2.9 MB at C = 180) are reused while still in cache (an
        8192-row chunk's 23.6 MB was not: measured 1.065x). Bias and ReLU are fused into the matmuls on CPU.
        """
        heads = [(name, k) for name, k in self.HEADS if name in names]
        c = flat.shape[1]
        mlps = [getattr(self, f"mlp_block_{name}") for name, _ in heads]
        w1 = torch.cat([m[0].weight for m in mlps])
        b1 = torch.cat([m[0].bias for m in mlps])
        out = flat.new_empty(flat.shape[0], sum(k for _, k in heads))
        for start in range(0, flat.shape[0], self.head_chunk):
            rows = slice(start, start + self.head_chunk)
            hidden = linear_relu(flat[rows], w1, b1)
            col = 0
            for i, ((_, k), mlp) in enumerate(zip(heads, mlps)):
                out[rows, col:col + k] = mlp[4](linear_relu(hidden[:, i * c:(i + 1) * c], mlp[2].weight, mlp[2].bias))
                col += k
        return out

    @staticmethod
    def reference_points(hg: int, wg: int, device: torch.device) -> torch.Tensor:
        """Centres of the hg x wg Gaussian grid in [0,1], (x, y) row-major; float32 linspace as the official."""
        sy, sx = 1 / hg, 1 / wg
        ry, rx = torch.meshgrid(torch.linspace(sy / 2, 1 - sy / 2, hg, dtype=torch.float32, device=device),
                                torch.linspace(sx / 2, 1 - sx / 2, wg, dtype=torch.float32, device=device),
                                indexing="ij")
        return torch.stack((rx.reshape(-1), ry.reshape(-1)), -1)

    @staticmethod
    def place_means(offsets: torch.Tensor, hg: int, wg: int, grid: torch.Tensor) -> torch.Tensor:
        """The mean head's (B, N, 2) offsets -> centres in [0, 1] (x, y): offset / grid size + the grid point;
        `grid` holds the `reference_points` of these N (a band's rows of the hg x wg grid)."""
        divisor = torch.tensor([wg, hg], device=offsets.device)  # int64, as the official: x by width, y by height
        return (offsets / divisor + grid).float()

    def forward(self, feat: torch.Tensor, scale: torch.Tensor,
                keep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Raw Gaussians (B, 16HW, 9), computed band by band of the up-sampled grid (`upsampled_bands`). With
        `keep` (centres (B, N, 2) -> bool (B, N)), the mean head runs first and the other four only on the
        Gaussians kept: the rest get NaN in columns 0-6.

        Why: tiled inference crops every tile's render, and a Gaussian whose dmax box cannot reach the kept pixels
        adds exactly nothing to them; the heads are ~40 % of the decoder's FLOPs, and a 720p frame's six official
        tiles are about 30 % padding and overlap (docs/methods/gsasr.md §5). A kept Gaussian's columns equal the
        full computation's (the same dot products per row).
        """
        img = self.trunk(feat, scale)
        b, c, h, w = img.shape
        hg, wg = 4 * h, 4 * w
        grid = self.reference_points(hg, wg, img.device)
        out = torch.empty(b, hg * wg, 9, dtype=torch.float32, device=img.device)
        names = [name for name, _ in self.HEADS]
        others = [name for name in names if name != "mean"]
        for row, tokens in self.upsampled_bands(img):
            n = tokens.shape[1]
            band = slice(row * wg, row * wg + n)
            flat = tokens.view(b * n, c)
            if keep is None:
                raw = self.head_columns(flat, names).view(b, n, 9)
                out[:, band, :7] = raw[..., :7]
                out[:, band, 7:] = self.place_means(raw[..., 7:9], hg, wg, grid[band])
                continue
            means = self.place_means(self.head_columns(flat, ["mean"]).view(b, n, 2), hg, wg, grid[band])
            out[:, band, 7:] = means
            rows = keep(means).reshape(-1).nonzero().squeeze(1)
            columns = torch.full((b * n, 7), float("nan"), dtype=torch.float32, device=img.device)
            columns[rows] = self.head_columns(flat.index_select(0, rows), others).float()
            out[:, band, :7] = columns.view(b, n, 7)
        return out
