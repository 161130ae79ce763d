"""Meta-SR, both variants (docs/methods/metasr.md): official key names load strictly, the output equals a per-pixel
evaluation of each variant's formula, the weight net runs per distinct phase, and mistakes are user errors."""
import functools
import math

import numpy as np
import pytest
import torch

import asr_bench as ab
from asr_bench.errors import UserError

from test_liif import official_encoder_keys


def random_sd(keys, seed):
    return dict(_random_sd(tuple(keys), seed))


@functools.lru_cache(maxsize=None)
def _random_sd(keys, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * (0.5 / math.sqrt(max(1, math.prod(s[1:])))) for k, s in keys}


def liif_repo_checkpoint(encoder, seed=0):
    """LIIF-repo `metasr`: encoder.* + imnet.layers.0 (256, 3) and .2 (9*C*3, 256) (docs/methods/metasr.md §1.2)."""
    channels = 256 if encoder == "edsr" else 64
    keys = [(f"encoder.{k}", s) for k, s in official_encoder_keys(encoder)]
    keys += [("imnet.layers.0.weight", (256, 3)), ("imnet.layers.0.bias", (256,)),
             ("imnet.layers.2.weight", (channels * 27, 256)), ("imnet.layers.2.bias", (channels * 27,))]
    spec = {"name": "metasr", "args": {"encoder_spec": {"name": encoder, "args": {"no_upsampling": True}}}}
    return {"model": {**spec, "sd": random_sd(keys, seed)}, "epoch": 1}


def meta_rdn_state_dict(seed=0):
    """Official Meta-RDN: a bare state dict, 304 tensors in this order (docs/methods/metasr.md §2.1)."""
    keys = [("sub_mean.weight", (3, 3, 1, 1)), ("sub_mean.bias", (3,)),
            ("add_mean.weight", (3, 3, 1, 1)), ("add_mean.bias", (3,))]
    keys += official_encoder_keys("rdn")
    keys += [("P2W.meta_block.0.weight", (256, 3)), ("P2W.meta_block.0.bias", (256,)),
             ("P2W.meta_block.2.weight", (1728, 256)), ("P2W.meta_block.2.bias", (1728,))]
    sd = random_sd(keys, seed)
    # MeanShift starts at identity / -+255*mean and is trained; keep it near that, but not equal.
    sd["sub_mean.weight"] = torch.eye(3).view(3, 3, 1, 1) + 0.01 * sd["sub_mean.weight"]
    sd["add_mean.weight"] = torch.eye(3).view(3, 3, 1, 1) + 0.01 * sd["add_mean.weight"]
    sd["sub_mean.bias"] = -255 * torch.tensor([0.4488, 0.4371, 0.4040]) + sd["sub_mean.bias"]
    sd["add_mean.bias"] = 255 * torch.tensor([0.4488, 0.4371, 0.4040]) + sd["add_mean.bias"]
    return sd


@pytest.mark.parametrize("encoder", ["edsr-baseline", "edsr", "rdn"])
def test_liif_repo_key_names_load_strictly_and_round_trip(encoder):
    ckpt = liif_repo_checkpoint(encoder)
    model = ab.build_model("metasr", encoder, checkpoint=ckpt)
    assert model.weights_loaded and model.variant == "liif"
    exported = model.official_state_dict()
    assert list(exported) == list(ckpt["model"]["sd"])
    assert all(torch.equal(exported[k], v) for k, v in ckpt["model"]["sd"].items() if "_mean" not in k)


def test_official_meta_rdn_state_dict_loads_strictly_selects_the_official_variant_and_round_trips():
    sd = meta_rdn_state_dict()
    assert len(sd) == 304 and sum(v.numel() for v in sd.values()) == 22_419_096
    model = ab.build_model("metasr", "rdn", checkpoint=sd)
    assert model.variant == "official" and model.weights_loaded
    exported = model.official_state_dict()
    assert list(exported) == list(sd) and all(torch.equal(exported[k], v) for k, v in sd.items())


