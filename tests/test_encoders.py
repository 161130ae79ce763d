"""The shared encoders: strict loading under every official naming, checked against hand-written forwards.

Key names and shapes come from the official key tables (tests/data/keys/*.tsv, docs/encoders.md) and the real LIIF
checkpoint; each output is compared with a functional forward written here with F.conv2d over the *official*
state dict, so a wrong key map, a missing skip or a wrong block order fails.
"""
from __future__ import annotations

import functools

import pytest
from conftest import key_table
import torch
import torch.nn.functional as F

from asr_bench.encoders import (build_encoder, encoder_keys, export_encoder_state, list_encoders,
                                load_encoder_state, schemes_for, split_encoder_state)
from asr_bench.errors import UnknownName, UserError



def official_table(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) encoder rows of an official key table (both column layouts)."""
    return [(key, shape, dtype) for part, key, shape, dtype in key_table(name) if part in ("", "encoder")]


def random_state(rows, seed: int = 0, buffers: dict | None = None) -> dict[str, torch.Tensor]:
    """A state dict with exactly these official keys and shapes; weights small so deep nets stay finite."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, dtype in rows:
        if buffers and key.rsplit(".", 1)[-1] in buffers:
            sd[key] = buffers[key.rsplit(".", 1)[-1]](key, shape)
        else:
            sd[key] = torch.randn(shape, generator=g) * (0.5 / max(1, (torch.tensor(shape[1:]).prod().item()) ** 0.5))
    return sd


def conv(x, sd, name, pad=None):
    w = sd[name + ".weight"]
    return F.conv2d(x, w, sd[name + ".bias"], padding=w.shape[-1] // 2 if pad is None else pad)


# ------------------------------------------------------------------ EDSR


def edsr_reference(x, sd, naming: str, n_blocks: int, res_scale: float, global_skip: bool):
    """EDSR written from docs/methods/liif.md §2.1 / docs/methods/gsasr.md §2.1 with the official key names."""
    if naming == "liif":
        first, c1, c2, last = "head.0", "body.{}.body.0", "body.{}.body.2", f"body.{n_blocks}"
    else:
        first, c1, c2, last = "conv_first", "body.{}.conv1", "body.{}.conv2", "conv_after_body"
    head = conv(x, sd, first)
    y = head
    for i in range(n_blocks):
        y = y + res_scale * conv(F.relu(conv(y, sd, c1.format(i))), sd, c2.format(i))
    y = conv(y, sd, last)
    return y + head if global_skip else y


def test_list_encoders():
    assert {"edsr", "edsr-baseline", "rdn", "swinir", "hat", "rcan", "plksr", "smfanet", "srformer", "atd",
            "mambair", "mambair-light", "hit-srf"} <= set(list_encoders())
    assert list_encoders() == sorted(list_encoders())
    with pytest.raises(UnknownName, match="did you mean|Did you mean"):
        build_encoder("edsr_baseline")
    with pytest.raises(UserError, match="unknown option"):
        build_encoder("rdn", global_skip=False)


def test_edsr_baseline_real_liif_checkpoint(liif_checkpoint):
    """The official LIIF file's `encoder.*` part (72 keys, mean-shift included) loads strictly and runs EDSR."""
    ckpt = torch.load(liif_checkpoint, map_location="cpu", weights_only=False)
    enc_sd, rest = split_encoder_state(ckpt["model"]["sd"], "encoder.")
    assert len(enc_sd) == 72 and all(k.startswith("imnet.") for k in rest)
    enc = build_encoder("edsr-baseline").eval()
    load_encoder_state(enc, enc_sd, "liif")
    assert encoder_keys(enc, "liif") == list(enc_sd)  # same names, same file order
    x = torch.rand(1, 3, 11, 14, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours = enc(x)
    ref = edsr_reference(x, enc_sd, "liif", 16, 1.0, True)
    assert ours.shape == (1, 64, 11, 14) and enc.out_channels == 64
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("table,name,kwargs,global_skip,res_scale,n_blocks", [
    ("igconv_keys_EDSRbaseline_IGConv_classdefaults_NOTRELEASED.tsv", "edsr-baseline", {}, True, 1.0, 16),
    ("gsasr_keys_paper_edsr.tsv", "edsr-baseline", {"global_skip": False}, False, 1.0, 16),
    ("igconv_keys_EDSR_IGConv_DIV2K.tsv", "edsr", {}, True, 0.1, 32),
])
def test_edsr_basicsr_naming(table, name, kwargs, global_skip, res_scale, n_blocks):
    rows = [r for r in official_table(table) if not r[0].startswith(("upsample.", "skip."))]
    sd = random_state(rows)
    enc = build_encoder(name, **kwargs).eval()
    scheme = "gsasr" if table.startswith("gsasr") else "igconv"
    load_encoder_state(enc, sd, scheme)
    assert encoder_keys(enc, scheme) == [r[0] for r in rows]
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = enc(x)
    torch.testing.assert_close(ours, edsr_reference(x, sd, "basicsr", n_blocks, res_scale, global_skip),
                               rtol=1e-5, atol=1e-5)


def test_edsr_liif_naming_round_trip_and_strictness():
    enc = build_encoder("edsr-baseline")
    sd = export_encoder_state(enc, "liif")
    assert list(sd)[:4] == ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]
    assert list(sd)[-2:] == ["body.16.weight", "body.16.bias"] and len(sd) == 72
    assert torch.equal(sd["sub_mean.bias"], -torch.tensor((0.4488, 0.4371, 0.4040)))
    other = build_encoder("edsr-baseline")
    load_encoder_state(other, sd, "liif")
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), other.state_dict().values()))
    # The unused mean-shift keys are still required in LIIF naming.
    with pytest.raises(UserError, match=r"1 missing \(e\.g\. sub_mean\.bias\)"):
        load_encoder_state(other, {k: v for k, v in sd.items() if k != "sub_mean.bias"}, "liif")
    with pytest.raises(UserError, match=r"unexpected \(e\.g\. tail\.0\.weight\)"):
        load_encoder_state(other, {**sd, "tail.0.weight": torch.zeros(1)}, "liif")
    with pytest.raises(UserError, match="wrong shape"):
        load_encoder_state(other, {**sd, "head.0.bias": torch.zeros(65)}, "liif")
    # A checkpoint in the other naming is reported, not silently half-loaded.
    with pytest.raises(UserError, match="missing"):
        load_encoder_state(other, sd, "basicsr")
    with pytest.raises(UnknownName):
        load_encoder_state(other, sd, "swinir")
    assert schemes_for(other) == ["basicsr", "gsasr", "igconv", "liif"]


