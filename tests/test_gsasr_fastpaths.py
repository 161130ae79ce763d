"""The CPU fast paths of the GSASR decoder equal their straightforward definitions (independent re-computations)."""
from __future__ import annotations

import pytest
import torch

from asr_bench.ops.window_attention import window_attention_torch
from asr_bench.methods.gsasr.decoder import (Fea2GS, GSSelfAttn, linear, linear_relu, roll_tokens,
                                              tokens_to_image)


def roll_by_hand(x: torch.Tensor, hc: int, wc: int, side: int, shift: int) -> torch.Tensor:
    """Un-window into a full grid, torch.roll it, re-window: the definition of the shifted window."""
    c = x.shape[-1]
    b = x.shape[0] // (hc * wc)
    grid = x.reshape(b, hc, wc, side, side, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hc * side, wc * side, c)
    grid = torch.roll(grid, shifts=(shift, shift), dims=(1, 2))
    return grid.reshape(b, hc, side, wc, side, c).permute(0, 1, 3, 2, 4, 5).reshape(b * hc * wc, side * side, c)


@pytest.mark.parametrize("b,hc,wc,side,shift", [(1, 2, 3, 4, -2), (2, 3, 2, 12, 6), (1, 1, 1, 12, -6),
                                                 (2, 2, 3, 16, 8)])
def test_roll_tokens_gather_equals_grid_roll(b, hc, wc, side, shift):
    x = torch.randn(b * hc * wc, side * side, 5)
    assert torch.equal(roll_tokens(x, hc, wc, side, shift), roll_by_hand(x, hc, wc, side, shift))


def test_roll_tokens_round_trip_is_identity():
    x = torch.randn(6, 144, 3)
    assert torch.equal(roll_tokens(roll_tokens(x, 2, 3, 12, -6), 2, 3, 12, 6), x)


def test_channels_last_tokens_to_image_same_values():
    x = torch.randn(2 * 6, 16, 7)
    nchw, nhwc = tokens_to_image(x, 2, 3, 4), tokens_to_image(x, 2, 3, 4, channels_last=True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nchw, nhwc)


@pytest.mark.parametrize("chunk", [7, 8192])
def test_fused_heads_equal_five_separate_mlps(chunk):
    torch.manual_seed(0)
    dec = Fea2GS(channel=12, num_heads=2, num_selfattn_blocks=1, num_selfattn_layers=1, window_size=4,
                 head_chunk=chunk).double()
    up = torch.randn(2, 12, 5, 6, dtype=torch.float64)
    flat = up.permute(0, 2, 3, 1).reshape(2, 30, 12)
    expected = torch.cat([getattr(dec, f"mlp_block_{n}")(flat) for n, _ in Fea2GS.HEADS], dim=-1)
    with torch.no_grad():
        got = dec.head_columns(flat.reshape(60, 12), [n for n, _ in Fea2GS.HEADS]).view(2, 30, 9)
    assert got.shape == (2, 30, 9)
    torch.testing.assert_close(got, expected.detach(), rtol=1e-12, atol=1e-12)


def test_fused_qkv_equals_three_linears():
    torch.manual_seed(1)
    attn = GSSelfAttn(12, 3, 4, rope=False).double()
    x = torch.randn(5, 16, 12, dtype=torch.float64)
    for got, lin in zip(attn.qkv(x), (attn.qhead, attn.khead, attn.vhead)):
        want = lin(x).reshape(5, 16, 3, 4).permute(0, 2, 1, 3)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fused_linear_post_ops_equal_float64_definition():
    """The CPU float32 fused calls (bias, ReLU, residual as oneDNN post-ops) equal x W^T + b, relu, + r."""
    torch.manual_seed(2)
    x = torch.randn(3, 7, 24)[..., :20]  # a strided slice, as the heads read it
    w, b, r = torch.randn(9, 20), torch.randn(9), torch.randn(3, 7, 9)
    want = x.double() @ w.double().T + b.double()
    with torch.inference_mode():
        torch.testing.assert_close(linear_relu(x, w, b).double(), want.relu(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x, w, b).double(), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x, w, b, r).double(), want + r.double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("group", [1, 3, 64])