def test_checkpoint_mistakes_are_user_errors():
    with pytest.raises(UserError, match="encoder='rdn'"):
        ab.build_model("metasr", "edsr-baseline", checkpoint=meta_rdn_state_dict())
    with pytest.raises(UserError, match="'metasr' model"):
        ab.build_model("liif", "edsr-baseline", checkpoint=liif_repo_checkpoint("edsr-baseline"))
    sd = meta_rdn_state_dict()
    del sd["add_mean.bias"]
    with pytest.raises(UserError, match="missing"):
        ab.build_model("metasr", "rdn", checkpoint=sd)
    with pytest.raises(UserError, match="variant"):
        ab.build_model("metasr", "rdn", variant="paper")


# ------------------------------------------------------------------------- per-pixel definitions


def unfolded(feat, p, q):
    """The 3x3 zero-padded neighbourhood of LR pixel (p, q), index c*9 + ky*3 + kx, float64."""
    padded = torch.nn.functional.pad(feat.double(), (1, 1, 1, 1))
    return padded[:, p:p + 3, q:q + 3].reshape(-1)


def weight_net(sd, prefix, positions):
    """The 3 -> 256 -> 9*C*3 MLP on each position row, float64, as (N, 9*C, 3) filters."""
    x = torch.tensor(positions, dtype=torch.float64) @ sd[f"{prefix}0.weight"].double().T + sd[f"{prefix}0.bias"].double()
    out = x.clamp(min=0) @ sd[f"{prefix}2.weight"].double().T + sd[f"{prefix}2.bias"].double()
    return out.view(len(positions), -1, 3)


def apply_filters(patches, positions, sd, prefix, size):
    """Each pixel's neighbourhood (N, 9C) dotted with its own predicted filter -> (3, H, W)."""
    filters = weight_net(sd, prefix, positions)
    return torch.einsum("nk,nko->on", torch.stack(patches), filters).reshape(3, *size)


def slow_liif_repo_metasr(feat, sd, size):
    """metasr.md §1.3 per output pixel: top-left corners, +1e-6 shift, nearest LR pixel, [rel_y, rel_x, h/H]."""
    _, h, w = feat.shape
    H, W = size
    patches, positions = [], []
    for i in range(H):
        for j in range(W):
            y, x = -1 + 2 * i / H, -1 + 2 * j / W
            yq, xq = min(max(y + 1e-6, -1 + 1e-6), 1 - 1e-6), min(max(x + 1e-6, -1 + 1e-6), 1 - 1e-6)
            p, q = round(((yq + 1) * h - 1) / 2), round(((xq + 1) * w - 1) / 2)
            rel_y, rel_x = (y - (-1 + 2 * p / h)) * h / 2, (x - (-1 + 2 * q / w)) * w / 2
            patches.append(unfolded(feat, p, q))
            positions.append([rel_y, rel_x, h / H])
    return apply_filters(patches, positions, sd, "imnet.layers.", size) * 0.5 + 0.5


def slow_official_meta_rdn(feat, sd, size, scale_v, scale_h):
    """metasr.md §2.3 closed form: p = floor(float32(i) * float32(1/s)), input [1/s, f, g], then add_mean, /255."""
    H, W = size
    patches, positions = [], []
    for i in range(H):
        y = np.float32(i) * np.float32(1.0 / scale_v)
        for j in range(W):
            x = np.float32(j) * np.float32(1.0 / scale_h)
            p, q = int(np.floor(y)), int(np.floor(x))
            patches.append(unfolded(feat, p, q))
            positions.append([float(np.float32(1.0 / scale_v)), float(y - np.float32(p)), float(x - np.float32(q))])
    out = apply_filters(patches, positions, sd, "P2W.meta_block.", size)
    add = torch.nn.functional.conv2d(out[None], sd["add_mean.weight"].double(), sd["add_mean.bias"].double())[0]
    return add / 255


