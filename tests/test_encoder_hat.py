"""HAT / HAT-L / HAT-RoPE encoder: equals a slow per-window re-derivation of its definition; official key tables
(IGConv's HAT, GSASR's ultra HAT-L) load strictly through build_model; capability flags are what the tests show.

The reference below is written from the definitions only (docs/methods/gsasr.md §2.4, the HAT paper): per-token
attention over its (shifted) window with the region rule of the shift mask evaluated per token pair, the
overlapping cross-attention over an explicitly zero-padded neighbourhood, channel attention as explicit means,
RoPE as real cos/sin rotations of channel pairs, all in float64.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import key_table
import torch
import torch.nn.functional as F

import asr_bench as ab
from asr_bench.encoders import build_encoder, encoder_capabilities, encoder_keys, load_encoder_state
from asr_bench.errors import UserError



def official_rows(name: str, part: str | None = None) -> list[tuple[str, tuple[int, ...], str]]:
    return [(key, shape, dtype) for p, key, shape, dtype in key_table(name) if part is None or p == part]


# ------------------------------------------------------------------ structural constants from their definitions
def sa_index(ws: int) -> torch.Tensor:
    """Window self-attention bias index: (dy + ws - 1) * (2 ws - 1) + dx + ws - 1, by loop."""
    n = ws * ws
    out = torch.empty(n, n, dtype=torch.long)
    for p in range(n):
        for q in range(n):
            out[p, q] = (p // ws - q // ws + ws - 1) * (2 * ws - 1) + p % ws - q % ws + ws - 1
    return out


def oca_index(ws: int, ows: int) -> torch.Tensor:
    """OCAB bias index of HAT: key offset minus query offset, shifted by ws - ows + 1, row stride ws + ows - 1."""
    out = torch.empty(ws * ws, ows * ows, dtype=torch.long)
    for p in range(ws * ws):
        for q in range(ows * ows):
            dy, dx = q // ows - p // ws, q % ows - p % ws
            out[p, q] = (dy + ws - ows + 1) * (ws + ows - 1) + dx + ws - ows + 1
    return out


def test_structural_buffers_equal_their_definitions():
    enc = build_encoder("hat", window_size=4, embed_dim=12, depths=(2,), num_heads=(2,), squeeze_factor=4)
    assert torch.equal(enc.relative_position_index_SA, sa_index(4))
    assert torch.equal(enc.relative_position_index_OCA, oca_index(4, 6))
    rope = build_encoder("hat", rope=True, window_size=4, embed_dim=16, depths=(2,), num_heads=(2,), squeeze_factor=4,
                         compress_ratio=2)
    blk, oca = rope.layers[0].residual_group.blocks[0].attn, rope.layers[0].residual_group.overlap_attn
    assert blk.rope_t_x.tolist() == [t % 4 for t in range(16)] and blk.rope_t_y.tolist() == [t // 4 for t in range(16)]
    assert oca.rope_t_x.tolist() == [t % 6 for t in range(36)] and oca.rope_t_y.tolist() == [t // 6 for t in range(36)]


# ------------------------------------------------------------------ the slow reference
def hat_reference(x: torch.Tensor, sd: dict, embed: int, depths, heads, ws: int, rope: bool, conv_scale: float,
                  overlap_ratio: float, out_features: int | None) -> torch.Tensor:
    """One image (1, 3, h, w) -> features, float64, from the definitions."""
    h0, w0 = x.shape[-2:]
    ph, pw = (-h0) % ws, (-w0) % ws
    xp = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect").copy())
    H, W = xp.shape[-2:]
    ows = int(ws * overlap_ratio) + ws
    pad = (ows - ws) // 2

    def ln(t, name):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-5) * sd[name + ".weight"] + sd[name + ".bias"]

    def lin(t, name):
        return t @ sd[name + ".weight"].T + sd[name + ".bias"]

    def conv(t, name):
        w = sd[name + ".weight"]
        return F.conv2d(t, w, sd[name + ".bias"], padding=w.shape[-1] // 2)

    def gelu(t):
        return 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))

    def mlp(t, p):
        return lin(gelu(lin(t, p + "mlp.fc1")), p + "mlp.fc2")

    def rotate(v, px, py, freqs):
        """v (n, heads, hd) at positions (px, py) (n,): pair (2f, 2f+1) turned by px * fx[h, f] + py * fy[h, f]."""
        angle = px.view(-1, 1, 1) * freqs[0] + py.view(-1, 1, 1) * freqs[1]   # (n, heads, hd/2)
        a, b = v[..., 0::2], v[..., 1::2]
        out = torch.empty_like(v)
        out[..., 0::2] = a * torch.cos(angle) - b * torch.sin(angle)
        out[..., 1::2] = a * torch.sin(angle) + b * torch.cos(angle)
        return out

    def cab(img, p):
        y = gelu(conv(img, p + "cab.0"))
        y = conv(y, p + "cab.2")                                  # (1, C, H, W)
        mean = y[0].reshape(embed, -1).mean(1)                   # explicit global average per channel
        w1, b1 = sd[p + "cab.3.attention.1.weight"][:, :, 0, 0], sd[p + "cab.3.attention.1.bias"]
        w2, b2 = sd[p + "cab.3.attention.3.weight"][:, :, 0, 0], sd[p + "cab.3.attention.3.bias"]
        gate = torch.sigmoid(w2 @ torch.relu(w1 @ mean + b1) + b2)
        return y * gate.view(1, -1, 1, 1)

    def region(v, n, shift):
        return 0 if v < n - ws else (1 if v < n - shift else 2)

    first = conv(xp, "conv_first")
    tok = ln(first[0].permute(1, 2, 0).reshape(H * W, embed), "patch_embed.norm")
    for li, depth in enumerate(depths):
        layer_in = tok
        nh = heads[li]
        hd = embed // nh
        for bi in range(depth):
            p = f"layers.{li}.residual_group.blocks.{bi}."
            shift = 0 if bi % 2 == 0 else ws // 2
            t = ln(tok, p + "norm1")
            conv_branch = cab(t.T.reshape(1, embed, H, W), p + "conv_block.")[0].reshape(embed, H * W).T
            qkv = lin(t, p + "attn.qkv").view(H * W, 3, nh, hd)
            out = torch.zeros(H * W, nh, hd, dtype=torch.float64)
            sy = [(i - shift) % H for i in range(H)]             # position in the shifted frame
            sx = [(j - shift) % W for j in range(W)]
            windows: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for i in range(H):
                for j in range(W):
                    windows.setdefault((sy[i] // ws, sx[j] // ws), []).append((i, j))
            for members in windows.values():
                idx = [i * W + j for i, j in members]
                q, k = qkv[idx, 0], qkv[idx, 1]
                if rope:  # token position inside its window, x = column, y = row
                    px = torch.tensor([sx[j] % ws for _, j in members], dtype=torch.float64)
                    py = torch.tensor([sy[i] % ws for i, _ in members], dtype=torch.float64)
                    q = rotate(q, px, py, sd[p + "attn.rope_freqs"])
                    k = rotate(k, px, py, sd[p + "attn.rope_freqs"])
                logits = torch.einsum("mhd,nhd->hmn", q, k) * hd ** -0.5
                if not rope:
                    table = sd[p + "attn.relative_position_bias_table"]
                    pos = [(sy[i], sx[j]) for i, j in members]
                    lookup = [[(a[0] - b[0] + ws - 1) * (2 * ws - 1) + a[1] - b[1] + ws - 1 for b in pos] for a in pos]
                    logits = logits + table[torch.tensor(lookup)].permute(2, 0, 1)
                    if shift:
                        labels = [(region(y, H, shift), region(x, W, shift)) for y, x in pos]
                        differ = torch.tensor([[la != lb for lb in labels] for la in labels])
                        logits = logits - 100.0 * differ
                out[idx] = torch.einsum("hmn,nhd->mhd", logits.softmax(-1), qkv[idx, 2])
            tok = tok + lin(out.reshape(H * W, embed), p + "attn.proj") + conv_scale * conv_branch
            tok = tok + mlp(ln(tok, p + "norm2"), p)
        # Overlapping cross-attention: keys/values of the ows x ows neighbourhood, zero outside the image.
        p = f"layers.{li}.residual_group.overlap_attn."
        qkv = lin(ln(tok, p + "norm1"), p + "qkv").view(H, W, 3, nh, hd)
        out = torch.zeros(H, W, nh, hd, dtype=torch.float64)
        for wy in range(H // ws):
            for wx in range(W // ws):
                keys = torch.zeros(ows * ows, nh, hd, dtype=torch.float64)
                vals = torch.zeros(ows * ows, nh, hd, dtype=torch.float64)
                for r in range(ows):
                    for c in range(ows):
                        i, j = wy * ws - pad + r, wx * ws - pad + c
                        if 0 <= i < H and 0 <= j < W:
                            keys[r * ows + c], vals[r * ows + c] = qkv[i, j, 1], qkv[i, j, 2]
                queries = torch.stack([qkv[wy * ws + r, wx * ws + c, 0] for r in range(ws) for c in range(ws)])
                if rope:  # keys at (c', r') of the ows grid; query number t = r*ws + c placed on that same grid
                    freqs = sd[p + "rope_freqs"]
                    t_k = torch.arange(ows * ows, dtype=torch.float64)
                    keys = rotate(keys, t_k % ows, torch.div(t_k, ows, rounding_mode="floor"), freqs)
                    t_q = torch.arange(ws * ws, dtype=torch.float64)
                    queries = rotate(queries, t_q % ows, torch.div(t_q, ows, rounding_mode="floor"), freqs)
                logits = torch.einsum("mhd,nhd->hmn", queries, keys) * hd ** -0.5
                if not rope:
                    table = sd[p + "relative_position_bias_table"]
                    # negative indices count from the table's end, as the official lookup does
                    lookup = [[((t // ows - m // ws + ws - ows + 1) * (ws + ows - 1) + t % ows - m % ws + ws - ows + 1)
                               % table.shape[0] for t in range(ows * ows)] for m in range(ws * ws)]
                    logits = logits + table[torch.tensor(lookup)].permute(2, 0, 1)
                res = torch.einsum("hmn,nhd->mhd", logits.softmax(-1), vals)
                for m in range(ws * ws):
                    out[wy * ws + m // ws, wx * ws + m % ws] = res[m]
        tok = tok + lin(out.reshape(H * W, embed), p + "proj")
        tok = tok + mlp(ln(tok, p + "norm2"), p)
        tok = conv(tok.T.reshape(1, embed, H, W), f"layers.{li}.conv")[0].reshape(embed, H * W).T + layer_in
    feat = conv(ln(tok, "norm").T.reshape(1, embed, H, W), "conv_after_body") + first
    if out_features:
        feat = F.leaky_relu(conv(feat, "conv_before_upsample.0"), 0.01)
    return feat[:, :, :h0, :w0]


def random_state(enc, seed: int) -> dict[str, torch.Tensor]:
    """The encoder's own keys and shapes with random values; structural buffers from the definitions above."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, value in enc.state_dict().items():
        if key == "relative_position_index_SA":
            sd[key] = sa_index(enc.window_size)
        elif key == "relative_position_index_OCA":
            sd[key] = oca_index(enc.window_size, math.isqrt(value.shape[1]))
        elif key.endswith(("rope_t_x", "rope_t_y")):
            sd[key] = value.clone()  # pinned by test_structural_buffers_equal_their_definitions
        elif key.endswith("norm1.weight") or key.endswith("norm2.weight") or key.endswith("norm.weight"):
            sd[key] = 1 + 0.2 * torch.randn(value.shape, generator=g)
        elif key.endswith("rope_freqs"):
            sd[key] = torch.rand(value.shape, generator=g) * 2
        else:
            fan_in = max(1, int(np.prod(value.shape[1:])))
            offset = 0.3 if "bias_table" in key else 0.0
            sd[key] = torch.randn(value.shape, generator=g) * (0.7 / fan_in ** 0.5) + offset
    return sd


