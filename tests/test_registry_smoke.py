"""Every registered method, on random weights: a tiny input, a non-integer and an asymmetric size.

This is the test that catches a plugin that registers but can't run. Fixed-scale methods must refuse what they
don't support with `UnsupportedScale`, naming the supported scales.
"""
import re
from pathlib import Path

import pytest
import torch

import asr_bench as ab
from asr_bench.errors import UnsupportedScale
from asr_bench.registry import broken_plugins, get_method
from asr_bench.upsampler import ANY_SCALE

README = Path(__file__).resolve().parent.parent / "README.md"


def test_no_plugin_failed_to_import():
    assert broken_plugins() == {}


def test_the_registry_holds_every_method_of_the_suite():
    assert {"bicubic", "liif", "metasr", "igconv", "igconv-plus", "rt4ksr", "gsasr"} <= set(ab.list_methods())


@pytest.mark.parametrize("name", ab.list_methods())
def test_method_runs_on_its_default_encoder(name):
    torch.manual_seed(0)
    spec = get_method(name)
    model = ab.build_model(name)
    lr = torch.rand(1, 3, 12, 14)
    if spec.scales == ANY_SCALE:
        for kwargs, size in (({"scale": 2.5}, (30, 35)), ({"size": (29, 45)}, (29, 45))):
            out = model.upscale(lr, **kwargs)
            assert tuple(out.shape) == (1, 3, *size)
            assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    else:
        s = int(min(spec.scales))
        out = model.upscale(lr, scale=s)
        assert tuple(out.shape) == (1, 3, 12 * s, 14 * s) and torch.isfinite(out).all()
        with pytest.raises(UnsupportedScale, match=f"x{s}"):
            model.upscale(lr, scale=s + 0.5)