# ------------------------------------------------------------------ RDN


def rdn_reference(x, sd, n_blocks: int, n_convs: int):
    """RDN written from docs/methods/liif.md §2.2 with the official key names."""
    f1 = conv(x, sd, "SFENet1")
    y = conv(f1, sd, "SFENet2")
    outs = []
    for d in range(n_blocks):
        t = y
        for c in range(n_convs):
            t = torch.cat([t, F.relu(conv(t, sd, f"RDBs.{d}.convs.{c}.conv.0"))], 1)
        y = conv(t, sd, f"RDBs.{d}.LFF", pad=0) + y
        outs.append(y)
    return conv(conv(torch.cat(outs, 1), sd, "GFF.0", pad=0), sd, "GFF.1") + f1


def liif_rdn_rows(config: str):
    """The key table of docs/methods/liif.md §2.2 (configs B and A), written out from that page's text."""
    n_blocks, n_convs, growth = {"B": (16, 8, 64), "A": (20, 6, 32)}[config]
    rows = [("SFENet1.weight", (64, 3, 3, 3)), ("SFENet1.bias", (64,)),
            ("SFENet2.weight", (64, 64, 3, 3)), ("SFENet2.bias", (64,))]
    for d in range(n_blocks):
        for c in range(n_convs):
            rows += [(f"RDBs.{d}.convs.{c}.conv.0.weight", (growth, 64 + growth * c, 3, 3)),
                     (f"RDBs.{d}.convs.{c}.conv.0.bias", (growth,))]
        rows += [(f"RDBs.{d}.LFF.weight", (64, 64 + n_convs * growth, 1, 1)), (f"RDBs.{d}.LFF.bias", (64,))]
    rows += [("GFF.0.weight", (64, 64 * n_blocks, 1, 1)), ("GFF.0.bias", (64,)),
             ("GFF.1.weight", (64, 64, 3, 3)), ("GFF.1.bias", (64,))]
    return [(k, s, "float32") for k, s in rows]


