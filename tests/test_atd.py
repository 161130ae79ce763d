"""ATD encoder: the official IGConv+ key table loads strictly through build_model, and the output equals a slow
re-derivation of its three attentions (window, token dictionary, category groups) and the dictionary update."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_igconv import key_table_file, tsv_state_dict

import asr_bench as ab
from asr_bench.encoders import build_encoder, load_encoder_state

TINY = dict(img_size=8, window_size=4, embed_dim=12, depths=(2, 3), num_heads=(2, 3), category_size=16,
            num_tokens=5, reducted_dim=4, convffn_kernel_size=3, mlp_ratio=2.0)


@pytest.mark.parametrize("method", ["igconv-plus", "igconv"])
def test_official_key_table_loads_strictly_through_build_model(method):
    """The released IGConv+ table; plain IGConv (not released) is the same encoder without the skip keys."""
    sd = tsv_state_dict(key_table_file("igconv_keys_ATD_IGPlus.tsv"))
    if method == "igconv":
        sd = {k: v for k, v in sd.items() if not k.startswith("skip.")}
    model = ab.build_model(method, "atd", preset=f"{method}.atd", checkpoint={"params_ema": sd})
    assert model.weights_loaded and model.pad_multiple == 16
    back = model.official_state_dict()
    assert list(back) == list(sd) and all(torch.equal(back[k], v) for k, v in sd.items())


def _region(v: int, n: int, ws: int) -> int:
    return 0 if v < n - ws else (1 if v < n - ws // 2 else 2)


def window_attention(qkv, H, W, ws, shift, table, heads):
    """Per-window attention on the cyclically shifted map, bias and region mask evaluated per token pair."""
    n, c3 = qkv.shape
    c = c3 // 3
    hd = c // heads
    out = torch.zeros(n, c, dtype=qkv.dtype)
    windows: dict = {}
    for i in range(H):
        for j in range(W):
            si, sj = (i - shift) % H, (j - shift) % W
            windows.setdefault((si // ws, sj // ws), []).append((si, sj, i * W + j))
    for members in windows.values():
        idx = [m[2] for m in members]
        q = qkv[idx, :c].view(-1, heads, hd) * hd ** -0.5
        k, v = qkv[idx, c:2 * c].view(-1, heads, hd), qkv[idx, 2 * c:].view(-1, heads, hd)
        logits = torch.einsum("ahd,bhd->hab", q, k)
        for a, (y1, x1, _) in enumerate(members):
            for b, (y2, x2, _) in enumerate(members):
                logits[:, a, b] += table[(y1 - y2 + ws - 1) * (2 * ws - 1) + (x1 - x2 + ws - 1)]
                if shift and (_region(y1, H, ws), _region(x1, W, ws)) != (_region(y2, H, ws), _region(x2, W, ws)):
                    logits[:, a, b] -= 100.0
        out[idx] = torch.einsum("hab,bhd->ahd", logits.softmax(-1), v).reshape(-1, c)
    return out


def category_attention(qkv, sim, gs_max, heads, logit_scale):
    """Stable sort of the tokens by their argmax dictionary entry, groups of gs, the last one filled with the
    last tokens in reverse, plain attention per group with scale exp(min(logit_scale, log 100))."""
    n, c3 = qkv.shape
    c = c3 // 3
    hd = c // heads
    category = sim.argmax(-1).tolist()
    order = sorted(range(n), key=lambda i: (category[i], i))
    gs = min(n, gs_max)
    groups = -(-n // gs)
    padded = order + order[::-1][:groups * gs - n]
    out = torch.zeros(n, c, dtype=qkv.dtype)
    scale = math.exp(min(float(logit_scale), math.log(100.0)))
    for g in range(groups):
        members = padded[g * gs:(g + 1) * gs]
        q, k, v = (qkv[members, i * c:(i + 1) * c].view(-1, heads, hd) for i in range(3))
        y = torch.einsum("hab,bhd->ahd", (torch.einsum("ahd,bhd->hab", q, k) * scale).softmax(-1), v)
        for row, token in enumerate(members):
            if g * gs + row < n:  # the filler copies are dropped
                out[token] = y[row].reshape(c)
    return out


def atd_reference(x, sd, cfg):
    ws, embed = cfg["window_size"], cfg["embed_dim"]
    h0, w0 = x.shape[-2:]
    ph, pw = (-h0) % ws, (-w0) % ws
    rows = list(range(h0)) + [h0 - 1 - i for i in range(ph)]  # mirror that repeats the edge row
    cols = list(range(w0)) + [w0 - 1 - i for i in range(pw)]
    xp = x[:, :, rows][:, :, :, cols]
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
    for bi, depth in enumerate(cfg["depths"]):
        block_in, heads = tok, cfg["num_heads"][bi]
        td = sd[f"layers.{bi}.residual_group.td"]
        for li in range(depth):
            p = f"layers.{bi}.residual_group.layers.{li}."
            t = ln(tok, p + "norm1")
            qkv = lin(t, p + "wqkv")
            # token-dictionary cross-attention: cosine similarity in the reduced space
            qd, kd = F.normalize(lin(t, p + "attn_atd.wq"), dim=-1), F.normalize(lin(td, p + "attn_atd.wk"), dim=-1)
            gain = 1 + sd[p + "attn_atd.scale"].clamp(0, 1) * math.log(cfg["num_tokens"])
            sim = ((qd @ kd.T) * gain).softmax(-1)
            x_atd = sim @ lin(td, p + "attn_atd.wv")
            x_aca = lin(category_attention(qkv, sim, cfg["category_size"], heads, sd[p + "attn_aca.logit_scale"]),
                        p + "attn_aca.proj")
            x_win = lin(window_attention(qkv, H, W, ws, 0 if li % 2 == 0 else ws // 2,
                                         sd[p + "attn_win.relative_position_bias_table"], heads), p + "attn_win.proj")
            tok = tok + x_win + x_atd + x_aca
            a = F.gelu(lin(ln(tok, p + "norm2"), p + "convffn.fc1"))
            img = a.T.reshape(1, -1, H, W)
            a = a + F.gelu(conv(img, p + "convffn.dwconv.depthwise_conv.0", groups=img.shape[1]))[0].reshape(-1, H * W).T
            tok = tok + lin(a, p + "convffn.fc2")
            if li < depth - 1:  # dictionary update: instance norm over the tokens, softmax, gated mix
                s_t = sim.T
                normed = (s_t - s_t.mean(1, keepdim=True)) / torch.sqrt(s_t.var(1, unbiased=False, keepdim=True) + 1e-5)
                normed = normed * sd[p + "norm3.weight"][:, None] + sd[p + "norm3.bias"][:, None]
                gate = torch.sigmoid(sd[p + "sigma"])
                td = gate * td + (1 - gate) * (normed.softmax(-1) @ tok)
        tok = conv(tok.T.reshape(1, embed, H, W), f"layers.{bi}.conv")[0].reshape(embed, H * W).T + block_in
    feat = ln(tok, "norm").T.reshape(1, embed, H, W)
    return (conv(feat, "conv_after_body") + first)[:, :, :h0, :w0]


@pytest.mark.parametrize("size,category_size,stable", [
    ((8, 8), 1000, False),   # one group: the (unstable, official) sort order cannot matter
    ((6, 11), 1000, False),  # mirror padding to 8x12
    ((8, 8), 16, True),      # 4 groups: the stable sort is the definition the reference follows
    ((7, 10), 10, True),     # 96 tokens in groups of 10: the last group is filled up
])
def test_output_equals_slow_definition(size, category_size, stable):
    cfg = {**TINY, "category_size": category_size}
    enc = build_encoder("atd", stable_sort=stable, **cfg).eval()
    g = torch.Generator().manual_seed(4)
    sd = dict(enc.state_dict())  # keep our index buffer: the reference never reads it
    for k, v in sd.items():
        if v.dtype.is_floating_point:
            sd[k] = torch.randn(v.shape, generator=g) * 0.3 + (1.0 if "norm" in k and k.endswith("weight") else 0.0)
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ours = enc.double()(x)
    assert ours.shape == (2, 12, *size)
    sd64 = {k: v.double() if v.dtype.is_floating_point else v for k, v in sd.items()}
    for i in range(2):
        torch.testing.assert_close(ours[i:i + 1], atd_reference(x[i:i + 1], sd64, cfg), rtol=1e-9, atol=1e-9)


def test_too_small_input_is_a_user_error():
    with pytest.raises(ab.UserError, match="too small"):
        build_encoder("atd", **TINY)(torch.rand(1, 3, 1, 9))