TINY = {
    "hat": dict(window_size=4, embed_dim=12, depths=(2, 2), num_heads=(2, 3), squeeze_factor=4),
    "rope": dict(rope=True, window_size=4, embed_dim=16, depths=(2, 1), num_heads=(2, 2), squeeze_factor=4,
                 compress_ratio=2),
}


@pytest.mark.parametrize("variant,size,out_features", [
    ("hat", (5, 7), None), ("rope", (8, 8), 5),  # padded to 8x8: 2x2 windows, shifts, masks, OCAB borders
    pytest.param("hat", (9, 13), 5, marks=pytest.mark.slow),
    pytest.param("rope", (9, 13), None, marks=pytest.mark.slow)])
def test_hat_equals_slow_reference(variant, size, out_features):
    cfg = TINY[variant]
    enc = build_encoder("hat", out_features=out_features, conv_scale=0.3, **cfg).eval()
    sd = random_state(enc, seed=1)
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = enc(x)
    assert ours.shape == (2, out_features or cfg["embed_dim"], *size)
    sd64 = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    for i in range(2):  # batch 2: windows of different images must not mix
        ref = hat_reference(x[i:i + 1].double(), sd64, cfg["embed_dim"], cfg["depths"], cfg["num_heads"], 4,
                            cfg.get("rope", False), 0.3, 0.5, out_features)
        torch.testing.assert_close(ours[i:i + 1].double(), ref, rtol=1e-4, atol=1e-4)


