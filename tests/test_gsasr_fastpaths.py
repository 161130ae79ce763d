"""The CPU fast paths of the GSASR decoder equal their straightforward definitions (independent re-computations)."""
from __future__ import annotations

import pytest
import torch

from asr_bench.methods.gsasr.decoder import Fea2GS, GSSelfAttn, roll_tokens, tokens_to_image


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
        got = dec.heads(up)
    assert got.shape == (2, 30, 9)
    torch.testing.assert_close(got, expected.detach(), rtol=1e-12, atol=1e-12)


def test_fused_qkv_equals_three_linears():
    torch.manual_seed(1)
    attn = GSSelfAttn(12, 3, 4, rope=False).double()
    x = torch.randn(5, 16, 12, dtype=torch.float64)
    for got, lin in zip(attn.qkv(x), (attn.qhead, attn.khead, attn.vhead)):
        want = lin(x).reshape(5, 16, 3, 4).permute(0, 2, 1, 3)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