@pytest.mark.parametrize("source,scheme,config", [
    ("gsasr_keys_paper_rdn.tsv", "gsasr", "B"),
    ("igconv_keys_RDN_IGConvPlus_DIV2K.tsv", "igconv", "B"),
    ("liif.md", "liif", "B"),
    ("liif.md", "metasr", "B"),
    ("liif.md", "liif", "A"),
])
def test_rdn_namings(source, scheme, config):
    if source.endswith(".tsv"):
        rows = [r for r in official_table(source) if not r[0].startswith(("UPNet.", "skip."))]
    else:
        rows = liif_rdn_rows(config)
    sd = random_state(rows, seed=3)
    enc = build_encoder("rdn", config=config).eval()
    load_encoder_state(enc, sd, scheme)
    assert encoder_keys(enc, scheme) == [r[0] for r in rows]
    assert sum(p.numel() for p in enc.parameters()) == {"B": 21_973_952, "A": 5_467_072}[config]
    x = torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = enc(x)
    n_blocks, n_convs = {"B": (16, 8), "A": (20, 6)}[config]
    torch.testing.assert_close(ours, rdn_reference(x, sd, n_blocks, n_convs), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ SwinIR


def swin_reference(x: torch.Tensor, sd: dict, embed: int, depths, heads, ws: int, out_features: int | None):
    """A slow SwinIR forward from the definitions: per-token attention over its (shifted) window, with the
    region rule of the shift mask evaluated per token pair, reflect padding by numpy, and explicit LayerNorms."""
    import numpy as np

    h0, w0 = x.shape[-2:]
    ph, pw = (-h0) % ws, (-w0) % ws
    xp = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect").copy())
    H, W = xp.shape[-2:]

    def ln(t, name):
        return F.layer_norm(t, (t.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def lin(t, name):
        return t @ sd[name + ".weight"].T + sd[name + ".bias"]

    first = conv(xp, sd, "conv_first")
    tok = ln(first[0].permute(1, 2, 0).reshape(H * W, embed), "patch_embed.norm")  # (HW, C), row-major
    for li, depth in enumerate(depths):
        layer_in = tok
        for bi in range(depth):
            p = f"layers.{li}.residual_group.blocks.{bi}."
            shift = 0 if bi % 2 == 0 else ws // 2
            n_heads = heads[li]
            hd = embed // n_heads
            t = ln(tok, p + "norm1")
            qkv = lin(t, p + "attn.qkv").view(H * W, 3, n_heads, hd)
            table = sd[p + "attn.relative_position_bias_table"]
            out = torch.zeros(H * W, n_heads, hd)
            # Coordinates after the cyclic shift by -shift; windows and regions are defined there.
            sy = [(i - shift) % H for i in range(H)]
            sx = [(j - shift) % W for j in range(W)]

            def region(v, n):
                return 0 if v < n - ws else (1 if v < n - shift else 2)

            windows: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for i in range(H):
                for j in range(W):
                    windows.setdefault((sy[i] // ws, sx[j] // ws), []).append((i, j))
            for members in windows.values():
                idx = [i * W + j for i, j in members]
                q = qkv[idx, 0] * hd ** -0.5                                   # (n, heads, hd)
                logits = torch.einsum("mhd,nhd->hmn", q, qkv[idx, 1])
                for a, (i1, j1) in enumerate(members):
                    for b, (i2, j2) in enumerate(members):
                        dy, dx = sy[i1] - sy[i2], sx[j1] - sx[j2]
                        logits[:, a, b] += table[(dy + ws - 1) * (2 * ws - 1) + dx + ws - 1]
                        if shift and ((region(sy[i1], H), region(sx[j1], W))
                                      != (region(sy[i2], H), region(sx[j2], W))):
                            logits[:, a, b] += -100.0
                out[idx] = torch.einsum("hmn,nhd->mhd", logits.softmax(-1), qkv[idx, 2])
            tok = tok + lin(out.reshape(H * W, embed), p + "attn.proj")
            tok = tok + lin(F.gelu(lin(ln(tok, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
        img = tok.T.reshape(1, embed, H, W)
        tok = conv(img, sd, f"layers.{li}.conv")[0].reshape(embed, H * W).T + layer_in
    feat = ln(tok, "norm").T.reshape(1, embed, H, W)
    feat = conv(feat, sd, "conv_after_body") + first
    if out_features:
        feat = F.leaky_relu(conv(feat, sd, "conv_before_upsample.0"), 0.01)
    return feat[:, :, :h0, :w0]


@functools.cache
def swin_index(side: int) -> torch.Tensor:
    """relative_position_index from its definition: (dy + side - 1) * (2 side - 1) + dx + side - 1."""
    n = side * side
    out = torch.empty(n, n, dtype=torch.long)
    for p in range(n):
        for q in range(n):
            dy, dx = p // side - q // side, p % side - q % side
            out[p, q] = (dy + side - 1) * (2 * side - 1) + dx + side - 1
    return out


@functools.cache
def swin_mask(img_size: int, ws: int) -> torch.Tensor:
    """attn_mask from the region rule: -100 between window tokens from different regions of the shifted map."""
    shift = ws // 2

    def region(v):
        return 0 if v < img_size - ws else (1 if v < img_size - shift else 2)

    per_row, n = img_size // ws, ws * ws
    out = torch.zeros(per_row * per_row, n, n)
    for wi in range(per_row * per_row):
        wy, wx = divmod(wi, per_row)
        labels = [(region(wy * ws + p // ws), region(wx * ws + p % ws)) for p in range(n)]
        for p in range(n):
            for q in range(n):
                if labels[p] != labels[q]:
                    out[wi, p, q] = -100.0
    return out


def swin_buffers(ws: int):
    """Independent values for the two structural buffers, keyed by the buffer name."""
    return {"relative_position_index": lambda key, shape: swin_index(int(round(shape[0] ** 0.5))).clone(),
            "attn_mask": lambda key, shape: swin_mask(int(round(shape[0] ** 0.5)) * ws, ws).clone()}


def tiny_swin_rows(enc) -> list:
    return [(k, tuple(v.shape), str(v.dtype)) for k, v in enc.state_dict().items()]


@pytest.mark.parametrize("size,out_features,fused", [
    ((13, 17), None, False), ((8, 8), 5, False), ((5, 11), None, False), ((13, 17), 5, True), ((8, 8), None, True)])
def test_swinir_matches_slow_reference_any_size(size, out_features, fused):
    """Tiny config (window 4, img_size 8): padding, shifts, masks and biases against the per-token reference;
    also with the fused (scaled_dot_product_attention) path."""
    cfg = dict(img_size=8, window_size=4, embed_dim=12, depths=(2, 2), num_heads=(2, 3), mlp_ratio=2.0,
               fused_attention=fused)
    enc = build_encoder("swinir", out_features=out_features, **cfg).eval()
    rows = tiny_swin_rows(enc)
    # The stored mask must be what the region rule gives (the 8x8 case uses it directly).
    sd = random_state(rows, seed=5, buffers=swin_buffers(4))
    with torch.no_grad():
        assert torch.equal(enc.state_dict()["layers.0.residual_group.blocks.1.attn_mask"],
                           sd["layers.0.residual_group.blocks.1.attn_mask"])
        assert torch.equal(enc.state_dict()["layers.0.residual_group.blocks.0.attn.relative_position_index"],
                           sd["layers.0.residual_group.blocks.0.attn.relative_position_index"])
    # Random LayerNorm weights near 1 so the reference exercises the affine part.
    for k in sd:
        if "norm" in k and k.endswith("weight"):
            sd[k] = 1 + sd[k]
    load_encoder_state(enc, sd, "swinir")
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ours = enc(x)
    assert ours.shape == (2, out_features or 12, *size)
    for i in range(2):  # batch 2: windows of different images must not mix
        ref = swin_reference(x[i:i + 1], sd, 12, (2, 2), (2, 3), 4, out_features)
        torch.testing.assert_close(ours[i:i + 1], ref, rtol=1e-4, atol=2e-5)


def test_swinir_rejects_mismatched_depths():
    with pytest.raises(UserError):
        build_encoder("swinir", depths=(2, 2), num_heads=(2,))


@pytest.mark.parametrize("table,scheme,out_features", [
    ("gsasr_keys_paper_swinir.tsv", "gsasr", 64),
    ("igconv_keys_SwinIR_IGConvPlus_DIV2K.tsv", "igconv", None),
])
def test_swinir_official_tables_load_strictly(table, scheme, out_features):
    rows = [r for r in official_table(table) if not r[0].startswith(("upsample.", "skip."))]
    enc = build_encoder("swinir", out_features=out_features).eval()
    assert encoder_keys(enc, scheme) == [r[0] for r in rows]
    sd = random_state(rows, seed=7, buffers=swin_buffers(8))
    load_encoder_state(enc, sd, scheme)
    assert enc.state_dict()["layers.5.residual_group.blocks.5.attn_mask"].shape == (36, 64, 64)
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        y = enc(x)
    assert y.shape == (1, out_features or 180, 10, 9) and torch.isfinite(y).all()
    with pytest.raises(UserError, match="missing"):
        load_encoder_state(enc, {k: v for k, v in sd.items() if "attn_mask" not in k}, scheme)
