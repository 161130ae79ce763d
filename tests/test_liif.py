"""LIIF: official key names load strictly, the output equals a per-pixel evaluation of the formula in
docs/methods/liif.md §3, chunking is output-invariant, and checkpoint mistakes are one-line user errors."""
import functools
import math

import pytest
import torch

import asr_bench as ab
from asr_bench.errors import UnknownName, UserError

MLP_HIDDEN = [256, 256, 256, 256]


def official_encoder_keys(encoder):
    """(key, shape) of the encoder's state dict in the LIIF repo (docs/methods/liif.md §2), in file order."""
    if encoder in ("edsr-baseline", "edsr"):
        n, blocks = (64, 16) if encoder == "edsr-baseline" else (256, 32)
        keys = [("sub_mean.weight", (3, 3, 1, 1)), ("sub_mean.bias", (3,)),
                ("add_mean.weight", (3, 3, 1, 1)), ("add_mean.bias", (3,)),
                ("head.0.weight", (n, 3, 3, 3)), ("head.0.bias", (n,))]
        for i in range(blocks):
            for k in (0, 2):
                keys += [(f"body.{i}.body.{k}.weight", (n, n, 3, 3)), (f"body.{i}.body.{k}.bias", (n,))]
        return keys + [(f"body.{blocks}.weight", (n, n, 3, 3)), (f"body.{blocks}.bias", (n,))]
    keys = [("SFENet1.weight", (64, 3, 3, 3)), ("SFENet1.bias", (64,)),
            ("SFENet2.weight", (64, 64, 3, 3)), ("SFENet2.bias", (64,))]
    for d in range(16):
        for c in range(8):
            keys += [(f"RDBs.{d}.convs.{c}.conv.0.weight", (64, 64 + 64 * c, 3, 3)),
                     (f"RDBs.{d}.convs.{c}.conv.0.bias", (64,))]
        keys += [(f"RDBs.{d}.LFF.weight", (64, 576, 1, 1)), (f"RDBs.{d}.LFF.bias", (64,))]
    return keys + [("GFF.0.weight", (64, 1024, 1, 1)), ("GFF.0.bias", (64,)),
                   ("GFF.1.weight", (64, 64, 3, 3)), ("GFF.1.bias", (64,))]


def official_checkpoint(encoder, seed=0):
    """A LIIF-repo checkpoint with random values under exactly the official names and shapes (fresh dicts)."""
    ckpt = _official_checkpoint(encoder, seed)
    return {**ckpt, "model": {**ckpt["model"], "sd": dict(ckpt["model"]["sd"])}}


@functools.lru_cache(maxsize=None)
def _official_checkpoint(encoder, seed):
    g = torch.Generator().manual_seed(seed)
    channels = 256 if encoder == "edsr" else 64
    keys = [(f"encoder.{k}", s) for k, s in official_encoder_keys(encoder)]
    dims = [channels * 9 + 4, *MLP_HIDDEN, 3]
    for i in range(len(dims) - 1):
        keys += [(f"imnet.layers.{2 * i}.weight", (dims[i + 1], dims[i])), (f"imnet.layers.{2 * i}.bias", (dims[i + 1],))]
    sd = {k: torch.randn(s, generator=g) * (0.5 / math.sqrt(max(1, math.prod(s[1:])))) for k, s in keys}
    args = {"encoder_spec": {"name": encoder, "args": {"no_upsampling": True}},
            "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": MLP_HIDDEN}}}
    return {"model": {"name": "liif", "args": args, "sd": sd}, "epoch": 1}


@pytest.mark.parametrize("encoder", ["edsr-baseline", "edsr", "rdn"])
def test_official_key_names_and_shapes_load_strictly_and_round_trip(encoder):
    ckpt = official_checkpoint(encoder)
    model = ab.build_model("liif", encoder, checkpoint=ckpt)
    assert model.weights_loaded
    exported = model.official_state_dict()
    assert list(exported) == list(ckpt["model"]["sd"])
    for key, value in ckpt["model"]["sd"].items():
        if "_mean" not in key:  # LIIF's unused MeanShift convs are checked for shape only
            assert torch.equal(exported[key], value), key