def test_grouped_attention_equals_the_formula(group):
    """The op's torch path, window groups with contiguous copies: softmax(q*scale @ k^T + bias) @ v per window,
    heads merged."""
    torch.manual_seed(3)
    qkv = torch.randn(7, 16, 3, 2, 5).permute(2, 0, 3, 1, 4)  # (3, windows, heads, N, d), non-contiguous
    bias = torch.randn(2, 16, 16)
    q, k, v = (t.double() for t in qkv)
    want = (((q * 0.3) @ k.transpose(-2, -1) + bias.double()).softmax(-1) @ v).transpose(1, 2).reshape(7, 16, 10)
    got = window_attention_torch(qkv[0], qkv[1], qkv[2], bias, 0.3, group=group)
    assert torch.equal(qkv[0], q.float())  # the inputs are left as they were
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_float32_fast_decoder_equals_float64_plain_path():
    """The whole paper decoder in float32 under inference mode (fused post-ops, grouped attention, head chunks)
    equals the same weights in float64, which take the plain F.linear path."""
    torch.manual_seed(4)
    dec = Fea2GS(channel=12, num_heads=2, num_selfattn_blocks=1, num_selfattn_layers=2, window_size=4,
                 head_chunk=37).eval()
    feat, scale = torch.randn(2, 64, 8, 12), torch.tensor([2.0, 3.5])
    with torch.inference_mode():
        got = dec(feat, scale)
        want = dec.double()(feat.double(), scale)
    assert got.dtype == want.dtype == torch.float32  # the decoder hands out float32 whatever it ran in
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("band_tokens", [1, 150, 10**9])
def test_banded_upsampling_and_heads_equal_the_whole_map(band_tokens):
    """The decoder's bands (one middle row each; three rows with an uneven last band; one band) give the columns
    of the official whole-map UPNet Sequential followed by the five head MLPs and the grid's cell centres; with
    `keep`, the kept rows are those columns and the others NaN."""
    torch.manual_seed(3)
    dec = Fea2GS(channel=12, num_heads=2, num_selfattn_blocks=1, num_selfattn_layers=1, window_size=4,
                 head_chunk=7, band_tokens=band_tokens).double()
    feat = torch.randn(2, 64, 8, 12, dtype=torch.float64)
    scale = torch.tensor([3.0, 2.5], dtype=torch.float64)
    with torch.no_grad():
        got = dec(feat, scale)
        up = dec.UPNet(dec.trunk(feat, scale))
        hg, wg = up.shape[-2:]
        flat = up.permute(0, 2, 3, 1).reshape(2, hg * wg, 12)
        raw = torch.cat([getattr(dec, f"mlp_block_{n}")(flat) for n, _ in Fea2GS.HEADS], dim=-1)
        ys, xs = torch.meshgrid((torch.arange(hg) + 0.5) / hg, (torch.arange(wg) + 0.5) / wg, indexing="ij")
        centres = torch.stack((xs, ys), -1).reshape(1, -1, 2).double()
        means = raw[..., 7:9] / torch.tensor([wg, hg]) + centres
        kept = dec(feat, scale, keep=lambda m: m[..., 1] > 0.5)
    assert got.shape == (2, 32 * 48, 9) and got.dtype == torch.float32
    torch.testing.assert_close(got[..., :7], raw[..., :7].float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[..., 7:], means.float(), rtol=1e-5, atol=1e-6)
    rows = got[..., 8] > 0.5  # the float32 centres the decoder handed to keep
    assert 0 < int(rows.sum()) < rows.numel()
    torch.testing.assert_close(kept[rows], got[rows], rtol=0, atol=0)
    assert kept[~rows][:, :7].isnan().all() and torch.equal(kept[..., 7:], got[..., 7:])