def test_hat_sizes_and_errors():
    assert sum(p.numel() for p in build_encoder("hat").parameters()) == 20_371_608  # the IGConv table, sans head
    assert len(build_encoder("hat", large=True).layers) == 12
    with pytest.raises(UserError, match="same length"):
        build_encoder("hat", depths=(2, 2), num_heads=(2,))
    with pytest.raises(UserError, match="divisible"):
        build_encoder("hat", embed_dim=100)
    enc = build_encoder("hat", **TINY["hat"])
    with pytest.raises(UserError, match="too small"):
        enc(torch.rand(1, 3, 2, 9))


# ------------------------------------------------------------------ official key tables
def table_state(rows, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 100, shape, generator=g) if dtype.strip() == "int64"
                else torch.randn(shape, generator=g) * 0.02) for k, shape, dtype in rows}


@pytest.mark.slow  # full-size HAT + IGConv+ head: ~10 s on a busy CPU
def test_igconv_plus_hat_table_loads_strictly_and_round_trips():
    rows = official_rows("igconv_keys_HAT_IGPlus.tsv")
    sd = table_state(rows)
    model = ab.build_model("igconv-plus", "hat", preset="igconv-plus.hat", checkpoint={"params_ema": sd})
    assert model.weights_loaded and model.pad_multiple == 16 and model.upsample.geo_ensemble
    back = model.official_state_dict()
    assert list(back) == [r[0] for r in rows]
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    with pytest.raises(UserError, match="missing"):
        ab.build_model("igconv-plus", "hat", checkpoint={"params_ema": {k: v for k, v in sd.items()
                                                                        if "overlap_attn" not in k}})