@pytest.mark.parametrize("encoder", ["edsr-baseline", "edsr", "rdn"])
def test_liif_repo_variant_equals_per_pixel_formula(encoder):
    ckpt = liif_repo_checkpoint(encoder, seed=1)
    model = ab.build_model("metasr", encoder, checkpoint=ckpt)
    lr = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feat = model.encoder((lr - 0.5) / 0.5)[0]
    for size in [(12, 15), (11, 23)]:   # x2.5 of 5x6, and asymmetric
        out = model.upscale(lr, size=size, clamp=False)[0]
        expect = slow_liif_repo_metasr(feat, ckpt["model"]["sd"], size)
        torch.testing.assert_close(out.double(), expect, atol=2e-5, rtol=1e-4)


def test_official_meta_rdn_equals_per_pixel_formula():
    sd = meta_rdn_state_dict(seed=3)
    model = ab.build_model("metasr", "rdn", checkpoint=sd)
    lr = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        x = torch.nn.functional.conv2d(lr * 255, sd["sub_mean.weight"], sd["sub_mean.bias"])
        feat = model.encoder(x)[0]
    for scale, size in [(2.5, None), (2.3, None), (None, (13, 17))]:   # 2.3: float32 quirk; 13x17: asymmetric
        out = model.upscale(lr, scale=scale, size=size, clamp=False)[0]
        if scale is not None:
            size, scale_v, scale_h = (int(scale * 6), int(scale * 7)), scale, scale
        else:
            scale_v, scale_h = size[0] / 6, size[1] / 7
        assert out.shape[-2:] == size
        expect = slow_official_meta_rdn(feat, sd, size, scale_v, scale_h)
        torch.testing.assert_close(out.double(), expect, atol=1e-5, rtol=1e-4)


def test_official_phase_arithmetic_keeps_the_float32_quirk():
    """float32(69) * float32(1/2.3) < 30: the official LR row is 29 with offset ~1, not 30
    (docs/methods/metasr.md §2.3)."""
    from asr_bench.methods.metasr.net import official_axis

    rows = official_axis(70, 2.3, torch.device("cpu"))
    assert int(rows.source[69]) == 29 and float(rows.phase[69]) > 0.999


def test_official_variant_uses_the_nominal_scale_the_caller_passes():
    """The engine passes the case's scale with the size: 13x16 from 6x7 at scale=2.3 must use 1/2.3, not 13/6."""
    from asr_bench.methods.metasr.net import official_axis

    model = ab.build_model("metasr", "rdn", checkpoint=meta_rdn_state_dict())
    lr = torch.rand(1, 3, 6, 7)
    by_scale = model.upscale(lr, scale=2.3)
    torch.testing.assert_close(model.upscale(lr, size=(13, 16), scale=2.3), by_scale, atol=0, rtol=0)
    # Size alone means the ratio 13/6: other phases (a different row map), so a different image.
    assert not torch.equal(official_axis(13, 2.3, lr.device).source, official_axis(13, 13 / 6, lr.device).source)
    assert not torch.equal(model.upscale(lr, size=(13, 16)), by_scale)


def test_weight_net_runs_once_per_distinct_phase_not_per_pixel():
    model = ab.build_model("metasr", "rdn", checkpoint=meta_rdn_state_dict())
    seen = []
    model.imnet.register_forward_hook(lambda m, inp, out: seen.append(inp[0].reshape(-1, 3).shape[0]))
    model.upscale(torch.rand(1, 3, 10, 12), scale=4)     # 1/4 is exact in float32: 4 x 4 phases
    assert seen == [16]


@pytest.mark.parametrize("encoder", ["edsr-baseline", "rdn"])
def test_random_weights_any_size_finite(encoder):
    model = ab.build_model("metasr", encoder)
    assert not model.weights_loaded
    out = model.upscale(torch.rand(2, 3, 7, 5), size=(20, 9))
    assert out.shape == (2, 3, 20, 9) and torch.isfinite(out).all()