def test_readme_plugin_example_runs_as_written(tmp_path, monkeypatch):
    """The 'Adding a method' example in the README is a working plugin package, checked against its definition."""
    text = README.read_text()
    package = tmp_path / "nearest_feat"
    package.mkdir()
    for part in ("net", "__init__"):
        block = re.search(rf"```python\n(# asr_bench/methods/nearest_feat/{part}\.py.*?)```", text, re.S)
        assert block, f"README lost the {part}.py of its plugin example"
        (package / f"{part}.py").write_text(block.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    from asr_bench.config import parse_config
    from asr_bench.engine.cases import resolve_methods

    entry = resolve_methods(parse_config({"methods": ["nearest-feat"], "plugins": ["nearest_feat"]}))[0]
    model = ab.build_model(entry.method, entry.encoder)
    lr = torch.rand(1, 3, 6, 7)
    out = model.upscale(lr, size=(13, 20), clamp=False)
    # Independent: nearest-neighbour of a 1x1 conv = the 1x1 conv of the nearest LR pixel (floor(i * h / H)).
    feat = model.to_rgb(model.encoder((lr - 0.5) / 0.5)) * 0.5 + 0.5
    rows = [i * 6 // 13 for i in range(13)]
    cols = [j * 7 // 20 for j in range(20)]
    assert torch.allclose(out, feat[:, :, rows][:, :, :, cols])
    # Strict loading by the registry: its own state dict loads, a truncated one is a one-line error.
    sd = model.state_dict()
    assert ab.build_model("nearest-feat", checkpoint=sd).weights_loaded
    assert ab.build_model("nearest-feat", checkpoint={"params_ema": sd, "params": {}}).weights_loaded
    with pytest.raises(ab.UserError, match="missing"):
        ab.build_model("nearest-feat", checkpoint={k: v for k, v in list(sd.items())[1:]})
    # Declared options only, with the closest name suggested; a declared one reaches the builder.
    with pytest.raises(ab.UserError, match="Did you mean 'zero_init'"):
        ab.build_model("nearest-feat", zero_ini=True)
    assert not ab.build_model("nearest-feat", zero_init=True).to_rgb.weight.any()
    assert ab.build_model(preset="nearest-feat.rdn").encoder.__class__.__name__ == "RDN"


# ------------------------------------------------------------------ the spec is what the model enforces


class Resample(ab.Upsampler):
    """A plugin model that declares nothing itself: whatever it supports comes from its spec."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def forward_size(self, lr, size, scale):
        self.seen = scale
        return torch.nn.functional.interpolate(lr, size=size, mode="nearest")


def register_toy(monkeypatch, **spec_fields):
    from asr_bench import registry

    spec = registry.MethodSpec("toy-resample", lambda encoder, preset, weights: Resample(), ("none",),
                               needs_weights=False, **spec_fields)
    registry._load()
    monkeypatch.setitem(registry._METHODS, spec.name, spec)
    return spec


def test_declared_scales_bind_the_public_api(monkeypatch):
    """A model built for a spec with scales=(2,) refuses 2.5 even though its class says nothing."""
    register_toy(monkeypatch, scales=(2,))
    model = ab.build_model("toy-resample")
    lr = torch.rand(1, 3, 5, 6)
    assert model.upscale(lr, scale=2).shape[-2:] == (10, 12)
    with pytest.raises(UnsupportedScale, match="x2"):
        model.upscale(lr, scale=2.5)
    with pytest.raises(UnsupportedScale):
        model.upscale(lr, size=(12, 15))


def test_declared_minimum_size_and_nominal_scale(monkeypatch):
    register_toy(monkeypatch, min_size=4)
    model = ab.build_model("toy-resample")
    with pytest.raises(ab.UserError, match="at least 4x4"):
        model.upscale(torch.rand(1, 3, 3, 8), scale=2)
    model.upscale(torch.rand(1, 3, 4, 8), size=(13, 27), scale=3.3)
    assert model.seen == (3.3, 3.3)                   # the nominal scale, not 13/4
    model.upscale(torch.rand(1, 3, 4, 8), size=(13, 27))
    assert model.seen == (13 / 4, 27 / 8)             # size alone: the ratios


def test_undeclared_dtypes_are_refused(monkeypatch):
    register_toy(monkeypatch, dtypes=("fp32",))
    with pytest.raises(ab.UserError, match="not tested in bf16"):
        ab.build_model("toy-resample", dtype="bf16")


@pytest.mark.parametrize("name", ab.list_methods())
def test_spec_and_model_agree(name):
    """Scales, dtypes, size rules and tiling policy on the built model are the spec's (RT4KSR may narrow scales)."""
    spec = get_method(name)
    model = ab.build_model(name)
    preset = spec.preset_for(spec.encoders[0], None)
    assert model.method == name and model.dtypes == spec.dtypes and model.tiling == spec.tiling
    assert model.min_size == spec.min_size and model.pad_multiple == spec.size_multiple(preset)
    if spec.scales == ANY_SCALE:
        assert model.scales == ANY_SCALE
    else:
        assert set(model.scales) <= set(spec.scales) and model.scales
    # The declared multiple is what the model pads to: padding the input ourselves changes nothing.
    m = model.pad_multiple
    if m > 1:
        torch.manual_seed(1)
        lr = torch.rand(1, 3, 13, 15)
        s = 2 if spec.scales != ANY_SCALE else 2.5
        out = model.upscale(lr, scale=s, clamp=False)
        padded = torch.nn.functional.pad(lr, (0, (-15) % m, 0, (-13) % m), mode="reflect")
        assert torch.equal(out, model.upscale(padded, scale=s, clamp=False)[..., : out.shape[-2], : out.shape[-1]])


# ------------------------------------------------------------------------------------------ presets


def test_presets_are_data_named_method_dot_tag():
    from asr_bench.registry import all_presets, get_preset
    from asr_bench.weightfiles import WeightFile

    pairs = all_presets()
    names = [p.name for _, p in pairs]
    assert len(names) == len(set(names)) and len(names) >= 20
    for spec, preset in pairs:
        assert preset.name.startswith(spec.name + ".") and preset.encoder in spec.encoders
        assert get_preset(preset.name) is preset
        assert isinstance(preset.weights, tuple) and all(isinstance(w, WeightFile) for w in preset.weights)
        for weight in preset.weights:
            assert weight.urls or weight.manual, preset.name
    for name in ("gsasr.edsr-baseline-paper", "gsasr.rdn-enhanced", "metasr.meta-rdn", "rt4ksr.x2",
                 "liif.edsr-baseline", "igconv-plus.swinir"):
        assert get_preset(name).weights, name
    with pytest.raises(ab.UserError, match="Did you mean 'rt4ksr.x2'"):
        get_preset("rt4ksr.x22")


@pytest.mark.parametrize("old, new", [("x2", "rt4ksr.x2"), ("rt4ksr", "rt4ksr.all"),
                                      ("rdn-enhanced", "gsasr.rdn-enhanced")])
def test_old_preset_names_still_work_with_a_warning(old, new):
    method = new.split(".")[0]
    with pytest.warns(DeprecationWarning, match=new):
        assert get_method(method).preset_named(old).name == new


def test_rt4ksr_hashes_are_those_of_the_real_files():
    """The published size and sha256 (docs/methods/rt4ksr.md §3) match the official files in ../shared/data."""
    import hashlib

    from asr_bench.registry import get_preset

    folder = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "weights"
    if not (folder / "rt4ksr" / "rt4ksr_x2.pth").is_file():
        pytest.skip("official weights not in ../shared/data/weights")
    for preset, sub in (("rt4ksr.x2", "rt4ksr"), ("rt4ksr.x3", "rt4ksr"), ("liif.edsr-baseline", "liif")):
        (weight,) = get_preset(preset).weights
        data = (folder / sub / weight.filename).read_bytes()
        assert len(data) == weight.size and hashlib.sha256(data).hexdigest() == weight.sha256


# Tiny versions of the big encoders, so every preset that uses one runs here in well under a second.
TINY_ENCODERS = {
    "hat": {"window_size": 4, "embed_dim": 12, "depths": (1,), "num_heads": (2,), "squeeze_factor": 4},
    "rcan": {"n_feats": 8, "n_resgroups": 1, "n_resblocks": 1, "reduction": 4},
    "plksr": {"dim": 8, "n_blocks": 1, "kernel_size": 5},
    "smfanet": {"dim": 8, "n_blocks": 1},
    "srformer": dict(img_size=8, window_size=4, embed_dim=16, depths=(2,), num_heads=(2,)),
    "atd": dict(window_size=4, embed_dim=12, depths=(2,), num_heads=(2,), category_size=16, num_tokens=5,
                reducted_dim=4),
    "mambair": dict(embed_dim=30, depths=(1,), d_state=2),
    "mambair-light": dict(embed_dim=30, depths=(1,), d_state=2),
    "hit-srf": dict(embed_dim=20, depths=(2,), num_heads=(2,), base_win_size=(4, 4), hier_win_ratios=(0.5, 2)),
}
TINY_ROPE = {"embed_dim": 16, "compress_ratio": 2}  # RoPE needs head_dim % 4 == 0
TINY_GSASR_DECODER = {"channel": 24, "num_crossattn_blocks": 1, "num_crossattn_layers": 1,
                      "num_selfattn_blocks": 1, "num_selfattn_layers": 1}


def _tiny_presets():
    from asr_bench.registry import method_specs
    return [(spec.name, name) for spec in method_specs() for name, p in spec.presets.items()
            if p.encoder in TINY_ENCODERS]


@pytest.mark.parametrize("method,preset", _tiny_presets())
def test_every_preset_on_a_big_encoder_runs_tiny(method, preset):
    """The preset's own method options (normalisation, padding, denominator, heads) on a tiny encoder."""
    import dataclasses

    from asr_bench.registry import declare

    spec = get_method(method)
    p = spec.presets[preset]
    enc_kw = {**p.encoder_kwargs, **TINY_ENCODERS[p.encoder]}
    if enc_kw.get("rope"):
        enc_kw.update(TINY_ROPE)
    enc_kw.pop("large", None)
    method_kw = dict(p.method_kwargs)
    if method == "gsasr":
        method_kw["decoder"] = {**method_kw["decoder"], **TINY_GSASR_DECODER}
    tiny = dataclasses.replace(p, encoder_kwargs=enc_kw, method_kwargs=method_kw)
    torch.manual_seed(0)
    model = spec.builder(encoder=p.encoder, preset=tiny, weights=None)
    declare(model, spec, tiny)
    model.eval()
    lr = torch.rand(1, 3, 12, 14)
    if spec.scales == ANY_SCALE:
        for kwargs, size in (({"scale": 2.5}, (30, 35)), ({"size": (29, 45)}, (29, 45))):
            out = model.upscale(lr, **kwargs)
            assert tuple(out.shape) == (1, 3, *size) and torch.isfinite(out).all()
    else:
        out = model.upscale(lr, scale=3)
        assert tuple(out.shape) == (1, 3, 36, 42) and torch.isfinite(out).all()
        with pytest.raises(UnsupportedScale):
            model.upscale(lr, scale=2.5)