def test_gsasr_ultra_encoder_table_matches_our_keys():
    """Cheap half of the ultra strict load (the whole model is in test_gsasr.py, slow): key names, order, shapes."""
    rows = official_rows("gsasr_keys_ultra_hatl.tsv", part="encoder")
    kwargs = ab.registry.get_preset("gsasr.hatl-ultra").encoder_kwargs
    with torch.device("meta"):
        enc = build_encoder("hat", **kwargs)
    assert encoder_keys(enc, "gsasr") == [r[0] for r in rows]
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == {k: s for k, s, _ in rows}


# ------------------------------------------------------------------ capabilities
def test_capability_flags_are_what_the_tests_show():
    caps = encoder_capabilities("hat")
    assert caps.size_multiple == 16 and caps.tile_overlap >= 16
    enc = build_encoder("hat", **TINY["hat"]).eval()
    load_encoder_state(enc, random_state(enc, 3), "igconv")
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        ref = enc(x)
        for name in caps.dtypes:
            dtype = getattr(torch, name)
            got = enc.to(dtype)(x.to(dtype)).float()
            torch.testing.assert_close(got, ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))
        enc.float()
        # a size that is already a multiple of the window is not padded: the features are translation-covariant
        # there, i.e. the crop of a bigger multiple-size input's result is not what we compare; instead the padded
        # path must equal running on the explicitly reflect-padded input and cropping.
        odd = torch.rand(1, 3, 7, 10)
        padded = F.pad(odd, (0, 2, 0, 1), mode="reflect")
        torch.testing.assert_close(enc(odd), enc(padded)[:, :, :7, :10])


def test_igconv_hat_pads_to_16_and_crops_back():
    """The official test code reflect-pads the LR to a multiple of 16 for HAT and crops the output back."""
    import dataclasses

    spec = ab.registry.get_method("igconv-plus")
    tiny = dataclasses.replace(spec.presets["igconv-plus.hat"], encoder_kwargs=TINY["hat"])
    model = spec.builder(encoder="hat", preset=tiny, weights=None)
    ab.registry.declare(model, spec, tiny)  # what build_model does: the spec's multiple (16) onto the model
    model.eval()
    lr = torch.rand(1, 3, 9, 13)
    with torch.no_grad():
        got = model.upscale(lr, scale=2, clamp=False)
        want = model.forward_scale(F.pad(lr, (0, 3, 0, 7), mode="reflect"), 2)[..., :18, :26]
    torch.testing.assert_close(got, want)
    # too small to reflect-pad to 16: the shared pad_to_multiple falls back to replicate padding
    assert model.upscale(torch.rand(1, 3, 8, 20), scale=2).shape[-2:] == (16, 40)
