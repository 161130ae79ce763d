"""HiT-SRF encoder: the official IGConv key tables load strictly through build_model with the published parameter
counts, and the output equals a slow per-window, per-query re-derivation of the spatial-channel correlation
(cell-reduced values, the cell-mean dynamic position bias, the channel correlation) on hierarchical windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import key_table

import asr_bench as ab
from asr_bench.encoders import build_encoder, load_encoder_state

# base 4 and ratios 0.5..3: windows 2 (base clipped to 2), 4 (one pixel per cell), 8 and 12 (2x2 and 3x3 pixels
# per cell); embed 80 gives the position MLP 5 hidden units (dim // 16), as the released 60 gives it 3
TINY = dict(embed_dim=80, depths=(3, 4), num_heads=(2, 4), base_win_size=(4, 4), hier_win_ratios=(0.5, 1, 2, 3),
            mlp_ratio=2.0)
# docs/methods/igconv.md §4: keys and parameters of the released HiT-SRF models
RELEASED = {"igconv": ("igconv_keys_HiT_SRF_IGConv_DIV2K.tsv", 894, 1_381_127),
            "igconv-plus": ("igconv_keys_HiT_SRF_IGConvPlus_DIV2K.tsv", 903, 1_725_447)}


@pytest.mark.parametrize("method", sorted(RELEASED))
def test_official_key_table_loads_strictly_through_build_model(method):
    table, n_keys, n_params = RELEASED[method]
    gen = torch.Generator().manual_seed(0)
    sd = {key: torch.randn(shape, generator=gen) for _, key, shape, _ in key_table(table)}
    assert len(sd) == n_keys and sum(v.numel() for v in sd.values()) == n_params
    model = ab.build_model(method, preset=f"{method}.hit-srf", checkpoint={"params": sd})
    assert model.weights_loaded and model.pad_multiple == 1
    assert sum(p.numel() for p in model.parameters()) == n_params
    back = model.official_state_dict()
    assert list(back) == list(sd) and all(torch.equal(back[k], v) for k, v in sd.items())


def test_a_plain_igconv_checkpoint_is_refused_by_igconv_plus():
    sd = {key: torch.zeros(shape) for _, key, shape, _ in key_table(RELEASED["igconv"][0])}
    with pytest.raises(ab.UserError, match="plain IGConv checkpoint"):
        ab.build_model("igconv-plus", preset="igconv-plus.hit-srf", checkpoint={"params": sd})


def hit_srf_reference(x: torch.Tensor, sd: dict, cfg: dict) -> torch.Tensor:
    """HiT-SRF from its definition, one window, one query and one cell at a time (float64, batch 1)."""
    embed = cfg["embed_dim"]
    h, w = x.shape[-2:]

    def ln(t, name):
        return F.layer_norm(t, (t.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def lin(t, name):
        return t @ sd[name + ".weight"].T + sd[name + ".bias"]

    def conv(t, name, groups=1):
        k = sd[name + ".weight"]
        return F.conv2d(t, k, sd[name + ".bias"], padding=k.shape[-1] // 2, groups=groups)

    def position_mlp(offset, p):  # offset (..., 2) = (dy, dx) -> (..., heads)
        t = lin(offset, p + "pos_proj")
        for stage in ("pos1", "pos2", "pos3"):
            t = lin(torch.relu(ln(t, f"{p}{stage}.0")), f"{p}{stage}.2")
        return t

    def correlation(img, p, win, base, heads):
        """SCC on a (1, C, H, W) map whose sides are multiples of `win` -> (H*W, C) tokens."""
        C, H, W = img.shape[1:]
        dfe = conv(F.leaky_relu(conv(F.leaky_relu(conv(img, p + "qv.conv.0"), 0.2), p + "qv.conv.2"), 0.2),
                   p + "qv.conv.4") * conv(img, p + "qv.linear")
        tok = dfe[0].reshape(C, H * W).T
        q_all, v_all = tok[:, : C // 2], tok[:, C // 2:]
        hd = C // (2 * heads)
        bh, bw = min(win, base), min(win, base)
        kh, kw = win // bh, win // bw
        lw, lb = sd[p + "spatial_linear.weight"][0], sd[p + "spatial_linear.bias"][0]
        # the position MLP of every offset a window can hold, evaluated once: offset -> (heads,)
        grid = [(dy, dx) for dy in range(1 - win, win) for dx in range(1 - win, win)]
        mlp = position_mlp(torch.tensor(grid, dtype=img.dtype), p + "pos.")
        table = dict(zip(grid, mlp))
        out = torch.zeros(H * W, C, dtype=img.dtype)
        for wy in range(0, H, win):
            for wx in range(0, W, win):
                pix = [(wy + r, wx + c) for r in range(win) for c in range(win)]
                idx = [r * W + c for r, c in pix]
                q, v = q_all[idx], v_all[idx]
                # each base cell's value token: the spatial linear over the cell's pixels (row-major in the cell)
                cells = [(a, b) for a in range(bh) for b in range(bw)]
                v_r = torch.stack([sum(lw[i * kw + j] * v[(a * kh + i) * win + (b * kw + j)]
                                       for i in range(kh) for j in range(kw)) + lb for a, b in cells])
                for n, (r, c) in enumerate(pix):
                    ly, lx = r - wy, c - wx
                    for m, (a, b) in enumerate(cells):
                        # the bias of a cell: the mean of the MLP over the offsets to the cell's pixels
                        bias = torch.stack([table[(ly - a * kh - i, lx - b * kw - j)]
                                            for i in range(kh) for j in range(kw)]).mean(0)
                        for hh in range(heads):  # no softmax: the correlation weights the values directly
                            ch = slice(hh * hd, (hh + 1) * hd)
                            out[idx[n], ch] += (q[n, ch] @ v_r[m, ch] / hd + bias[hh]) * v_r[m, ch]
                length = len(idx)
                corr = sum(torch.outer(q[t], v[t]) for t in range(length)) / length   # (C/2, C/2)
                for n in range(length):
                    out[idx[n], C // 2:] = corr @ v[n]
        return lin(out, p + "proj")

    first = conv(x, "conv_first")
    tok = ln(first[0].reshape(embed, h * w).T, "patch_embed.norm")
    base = cfg["base_win_size"][0]
    for li, depth in enumerate(cfg["depths"]):
        group_in = tok
        for bi in range(depth):
            p = f"layers.{li}.residual_group.blocks.{bi}."
            win = int(base * cfg["hier_win_ratios"][bi])
            img = tok.T.reshape(1, embed, h, w).numpy()
            img = torch.from_numpy(np.pad(img, ((0, 0), (0, 0), (0, (-h) % win), (0, (-w) % win)), mode="reflect"))
            H, W = img.shape[-2:]
            corr = correlation(img, p + "correlation.", win, base, cfg["num_heads"][li])
            corr = corr.view(H, W, embed)[:h, :w].reshape(h * w, embed)
            tok = tok + ln(corr, p + "norm1")
            a = F.gelu(lin(tok, p + "mlp.fc1"))
            im = a.T.reshape(1, -1, h, w)
            a = a + F.gelu(conv(im, p + "mlp.dwconv.depthwise_conv.0", groups=im.shape[1]))[0].reshape(-1, h * w).T
            tok = tok + ln(lin(a, p + "mlp.fc2"), p + "norm2")
        tok = conv(tok.T.reshape(1, embed, h, w), f"layers.{li}.conv")[0].reshape(embed, h * w).T + group_in
    feat = ln(tok, "norm").T.reshape(1, embed, h, w)
    return conv(feat, "conv_after_body") + first


@pytest.mark.parametrize("size", [(9, 7), (5, 11)])
def test_output_equals_slow_per_window_definition(size):
    """(9, 7) pads every block by one reflection; (5, 11) needs a repeated reflection where the 12-pixel window
    exceeds its 5 rows (the official two-step pad). Batch 2, so windows of one image don't leak."""
    enc = build_encoder("hit-srf", **TINY).eval()
    g = torch.Generator().manual_seed(3)
    sd = {k: torch.randn(v.shape, generator=g) * 0.2 + (1.0 if "norm" in k and k.endswith("weight") else 0.0)
          for k, v in enc.state_dict().items()}
    load_encoder_state(enc, sd, "igconv")
    sd = {k: v.double() for k, v in sd.items()}
    x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ours = enc.double()(x)
    assert ours.shape == (2, 80, *size)
    for i in range(2):
        torch.testing.assert_close(ours[i:i + 1], hit_srf_reference(x[i:i + 1], sd, TINY), rtol=1e-9, atol=1e-9)


def test_bad_window_ratios_are_user_errors():
    with pytest.raises(ab.UserError, match="multiple of the base window"):
        build_encoder("hit-srf", **{**TINY, "hier_win_ratios": (0.5, 1, 1.5, 3)})
    with pytest.raises(ab.UserError, match="divisible by 5 and by 2 x num_heads"):
        build_encoder("hit-srf", **{**TINY, "embed_dim": 82})
    with pytest.raises(ab.UserError, match="one window ratio per block"):
        build_encoder("hit-srf", **{**TINY, "depths": (5, 4)})