def test_missing_or_extra_keys_are_user_errors():
    ckpt = official_checkpoint("edsr-baseline")
    sd = ckpt["model"]["sd"]
    del sd["encoder.sub_mean.bias"]
    with pytest.raises(UserError, match="missing"):
        ab.build_model("liif", "edsr-baseline", checkpoint=ckpt)
    ckpt = official_checkpoint("edsr-baseline")
    ckpt["model"]["sd"]["imnet.layers.10.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match="unexpected"):
        ab.build_model("liif", "edsr-baseline", checkpoint=ckpt)


def test_checkpoint_of_another_encoder_says_which_encoder_to_use():
    with pytest.raises(UserError, match="encoder='rdn'"):
        ab.build_model("liif", "edsr-baseline", checkpoint=official_checkpoint("rdn"))


def test_swinir_is_not_a_liif_encoder_and_unknown_options_are_rejected():
    with pytest.raises(UnknownName):
        ab.build_model("liif", "swinir")
    with pytest.raises(UserError, match="query_chunk"):
        ab.build_model("liif", "edsr-baseline", chunk=5)


# ------------------------------------------------------------------------- per-pixel definition


def round_half_even(v):
    return round(v)  # Python's round is half-to-even, like grid_sample's nearbyint


def mlp(sd, x):
    """The official MLP from the checkpoint's tensors, float64, applied to each row of x."""
    n_layers = len([k for k in sd if k.startswith("imnet.layers.") and k.endswith(".weight")])
    for i in range(n_layers):
        x = x @ sd[f"imnet.layers.{2 * i}.weight"].double().T + sd[f"imnet.layers.{2 * i}.bias"].double()
        if i < n_layers - 1:
            x = x.clamp(min=0)
    return x


def slow_liif(feat, sd, size, local_ensemble=True, feat_unfold=True, cell_decode=True):
    """docs/methods/liif.md §3.4, one output pixel at a time, in float64 (feat: (C, h, w) encoder output).

    The loop collects each pixel's MLP inputs (one per ensemble member) and blend weights; the MLP then runs
    on all rows at once. Without the ensemble the single member reads the nearest pixel with no shift.
    """
    c_, h, w = feat.shape
    H, W = size
    padded = torch.nn.functional.pad(feat.double(), (1, 1, 1, 1))
    offsets, eps = ([(-1, -1), (-1, 1), (1, -1), (1, 1)], 1e-6) if local_ensemble else ([(0, 0)], 0.0)
    inputs, weights = [], []
    for i in range(H):
        for j in range(W):
            y, x = -1 + (2 * i + 1) / H, -1 + (2 * j + 1) / W
            areas = []
            for vy, vx in offsets:
                yq = min(max(y + vy / h + eps, -1 + 1e-6), 1 - 1e-6)
                xq = min(max(x + vx / w + eps, -1 + 1e-6), 1 - 1e-6)
                p, q = round_half_even(((yq + 1) * h - 1) / 2), round_half_even(((xq + 1) * w - 1) / 2)
                rel_y, rel_x = (y - (-1 + (2 * p + 1) / h)) * h, (x - (-1 + (2 * q + 1) / w)) * w
                if feat_unfold:
                    feature = padded[:, p:p + 3, q:q + 3].reshape(c_ * 9)       # index c*9 + ky*3 + kx
                else:
                    feature = padded[:, p + 1, q + 1]
                extra = [rel_y, rel_x] + ([2 / H * h, 2 / W * w] if cell_decode else [])
                inputs.append(torch.cat([feature, torch.tensor(extra, dtype=torch.float64)]))
                areas.append(abs(rel_y * rel_x) + 1e-9)
            n = len(offsets)
            weights += [areas[n - 1 - k] / sum(areas) for k in range(n)]   # each prediction: the opposite area
    preds = mlp(sd, torch.stack(inputs)) * torch.tensor(weights, dtype=torch.float64)[:, None]
    return preds.view(H, W, len(offsets), 3).sum(dim=2).permute(2, 0, 1) * 0.5 + 0.5


@pytest.mark.parametrize("encoder", ["edsr-baseline", "edsr", "rdn"])
def test_output_equals_per_pixel_formula(encoder):
    ckpt = official_checkpoint(encoder, seed=1)
    model = ab.build_model("liif", encoder, checkpoint=ckpt)
    lr = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feat = model.encoder((lr - 0.5) / 0.5)[0]
    for size in [(12, 15), (11, 23)]:   # x2.5 of 5x6, and asymmetric 2.2 x 3.83
        out = model.upscale(lr, size=size, clamp=False)[0]
        expect = slow_liif(feat, ckpt["model"]["sd"], size)
        torch.testing.assert_close(out.double(), expect, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("local_ensemble", [True, False])
@pytest.mark.parametrize("feat_unfold", [True, False])
@pytest.mark.parametrize("cell_decode", [True, False])
def test_every_switch_combination_equals_per_pixel_formula(local_ensemble, feat_unfold, cell_decode):
    """The per-LR-pixel first layer holds with each official switch off (weights: the model's own, random)."""
    check_against_per_pixel_formula((32, 16), local_ensemble=local_ensemble, feat_unfold=feat_unfold,
                                    cell_decode=cell_decode)


def test_a_single_linear_layer_mlp_equals_per_pixel_formula():
    """hidden_list=(): the first layer is the output layer, so the split first layer alone gives the RGB."""
    check_against_per_pixel_formula(())


def check_against_per_pixel_formula(hidden_list, **switches):
    torch.manual_seed(4)
    model = ab.build_model("liif", "edsr-baseline", hidden_list=hidden_list, **switches)
    with torch.no_grad():
        for p in model.imnet.parameters():   # default init leaves the MLP nearly flat; spread it so terms matter
            p.normal_(0, 0.3)
    sd = model.official_state_dict()
    lr = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        feat = model.encoder((lr - 0.5) / 0.5)[0]
    out = model.upscale(lr, size=(9, 13), clamp=False)[0]
    expect = slow_liif(feat, sd, (9, 13), **switches)
    scale = expect.abs().max().item()
    torch.testing.assert_close(out.double(), expect, atol=2e-5 * max(1.0, scale), rtol=1e-4)


def test_query_chunks_do_not_change_the_output():
    model = ab.build_model("liif", "edsr-baseline", checkpoint=official_checkpoint("edsr-baseline"))
    lr = torch.rand(2, 3, 6, 7)
    whole = model.upscale(lr, size=(17, 25), clamp=False)
    model.query_chunk = 37
    torch.testing.assert_close(model.upscale(lr, size=(17, 25), clamp=False), whole, atol=1e-6, rtol=0)
    model.query_chunk = None
    torch.testing.assert_close(model.upscale(lr, size=(17, 25), clamp=False), whole, atol=1e-6, rtol=0)


def test_real_checkpoint_builds_with_nothing_else_and_round_trips(liif_checkpoint):
    model = ab.build_model("liif", "edsr-baseline", checkpoint=liif_checkpoint)
    assert model.weights_loaded
    sd = torch.load(liif_checkpoint, map_location="cpu", weights_only=False)["model"]["sd"]
    exported = model.official_state_dict()
    assert list(exported) == list(sd) and len(sd) == 82
    assert all(torch.equal(exported[k], v) for k, v in sd.items())
    out = model.upscale(torch.rand(1, 3, 8, 9), scale=3.5)
    assert out.shape == (1, 3, 28, 31) and 0 <= out.min() and out.max() <= 1
