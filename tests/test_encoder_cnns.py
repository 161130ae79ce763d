"""RCAN, PLKSR and SMFANet encoders: each equals a slow functional re-derivation of its definition (explicit
channel-attention loops, partial large kernels, explicit adaptive max-pooling / variance / nearest upsampling);
the official IGConv key tables load strictly through build_model and round-trip; RCAN's learnable mean-shift
convs sit where the official model applies them; the capability flags are what these tests show.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_encoder_hat import official_rows, table_state

import asr_bench as ab
from asr_bench.encoders import build_encoder, encoder_capabilities, encoder_keys, load_encoder_state
from asr_bench.errors import UserError
from asr_bench.registry import get_method


def own_random_state(enc, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in enc.state_dict().items():
        fan_in = max(1, int(np.prod(v.shape[1:])))
        out[k] = torch.randn(v.shape, generator=g) * (0.8 / fan_in ** 0.5) + (1.0 if k.endswith("alpha") else 0)
    return out


def conv(x, sd, name, groups=1):
    w = sd[name + ".weight"]
    return F.conv2d(x, w, sd[name + ".bias"], padding=(w.shape[-2] // 2, w.shape[-1] // 2), groups=groups)


def gelu(t):
    return 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))


def sigmoid(t):
    return 1 / (1 + torch.exp(-t))


# ------------------------------------------------------------------ RCAN
def channel_gate(y: torch.Tensor, w1, b1, w2, b2) -> torch.Tensor:
    """sigmoid(W2 relu(W1 m + b1) + b2) with m the per-channel mean, by explicit loops over channels."""
    c = y.shape[1]
    means = [float(y[0, ch].sum()) / y[0, ch].numel() for ch in range(c)]
    hidden = [max(0.0, sum(float(w1[j, ch]) * means[ch] for ch in range(c)) + float(b1[j])) for j in range(w1.shape[0])]
    return torch.tensor([1 / (1 + math.exp(-(sum(float(w2[ch, j]) * hidden[j] for j in range(len(hidden)))
                                             + float(b2[ch])))) for ch in range(c)], dtype=y.dtype)


def rcan_reference(x, sd, groups: int, blocks: int) -> torch.Tensor:
    h = conv(x, sd, "head.0")
    t = h
    for g in range(groups):
        gin = t
        for b in range(blocks):
            p = f"body.{g}.body.{b}.body."
            y = conv(torch.relu(conv(t, sd, p + "0")), sd, p + "2")
            gate = channel_gate(y, sd[p + "3.conv_du.0.weight"][:, :, 0, 0], sd[p + "3.conv_du.0.bias"],
                                sd[p + "3.conv_du.2.weight"][:, :, 0, 0], sd[p + "3.conv_du.2.bias"])
            t = t + y * gate.view(1, -1, 1, 1)
        t = conv(t, sd, f"body.{g}.body.{blocks}") + gin
    return conv(t, sd, f"body.{groups}") + h


def test_rcan_equals_slow_reference():
    enc = build_encoder("rcan", n_feats=8, n_resgroups=2, n_resblocks=2, reduction=4).eval()
    sd = own_random_state(enc, 1)
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, 7, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = enc(x)
    sd64 = {k: v.double() for k, v in sd.items()}
    for i in range(2):
        torch.testing.assert_close(ours[i:i + 1].double(), rcan_reference(x[i:i + 1].double(), sd64, 2, 2),
                                   rtol=1e-5, atol=1e-5)


def test_rcan_mean_shift_convs_wrap_encoder_and_head():
    """IGConv+ RCAN: out = add_mean(tail(enc(sub_mean(x)), s)) + skip(x, enc(sub_mean(x)), s) (the raw image)."""
    p = get_method("igconv-plus").presets["igconv-plus.rcan"]
    tiny = dataclasses.replace(p, encoder_kwargs={"n_feats": 8, "n_resgroups": 1, "n_resblocks": 1, "reduction": 4})
    torch.manual_seed(0)
    model = get_method("igconv-plus").builder(encoder="rcan", preset=tiny, weights=None).eval()
    assert model.upsample.max_s == 8 and model.skip.convs.max_s == 8
    with torch.no_grad():  # defaults are the MeanShift constants; then make them arbitrary
        assert torch.equal(model.sub_mean.bias, -torch.tensor([0.4488, 0.4371, 0.4040]))
        for conv_ in (model.sub_mean, model.add_mean):
            conv_.weight.copy_(torch.randn(3, 3, 1, 1))
            conv_.bias.copy_(torch.randn(3))
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        got = model.upscale(x, scale=3, clamp=False)
        shifted = F.conv2d(x, model.sub_mean.weight, model.sub_mean.bias)
        feat = model.encoder(shifted)
        head = model.upsample(feat, 3)
        want = F.conv2d(head, model.add_mean.weight, model.add_mean.bias) + model.skip(x, feat, 3)
    torch.testing.assert_close(got, want)


# ------------------------------------------------------------------ PLKSR
def plksr_reference(x, sd, n_blocks: int, pdim: int) -> torch.Tensor:
    t = conv(x, sd, "feats.0")
    for b in range(1, n_blocks + 1):
        p = f"feats.{b}."
        y = conv(gelu(conv(t, sd, p + "channe_mixer.0")), sd, p + "channe_mixer.2")
        y = torch.cat([conv(y[:, :pdim], sd, p + "lk.conv"), y[:, pdim:]], dim=1)
        y = y * sigmoid(conv(y, sd, p + "attn.f.0"))
        t = conv(y, sd, p + "refine") + t
    return t


TINY_PLKSR = dict(dim=8, n_blocks=2, kernel_size=5, split_ratio=0.25)


def test_plksr_equals_slow_reference_and_its_receptive_radius():
    enc = build_encoder("plksr", **TINY_PLKSR).eval()
    sd = own_random_state(enc, 3)
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, 9, 40, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = enc(x)
        sd64 = {k: v.double() for k, v in sd.items()}
        torch.testing.assert_close(ours.double(), plksr_reference(x.double(), sd64, 2, 2), rtol=1e-5, atol=1e-5)
        # radius = 1 (first conv) + per block: 2 (two 3x3 mixer convs) + 2 (5x5 partial kernel) + 1 (EA 3x3) = 11
        r = enc.receptive_radius
        assert r == 11
        poked = x.clone()
        poked[:, :, :, 0] += 5.0
        diff = (enc(poked) - ours).abs().amax(dim=(0, 1, 2))
        assert diff[r] > 0 and (diff[r + 1:] == 0).all()
    assert build_encoder("plksr").receptive_radius == encoder_capabilities("plksr").receptive_radius == 309
    with pytest.raises(UserError, match="lk_type"):
        build_encoder("plksr", lk_type="SparsePLK")


# ------------------------------------------------------------------ SMFANet
def adaptive_max(t: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    """Adaptive max pooling by its definition: bin i covers [floor(i H / oh), ceil((i + 1) H / oh))."""
    H, W = t.shape[-2:]
    out = torch.empty(*t.shape[:2], oh, ow, dtype=t.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * H) // oh, -((-(i + 1) * H) // oh)
            c0, c1 = (j * W) // ow, -((-(j + 1) * W) // ow)
            out[:, :, i, j] = t[:, :, r0:r1, c0:c1].amax(dim=(-2, -1))
    return out


def smfanet_reference(x, sd, n_blocks: int) -> torch.Tensor:
    def l2norm(t):
        return t / torch.sqrt((t * t).sum(1, keepdim=True)).clamp_min(1e-12)

    first = conv(x, sd, "to_feat")
    t = first
    H, W = x.shape[-2:]
    for b in range(n_blocks):
        p = f"feats.{b}.smfa."
        dim = t.shape[1]
        f = l2norm(t)
        yx = conv(f, sd, p + "linear_0")
        y, z = yx[:, :dim], yx[:, dim:]
        pooled = conv(adaptive_max(z, H // 8, W // 8), sd, p + "dw_conv", groups=dim)
        n = H * W
        mean = z.sum((-2, -1), keepdim=True) / n
        var = ((z - mean) ** 2).sum((-2, -1), keepdim=True) / (n - 1)  # unbiased, as torch.var
        gate = gelu(conv(pooled * sd[p + "alpha"] + var * sd[p + "belt"], sd, p + "linear_1"))
        rows = [i * gate.shape[-2] // H for i in range(H)]            # nearest: floor(dst * in / out)
        cols = [j * gate.shape[-1] // W for j in range(W)]
        gate = gate[:, :, rows][:, :, :, cols]
        local = conv(gelu(conv(conv(y, sd, p + "lde.conv_0.0", groups=dim), sd, p + "lde.conv_0.1")), sd,
                     p + "lde.conv_1")
        t = conv(z * gate + local, sd, p + "linear_2") + t
        p = f"feats.{b}.pcfn."
        u = gelu(conv(l2norm(t), sd, p + "conv_0"))
        q = sd[p + "conv_1.weight"].shape[0]
        u = torch.cat([gelu(conv(u[:, :q], sd, p + "conv_1")), u[:, q:]], dim=1)
        t = conv(u, sd, p + "conv_2") + t
    return t + first


@pytest.mark.parametrize("size", [(11, 19), (16, 8)])
def test_smfanet_equals_slow_reference(size):
    enc = build_encoder("smfanet", dim=8, n_blocks=2).eval()
    sd = own_random_state(enc, 5)
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ours = enc(x)
    sd64 = {k: v.double() for k, v in sd.items()}
    for i in range(2):
        torch.testing.assert_close(ours[i:i + 1].double(), smfanet_reference(x[i:i + 1].double(), sd64, 2),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="at least 8"):
        enc(torch.rand(1, 3, 7, 12))


# ------------------------------------------------------------------ official tables through build_model
TABLES = [  # RCAN (200 blocks) and PLKSR (28 big kernels) build in seconds each: slow
    pytest.param("igconv-plus", "rcan", "igconv_keys_RCAN_IGConvPlus_DIV2K_S2348.tsv", "params",
                 marks=pytest.mark.slow),
    pytest.param("igconv-plus", "plksr", "igconv_keys_PLKSR_IGConvPlus_DF2K.tsv", "params_ema",
                 marks=pytest.mark.slow),
    ("igconv-plus", "smfanet", "igconv_keys_SMFANet_IGConvPlus_DF2K.tsv", "params_ema"),
    ("igconv", "smfanet", "igconv_keys_SMFANet_IGConv_DF2K.tsv", "params_ema"),
]


@pytest.mark.parametrize("method,encoder,table,param_key", TABLES,
                         ids=lambda v: v[12:-4] if str(v).endswith(".tsv") else None)
def test_official_table_loads_strictly_and_round_trips(method, encoder, table, param_key):
    rows = official_rows(table)
    sd = table_state(rows)
    model = ab.build_model(method, encoder, preset=f"{method}.{encoder}", checkpoint={param_key: sd})
    assert model.weights_loaded
    back = model.official_state_dict()
    assert list(back) == [r[0] for r in rows]
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    with pytest.raises(UserError, match="missing"):
        ab.build_model(method, encoder, checkpoint={param_key: dict(list(sd.items())[:-1])})
    enc_rows = [r[0] for r in rows if not r[0].startswith((model.head_key + ".", "skip.", "sub_mean.", "add_mean."))]
    assert encoder_keys(model.encoder, "igconv") == enc_rows


# ------------------------------------------------------------------ capabilities
@pytest.mark.parametrize("name,kwargs", [("rcan", dict(n_feats=8, n_resgroups=1, n_resblocks=2, reduction=4)),
                                         ("plksr", TINY_PLKSR), ("smfanet", dict(dim=8, n_blocks=2))])
def test_capability_flags_are_what_the_tests_show(name, kwargs):
    caps = encoder_capabilities(name)
    enc = build_encoder(name, **kwargs).eval()
    load_encoder_state(enc, own_random_state(enc, 7), "igconv")
    x = torch.rand(1, 3, 13, 10)  # no size multiple: any size is used as it is
    with torch.no_grad():
        ref = enc(x)
        assert caps.size_multiple == 1 and ref.shape[-2:] == (13, 10)
        for dtype_name in caps.dtypes:
            dtype = getattr(torch, dtype_name)
            got = enc.to(dtype)(x.to(dtype)).float()
            torch.testing.assert_close(got, ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))
        enc.float()
        if caps.receptive_radius is None:  # global: a far pixel changes every output
            poked = x.clone()
            poked[:, :, 0, 0] += 5.0
            assert (enc(poked) - ref)[..., -1, -1].abs().max() > 0
