"""SRFormer encoder: the official IGConv key tables load strictly through build_model, and the output equals a
slow per-token re-derivation of permuted self-attention (2x2-folded keys, cell biases, the half-map shift mask)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_igconv import key_table_file, tsv_state_dict

import asr_bench as ab
from asr_bench.encoders import build_encoder, load_encoder_state

# window 6: an odd shift (3), so the key map's shift ceil(3 / 2) = 2 differs from 3 // 2 as it does at window 22
TINY = dict(img_size=12, window_size=6, embed_dim=16, depths=(2, 2), num_heads=(2, 4), mlp_ratio=2.0)


@pytest.mark.parametrize("method,table", [
    ("igconv", "igconv_keys_SRFormer_IGConv_DF2K.tsv"),
    ("igconv-plus", "igconv_keys_SRFormer_IGConvPlus_DF2K.tsv"),
])
def test_official_key_table_loads_strictly_through_build_model(method, table):
    sd = tsv_state_dict(key_table_file(table))
    model = ab.build_model(method, "srformer", preset=f"{method}.srformer", checkpoint={"params": sd})
    assert model.weights_loaded and model.pad_multiple == 22
    back = model.official_state_dict()
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], v) for k, v in sd.items())


def _region(v: int, n: int, win: int, shift: int) -> int:
    """Which of the three bands (along one axis) of the cyclically shifted map position v lies in."""
    return 0 if v < n - win else (1 if v < n - shift else 2)


def srformer_reference(x: torch.Tensor, sd: dict, cfg: dict) -> torch.Tensor:
    """SRFormer from its definition, one window and one query at a time (float64)."""
    ws, embed = cfg["window_size"], cfg["embed_dim"]
    half, quarter = ws // 2, embed // 4
    h0, w0 = x.shape[-2:]
    xp = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, (-h0) % ws), (0, (-w0) % ws)), mode="reflect"))
    H, W = xp.shape[-2:]

    def ln(t, name):
        return F.layer_norm(t, (t.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def lin(t, name):
        return t @ sd[name + ".weight"].T + sd[name + ".bias"]

    def conv(t, name, groups=1):
        w = sd[name + ".weight"]
        return F.conv2d(t, w, sd[name + ".bias"], padding=w.shape[-1] // 2, groups=groups)

    first = conv(xp, "conv_first")
    tok = ln(first[0].reshape(embed, H * W).T, "patch_embed.norm")
    for li, depth in enumerate(cfg["depths"]):
        layer_in, heads = tok, cfg["num_heads"][li]
        hd = embed // heads
        for bi in range(depth):
            p = f"layers.{li}.residual_group.blocks.{bi}."
            shift = 0 if bi % 2 == 0 else ws // 2
            t = ln(tok, p + "norm1")
            q = lin(t, p + "attn.q").view(H * W, heads, hd) * hd ** -0.5
            kv = lin(t, p + "attn.kv")  # (HW, C/2): first quarter of the channels = key part, second = value part
            table = sd[p + "attn.relative_position_bias_table"]
            out = torch.zeros(H * W, heads, hd, dtype=x.dtype)
            sy, sx = [(i - shift) % H for i in range(H)], [(j - shift) % W for j in range(W)]  # rolled coordinates
            at = {(sy[i], sx[j]): i * W + j for i in range(H) for j in range(W)}
            for wy in range(H // ws):
                for wx in range(W // ws):
                    cells = [(cy, cx) for cy in range(half) for cx in range(half)]
                    # a key (value) cell concatenates the key (value) quarters of its 2x2 tokens, in (dy, dx) order
                    def fold(channels):
                        return torch.stack([torch.cat([kv[at[(wy * ws + 2 * cy + dy, wx * ws + 2 * cx + dx)], channels]
                                                       for dy in (0, 1) for dx in (0, 1)])
                                            for cy, cx in cells]).view(len(cells), heads, hd)
                    keys, values = fold(slice(0, quarter)), fold(slice(quarter, 2 * quarter))
                    cy = torch.tensor([c[0] for c in cells])
                    cx = torch.tensor([c[1] for c in cells])
                    key_shift = math.ceil(shift / 2)  # official slices: -shift_size // 2 (floor of the negative)
                    k_region = [(_region(wy * half + c[0], H // 2, half, key_shift),
                                 _region(wx * half + c[1], W // 2, half, key_shift)) for c in cells]
                    for ly in range(ws):
                        for lx in range(ws):
                            qi = at[(wy * ws + ly, wx * ws + lx)]
                            # bias of the offset between the query's 2x2 cell and each key cell
                            offset = (ly // 2 - cy + half - 1) * (2 * half - 1) + (lx // 2 - cx + half - 1)
                            logits = torch.einsum("hd,nhd->hn", q[qi], keys) + table[offset].T
                            if shift:
                                q_region = (_region(wy * ws + ly, H, ws, shift), _region(wx * ws + lx, W, ws, shift))
                                logits = logits + torch.tensor([0.0 if r == q_region else -100.0 for r in k_region],
                                                               dtype=logits.dtype)
                            out[qi] = torch.einsum("hn,nhd->hd", logits.softmax(-1), values)
            tok = tok + lin(out.reshape(H * W, embed), p + "attn.proj")
            a = F.gelu(lin(ln(tok, p + "norm2"), p + "mlp.fc1"))
            img = a.T.reshape(1, -1, H, W)
            a = a + F.gelu(conv(img, p + "mlp.dwconv.depthwise_conv.0", groups=img.shape[1]))[0].reshape(-1, H * W).T
            tok = tok + lin(a, p + "mlp.fc2")
        tok = conv(tok.T.reshape(1, embed, H, W), f"layers.{li}.conv")[0].reshape(embed, H * W).T + layer_in
    feat = ln(tok, "norm").T.reshape(1, embed, H, W)
    return (conv(feat, "conv_after_body") + first)[:, :, :h0, :w0]


@pytest.mark.parametrize("size", [(12, 12), (13, 10), (5, 11)])
def test_output_equals_slow_per_token_definition(size):
    """(12, 12) is the build size (stored masks), the others need padding and masks for another size; batch 2."""
    enc = build_encoder("srformer", **TINY).eval()
    g = torch.Generator().manual_seed(3)
    sd = dict(enc.state_dict())  # keep our index/mask buffers: the reference never reads them
    for k, v in sd.items():
        if v.dtype.is_floating_point and "attn_mask" not in k:
            sd[k] = torch.randn(v.shape, generator=g) * 0.2 + (1.0 if "norm" in k and k.endswith("weight") else 0.0)
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, *size, generator=g)
    with torch.no_grad():
        ours = enc.double()(x.double())
    assert ours.shape == (2, 16, *size)
    sd64 = {k: v.double() if v.dtype.is_floating_point else v for k, v in sd.items()}
    for i in range(2):
        ref = srformer_reference(x[i:i + 1].double(), sd64, TINY)
        torch.testing.assert_close(ours[i:i + 1], ref, rtol=1e-9, atol=1e-9)


def test_too_small_input_is_a_user_error():
    enc = build_encoder("srformer", **TINY)
    with pytest.raises(ab.UserError, match="too small"):
        enc(torch.rand(1, 3, 2, 9))
