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
    """The 'Adding a method' example in the README is a working plugin, checked against its own definition."""
    block = re.search(r"```python\n(# methods/nearest_feat\.py.*?)```", README.read_text(), re.S)
    assert block, "README lost its plugin example"
    plugin = tmp_path / "nearest_feat.py"
    plugin.write_text(block.group(1))
    from asr_bench.config import parse_config
    from asr_bench.engine.cases import resolve_methods

    entry = resolve_methods(parse_config({"methods": ["nearest-feat"], "plugins": [str(plugin)]}))[0]
    model = ab.build_model(entry.method, entry.encoder)
    lr = torch.rand(1, 3, 6, 7)
    out = model.upscale(lr, size=(13, 20), clamp=False)
    # Independent: nearest-neighbour of a 1x1 conv = the 1x1 conv of the nearest LR pixel (floor(i * h / H)).
    feat = model.to_rgb(model.encoder((lr - 0.5) / 0.5)) * 0.5 + 0.5
    rows = [i * 6 // 13 for i in range(13)]
    cols = [j * 7 // 20 for j in range(20)]
    assert torch.allclose(out, feat[:, :, rows][:, :, :, cols])
    # Strict loading through the helper: its own state dict loads, a truncated one is a one-line error.
    sd = model.state_dict()
    assert ab.build_model("nearest-feat", checkpoint=sd).weights_loaded
    with pytest.raises(ab.UserError, match="missing"):
        ab.build_model("nearest-feat", checkpoint={k: v for k, v in list(sd.items())[1:]})


# Encoders added for the released IGConv families; their presets run on a tiny build of the same encoder (the
# preset's method options unchanged), so every preset is exercised without building 10-20 M parameter models.
TINY_ENCODERS = {
    "srformer": dict(img_size=8, window_size=4, embed_dim=16, depths=(2,), num_heads=(2,)),
    "atd": dict(window_size=4, embed_dim=12, depths=(2,), num_heads=(2,), category_size=16, num_tokens=5,
                reducted_dim=4),
    "mambair": dict(embed_dim=30, depths=(1,), d_state=2),
    "mambair-light": dict(embed_dim=30, depths=(1,), d_state=2),
}
PRESETS = [(m, p) for m in ab.list_methods() for p, preset in get_method(m).presets.items()
           if preset.encoder in TINY_ENCODERS]


@pytest.mark.parametrize("method,preset", PRESETS, ids=[p for _, p in PRESETS])
def test_every_encoder_family_preset_runs_on_a_tiny_build(method, preset):
    from dataclasses import replace

    torch.manual_seed(0)
    spec = get_method(method)
    tiny = replace(spec.presets[preset], encoder_kwargs=TINY_ENCODERS[spec.presets[preset].encoder])
    model = spec.builder(encoder=tiny.encoder, checkpoint=None, preset=tiny).eval()
    lr = torch.rand(1, 3, 12, 14)
    s = int(min(spec.scales))
    out = model.upscale(lr, scale=s)
    assert tuple(out.shape) == (1, 3, 12 * s, 14 * s) and torch.isfinite(out).all()
    with pytest.raises(UnsupportedScale, match=f"x{s}"):
        model.upscale(lr, scale=s + 0.5)
