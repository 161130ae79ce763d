"""IGConv / IGConv+: official key tables load strictly, outputs equal a slow float64 re-derivation of the method
from docs/methods/igconv.md, the kernel cache, scale checks and the published numbers."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import asr_bench as ab
from asr_bench.errors import UnsupportedScale, UserError

KEY_TABLE_DIR = Path(__file__).resolve().parent / "data" / "keys"
IGCONV_DOC = Path(__file__).resolve().parent.parent / "docs" / "methods" / "igconv.md"
PUBLISHED = Path(__file__).resolve().parent.parent / "asr_bench" / "published" / "igconv.csv"
DIV2K_MEAN = np.array([0.4488, 0.4371, 0.4040])


def key_table_file(name: str) -> Path:
    """An official key table (tests/data/keys/*.tsv: key, shape, dtype of the released state dict)."""
    return KEY_TABLE_DIR / name


def tsv_state_dict(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the official keys, shapes and dtypes of a key table, filled at random."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in re.findall(r"\d+", shape)]
        if dtype.strip() == "int64":
            sd[key] = torch.randint(0, 100, dims, generator=gen)
        else:
            sd[key] = torch.randn(dims, generator=gen)
    return sd


# -- official key tables -> strict load through build_model --------------------------------------------
SLOW = pytest.mark.slow  # same encoder family as a fast case; the big state dicts cost seconds each
KEY_TABLES = [
    pytest.param("igconv", "edsr", "igconv_keys_EDSR_IGConv_DIV2K.tsv", "params_ema", marks=SLOW),
    ("igconv-plus", "edsr", "igconv_keys_EDSR_IGConvPlus_DIV2K.tsv", "params_ema"),
    ("igconv", "edsr-baseline", "igconv_keys_EDSRbaseline_IGConv_classdefaults_NOTRELEASED.tsv", "params"),
    ("igconv-plus", "edsr-baseline", "igconv_keys_EDSRbaseline_IGConvPlus_classdefaults_NOTRELEASED.tsv", "params"),
    pytest.param("igconv", "rdn", "igconv_keys_RDN_IGConv_classdefaults_NOTRELEASED.tsv", "params", marks=SLOW),
    ("igconv-plus", "rdn", "igconv_keys_RDN_IGConvPlus_DIV2K.tsv", "params"),
    pytest.param("igconv", "swinir", "igconv_keys_SwinIR_IGConv_derived_NOTRELEASED.tsv", "params", marks=SLOW),
    ("igconv-plus", "swinir", "igconv_keys_SwinIR_IGConvPlus_DIV2K.tsv", "params"),
]


@pytest.mark.parametrize("method,encoder,table,param_key", KEY_TABLES,
                         ids=lambda v: v[12:-4] if str(v).endswith(".tsv") else None)
def test_official_key_table_loads_strictly_and_round_trips(method, encoder, table, param_key):
    sd = tsv_state_dict(key_table_file(table))
    model = ab.build_model(method, encoder, checkpoint={param_key: sd})
    assert model.weights_loaded
    back = model.official_state_dict()
    assert list(back) == list(sd)  # same keys, in the official file order
    for key, value in sd.items():  # every official tensor landed where the official code would read it
        assert torch.equal(back[key], value), key


def test_strict_load_rejects_missing_extra_and_wrong_family_keys():
    sd = tsv_state_dict(key_table_file("igconv_keys_EDSRbaseline_IGConvPlus_classdefaults_NOTRELEASED.tsv"))
    with pytest.raises(UserError, match="missing"):
        ab.build_model("igconv-plus", "edsr-baseline",
                       checkpoint={"params": {k: v for k, v in sd.items() if k != "upsample.freq"}})
    with pytest.raises(UserError, match="unexpected"):
        ab.build_model("igconv-plus", "edsr-baseline", checkpoint={"params": {**sd, "extra.weight": torch.zeros(1)}})
    with pytest.raises(UserError, match="igconv-plus"):  # an IGConv+ checkpoint given to plain IGConv
        ab.build_model("igconv", "edsr-baseline", checkpoint={"params": sd})
    with pytest.raises(UserError, match="wrong shape"):  # EDSR-baseline weights into the full-EDSR preset
        ab.build_model("igconv-plus", "edsr", checkpoint={"params": sd})


def test_checkpoint_key_preference_follows_the_official_test_configs():
    """EDSR/PLKSR/SMFANet/HAT/ATD test YAMLs load params_ema, the others params (docs/methods/igconv.md §0.8)."""
    table = key_table_file("igconv_keys_EDSRbaseline_IGConv_classdefaults_NOTRELEASED.tsv")
    ema, raw = tsv_state_dict(table, seed=1), tsv_state_dict(table, seed=2)
    both = {"params": raw, "params_ema": ema}
    model = ab.build_model("igconv", "edsr-baseline", checkpoint=both)
    assert torch.equal(model.official_state_dict()["upsample.freq"], ema["upsample.freq"])
    model = ab.build_model("igconv", "edsr-baseline", checkpoint=both, param_keys=("params", "params_ema"))
    assert torch.equal(model.official_state_dict()["upsample.freq"], raw["upsample.freq"])
    only_ema = ab.build_model("igconv", "edsr-baseline", checkpoint={"params_ema": ema})  # BasicSR falls back
    assert torch.equal(only_ema.official_state_dict()["conv_first.weight"], ema["conv_first.weight"])
    presets = {**ab.registry.get_method("igconv").presets, **ab.registry.get_method("igconv-plus").presets}
    for name, preset in presets.items():
        first = preset.checkpoint_keys[0]
        ema_families = ("edsr", "edsr-baseline", "plksr", "smfanet", "hat", "atd")
        assert first == ("params_ema" if preset.encoder in ema_families else "params"), name


# -- an independent float64 re-derivation of the method (docs/methods/igconv.md §1.2, §1.3, §2.1) -----------
def hyper_kernel(p: dict[str, np.ndarray], scale: int, channels: int, grouped: bool, max_s: int = 4) -> np.ndarray:
    """W[o, c, kh, kw] for one scale, from the dossier's formulas, row by row in float64."""
    freq, amp = p["freq"][..., 0, 0], p["amplitude"][..., 0, 0]  # [rows, D]
    d = freq.shape[1]
    centres = [-1 + 1 / scale + 2 * t / scale for t in range(scale)]
    r = 2 / min(scale, max_s)
    phase = p["phase.weight"][:, 0, 0, 0] * r + p["phase.bias"]  # [D/2]
    layers = sorted({int(k.split(".")[1]) for k in p if k.startswith("query_kernel.")})
    rows = freq.shape[0]
    n_out = p[f"query_kernel.{layers[-1]}.weight"].shape[0]
    values = np.zeros((rows, n_out, scale, scale))
    for i, y in enumerate(centres):
        for j, x in enumerate(centres):
            f = freq[:, : d // 2] * x + freq[:, d // 2:] * y + phase
            z = np.concatenate([np.cos(np.pi * f), np.sin(np.pi * f)], axis=1)
            if grouped:  # group 0 takes the even channels, group 1 the odd ones
                z = np.concatenate([z[:, 0::2], z[:, 1::2]], axis=1)
            h = z * amp
            for n, layer in enumerate(layers):
                w = p[f"query_kernel.{layer}.weight"][..., 0, 0]
                b = p.get(f"query_kernel.{layer}.bias", np.zeros(w.shape[0]))
                if grouped:
                    half_in, half_out = h.shape[1] // 2, w.shape[0] // 2
                    h = np.concatenate([h[:, :half_in] @ w[:half_out].T, h[:, half_in:] @ w[half_out:].T], axis=1) + b
                else:
                    h = h @ w.T + b
                if n < len(layers) - 1:
                    h = np.maximum(h, 0)
            values[:, :, i, j] = h
    k = int(round(math.sqrt(rows / channels)))
    weight = np.zeros((n_out * scale * scale, channels, k, k))
    for row in range(rows):
        c, kh, kw = row // (k * k), (row // k) % k, row % k
        for q in range(n_out):
            for i in range(scale):
                for j in range(scale):
                    weight[q * scale * scale + i * scale + j, c, kh, kw] = values[row, q, i, j]
    return weight


def orientations(w: np.ndarray) -> list[np.ndarray]:
    """The 8 kernels: identity, flip x, flip y, flip both, then R (R[a,b] = W[k-1-b, a]) and its 3 flips."""
    rot = np.rot90(w, k=-1, axes=(2, 3))
    k = w.shape[-1]
    assert all(rot[0, 0, a, b] == w[0, 0, k - 1 - b, a] for a in range(k) for b in range(k))
    return [w, w[..., ::-1], w[..., ::-1, :], w[..., ::-1, ::-1], rot, rot[..., ::-1], rot[..., ::-1, :], rot[..., ::-1, ::-1]]


def conv_at(feat: np.ndarray, weight: np.ndarray, y: int, x: int) -> np.ndarray:
    """All output channels of a zero-padded 'same' conv at one LR pixel, by the definition."""
    c, h, w = feat.shape
    k = weight.shape[-1]
    r = k // 2
    patch = np.zeros((c, k, k))
    for a in range(k):
        for b in range(k):
            yy, xx = y + a - r, x + b - r
            if 0 <= yy < h and 0 <= xx < w:
                patch[:, a, b] = feat[:, yy, xx]
    return np.tensordot(weight, patch, axes=([1, 2, 3], [0, 1, 2]))


def bilinear_border(img: np.ndarray, u: float, v: float) -> float:
    """img at continuous pixel index (u = column, v = row), bilinear, edge-clamped (grid_sample border)."""
    h, w = img.shape
    u, v = min(max(u, 0.0), w - 1.0), min(max(v, 0.0), h - 1.0)
    x0, y0 = int(math.floor(u)), int(math.floor(v))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = u - x0, v - y0
    return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
            + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))


def reference_output(model, lr: torch.Tensor, scale: int, plus: bool) -> np.ndarray:
    """out[Y=h s+i, X=w s+j] = sum of the generated sub-pixel conv at (h, w), channel rgb s^2 + i s + j,
    de-normalised, plus (IGConv+) the raw image sampled at (w + 0.5 + off_x - 0.5, h + 0.5 + off_y - 0.5)."""
    sd = {k: v.double().numpy() for k, v in model.official_state_dict().items()}
    with torch.no_grad():  # the shared encoder's features, on the mean-subtracted input (img_range 1)
        feat = model.encoder(lr - torch.tensor(DIV2K_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
    feat = feat[0].double().numpy()
    c, h, w = feat.shape
    image = lr[0].double().numpy()
    s = scale
    head = hyper_kernel({k[9:]: v for k, v in sd.items() if k.startswith("upsample.")}, s, c, grouped=False)
    kernels = orientations(head) if plus else [head]
    out = np.zeros((3, h * s, w * s))
    if plus:
        skip_w = hyper_kernel({k[11:]: v for k, v in sd.items() if k.startswith("skip.convs.")}, s, c, grouped=True)
        skip_w = sum(orientations(skip_w)) / 8
    for y in range(h):
        for x in range(w):
            sub = np.mean([conv_at(feat, kk, y, x) for kk in kernels], axis=0)  # [3 s^2]
            if plus:
                raw = conv_at(feat, skip_w, y, x)  # [12 s^2]: offsets (x then y) then scopes
            for rgb in range(3):
                for i in range(s):
                    for j in range(s):
                        o = rgb * s * s + i * s + j
                        value = sub[o] + DIV2K_MEAN[rgb]
                        if plus:
                            gate = 0.5 / (1 + np.exp(-raw[6 * s * s + o]))
                            gate_y = 0.5 / (1 + np.exp(-raw[6 * s * s + 3 * s * s + o]))
                            off_x = raw[o] * gate + ((1 - s) / 2 + j) / s
                            off_y = raw[3 * s * s + o] * gate_y + ((1 - s) / 2 + i) / s
                            value += bilinear_border(image[rgb], x + off_x, y + off_y)
                        out[rgb, y * s + i, x * s + j] = value
    return out


def randomised(method: str, seed: int):
    model = ab.build_model(method, "edsr-baseline")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)  # features O(1), offsets O(1) px
    return model


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("method", ["igconv", "igconv-plus"])
def test_output_equals_slow_float64_definition(method, scale):
    model = randomised(method, seed=scale)
    lr = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(10 + scale))
    out = model.upscale(lr, scale=scale, clamp=False)[0].double().numpy()
    ref = reference_output(model, lr, scale, plus=method == "igconv-plus")
    assert out.shape == ref.shape == (3, 4 * scale, 5 * scale)
    assert np.abs(out - ref).max() < 2e-5 * max(1.0, np.abs(ref).max())


def test_skip_with_zero_offsets_is_bilinear_upsampling():
    """With the offset/scope kernel zeroed, IGSample is plain bilinear xs upsampling (align_corners=False)."""
    model = ab.build_model("igconv-plus", "rdn")
    with torch.no_grad():
        for p in model.upsample.parameters():
            p.zero_()
        model.skip.convs.query_kernel[-1].weight.zero_()
    lr = torch.rand(1, 3, 6, 7)
    bilinear = torch.nn.functional.interpolate(lr, scale_factor=3, mode="bilinear", align_corners=False)
    assert torch.allclose(model.upscale(lr, scale=3, clamp=False), bilinear, atol=1e-6)


# -- kernel cache ----------------------------------------------------------------------------------------
def test_kernel_is_generated_once_per_scale_and_regenerated_after_weight_changes(monkeypatch):
    model = randomised("igconv-plus", seed=0)
    calls = []
    for part in (model.upsample, model.skip.convs):
        original = part.generate
        monkeypatch.setattr(part, "generate", lambda s, _o=original, _p=part: calls.append((_p, s)) or _o(s))
    lr = torch.rand(1, 3, 5, 6)
    first = model.upscale(lr, scale=3, clamp=False)
    assert len(calls) == 2
    assert torch.equal(model.upscale(lr, scale=3, clamp=False), first) and len(calls) == 2
    model.upscale(lr, scale=2)
    model.upscale(lr, scale=3)
    assert len(calls) == 4  # x2 generated once, x3 still cached
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["upsample.phase.bias"] += 0.5
    model.load_state_dict(state)
    changed = model.upscale(lr, scale=3, clamp=False)
    assert len(calls) == 6 and not torch.allclose(changed, first)  # load_state_dict touched both parts
    model.train()
    model.eval()
    model.upscale(lr, scale=3)
    assert len(calls) == 8  # train() cleared both caches


def test_training_mode_regenerates_and_backpropagates_to_the_hyper_network():
    model = randomised("igconv", seed=1).train()
    out = model(torch.rand(1, 3, 4, 4), (12, 12))
    out.mean().backward()
    assert model.upsample.freq.grad is not None and model.upsample.freq.grad.abs().sum() > 0
    assert model.upsample._cache == {}


def test_folded_ensemble_matches_the_official_output_ensemble():
    model = randomised("igconv-plus", seed=2)
    lr = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(2))
    exact = model.upscale(lr, scale=4, clamp=False)
    model.upsample.fold_ensemble = True
    model.upsample.clear_cache()
    folded = model.upscale(lr, scale=4, clamp=False)
    assert 0 < (folded - exact).abs().max() < 1e-5 * exact.abs().max()  # rounding only


# -- scales, sizes, options ------------------------------------------------------------------------------
def test_non_integer_and_asymmetric_scales_are_unsupported_naming_the_supported_ones():
    model = ab.build_model("igconv", "edsr-baseline")
    lr = torch.rand(1, 3, 6, 6)
    with pytest.raises(UnsupportedScale, match=r"x2, x3, x4"):
        model.upscale(lr, scale=2.5)
    with pytest.raises(UnsupportedScale):
        model.upscale(lr, size=(12, 18))
    assert model.upscale(lr, size=(18, 18)).shape[-2:] == (18, 18)


def test_swinir_pads_to_its_window_and_crops_back():
    model = ab.build_model("igconv-plus", "swinir")
    lr = torch.rand(1, 3, 13, 10)
    out = model.upscale(lr, scale=2, clamp=False)
    assert out.shape[-2:] == (26, 20)
    padded = torch.nn.functional.pad(lr, (0, 6, 0, 3), mode="reflect")
    with torch.no_grad():
        manual = model.forward_scale(padded, 2)[..., :26, :20]
    assert torch.equal(out, manual)


def test_presets_carry_the_official_normalisation_and_ensemble():
    spec_plus, spec = ab.registry.get_method("igconv-plus"), ab.registry.get_method("igconv")
    assert set(spec_plus.presets) >= {f"igconv-plus.{e}" for e in ("edsr", "edsr-baseline", "rdn", "swinir")}
    rdn = ab.build_model("igconv-plus", preset="igconv-plus.rdn")
    assert not rdn.normalise.centred and rdn.upsample.geo_ensemble and rdn.skip.convs.geo_ensemble  # YAML: geo true
    edsr = ab.build_model("igconv", preset="igconv.edsr-baseline")
    assert edsr.normalise.centred and not edsr.upsample.geo_ensemble and edsr.skip is None
    assert spec.scales == spec_plus.scales and 2.5 not in spec.scales and {2, 3, 4} <= set(spec.scales)
    with pytest.raises(UserError, match="unknown option 'no_such_option' for igconv"):
        ab.build_model("igconv", "edsr-baseline", no_such_option=1)
    with pytest.raises(UserError, match="Did you mean 'geo_ensemble'"):
        ab.build_model("igconv", "edsr-baseline", geo_ensembel=True)


# -- published numbers -----------------------------------------------------------------------------------
def test_published_csv_equals_the_dossier_edsr_table():
    dossier = IGCONV_DOC.read_text()
    table = dossier.split("### 7.1")[1].split("### 7.2")[0]
    expected = {}
    for line in table.splitlines():
        m = re.match(r"\| ×(\d) \| (IGConv\+?) \|(.*)", line)
        if m:
            method = "igconv-plus" if m.group(2).endswith("+") else "igconv"
            cells = [c.strip() for c in m.group(3).split("|") if c.strip()]
            for ds, cell in zip(["set5", "set14", "b100", "urban100", "manga109"], cells):
                psnr, ssim = cell.split("/")
                expected[(method, ds, m.group(1), "psnr")] = float(psnr)
                expected[(method, ds, m.group(1), "ssim")] = float(ssim)
    assert len(expected) == 60
    with PUBLISHED.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert list(rows[0]) == ["method", "encoder", "dataset", "scale", "protocol", "metric", "value", "source"]
    got = {(r["method"], r["dataset"], r["scale"], r["metric"]): float(r["value"])
           for r in rows if r["encoder"] == "edsr"}
    assert got == expected
    assert {r["protocol"] for r in rows} == {"gsasr"} and all(r["source"] for r in rows)
    assert all(0 < float(r["value"]) < 1 for r in rows if r["metric"] == "ssim")


def test_batch_equals_images_one_by_one_and_x5_extrapolates():
    model = randomised("igconv-plus", seed=3)
    lr = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(3))
    batch = model.upscale(lr, scale=5, clamp=False)
    assert batch.shape == (2, 3, 25, 35)
    for i in range(2):
        # equal to float rounding: a batch of 2 and of 1 take other BLAS blockings (their summation order differs)
        single = model.upscale(lr[i:i + 1], scale=5, clamp=False)
        assert torch.allclose(batch[i:i + 1], single, rtol=1e-5, atol=1e-5 * float(single.abs().max()))


def test_checkpoint_file_with_module_prefix_loads(tmp_path):
    sd = tsv_state_dict(key_table_file("igconv_keys_EDSRbaseline_IGConvPlus_classdefaults_NOTRELEASED.tsv"))
    path = tmp_path / "EDSRbaseline_IGConvPlus.pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in sd.items()}}, path)
    model = ab.build_model("igconv-plus", "edsr-baseline", checkpoint=str(path))
    assert model.weights_loaded and torch.equal(model.official_state_dict()["skip.convs.freq"], sd["skip.convs.freq"])
    with pytest.raises(UserError, match="holds no tensors .*expected params/params_ema"):
        ab.build_model("igconv-plus", "edsr-baseline", checkpoint={"net": 5, "epoch": 3})
