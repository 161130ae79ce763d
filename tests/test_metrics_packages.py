"""Our LPIPS and DISTS against the reference packages (`lpips`, `DISTS_pytorch`), and piq's metrics through the
protocol, on real Set5 pairs.

The backbones are random torchvision AlexNet/VGG16 nets (nothing is downloaded): saved in torchvision's key
layout where ours reads them, and loaded into the packages' nets; the heads are the packages' own files.
Skipped with a reason where a package is missing.
"""
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from asr_bench.metrics import METRICS, PIQ_METRICS, dists, lpips, piq_metric
from asr_bench.metrics.weights import ALEXNET_FILE, DISTS_HEAD, VGG16_FILE, find_head
from asr_bench.protocols import get_protocol

NAMES = ("baby", "bird", "butterfly", "head", "woman")


def read(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def set5_pairs(set5, scale=4):
    """(bicubic upscaling of the premade x4 LR, HR cropped to it) per Set5 image: real content, real errors."""
    pairs = []
    for name in NAMES:
        lr = read(set5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        h, w = lr.shape[-2] * scale, lr.shape[-1] * scale
        sr = F.interpolate(lr[None], size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        pairs.append((name, sr, read(set5 / "HR" / f"{name}.png")[:, :h, :w]))
    return pairs


@pytest.mark.slow
def test_lpips_equals_the_lpips_package(set5, tmp_path):
    lpips_pkg = pytest.importorskip("lpips", reason="the lpips package is not installed (pip install '.[metrics]')")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    torch.manual_seed(11)
    alex = torchvision.models.alexnet(weights=None).eval()
    torch.save(alex.state_dict(), tmp_path / ALEXNET_FILE)
    reference = lpips_pkg.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    for index, layer in enumerate(alex.features):    # the package's slices keep torchvision's indices
        for part in reference.net.children():
            if str(index) in part._modules:
                part._modules[str(index)].load_state_dict(layer.state_dict())
    for name, sr, hr in set5_pairs(set5):
        with torch.no_grad():
            expect = reference(sr[None], hr[None], normalize=True).item()
        assert lpips(sr, hr, weights_dir=tmp_path) == pytest.approx(expect, rel=1e-5, abs=1e-7), name


@pytest.mark.slow
def test_dists_equals_the_dists_package(set5, tmp_path, monkeypatch):
    pytest.importorskip("DISTS_pytorch", reason="the DISTS_pytorch package is not installed (pip install '.[metrics]')")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    from DISTS_pytorch import DISTS_pt

    torch.manual_seed(12)
    vgg = torchvision.models.vgg16(weights=None).eval()
    torch.save(vgg.state_dict(), tmp_path / VGG16_FILE)
    monkeypatch.setattr(DISTS_pt.models, "vgg16", lambda *args, **kwargs: vgg)   # instead of downloading
    reference = DISTS_pt.DISTS(load_weights=False).eval()
    head = torch.load(find_head(DISTS_HEAD), map_location="cpu", weights_only=True)   # the package's own file
    reference.alpha.data, reference.beta.data = head["alpha"], head["beta"]
    for name, sr, hr in set5_pairs(set5):
        with torch.no_grad():
            expect = reference(sr[None], hr[None]).item()
        assert dists(sr, hr, weights_dir=tmp_path) == pytest.approx(expect, rel=1e-5, abs=1e-7), name


@pytest.mark.slow
@pytest.mark.parametrize("metric", PIQ_METRICS)
def test_piq_metrics_through_the_protocol_use_its_border(set5, metric):
    piq = pytest.importorskip("piq", reason="piq is not installed (pip install '.[metrics]')")
    protocol = get_protocol("gsasr")
    direct = {"ms-ssim": lambda x, y: piq.multi_scale_ssim(x, y, data_range=1.0),
              "fsim": lambda x, y: piq.fsim(x, y, data_range=1.0),
              "vif": lambda x, y: piq.vif_p(x, y, data_range=1.0),
              "gmsd": lambda x, y: piq.gmsd(x, y, data_range=1.0),
              "haarpsi": lambda x, y: piq.haarpsi(x, y, data_range=1.0)}[metric]
    info = METRICS[metric]
    for name, sr, hr in set5_pairs(set5)[:2]:
        values, notes = protocol.score(sr, hr, 4, [metric])
        b = protocol.border(4)
        expect = direct(sr[None, :, b:-b, b:-b].double(), hr[None, :, b:-b, b:-b].double()).item()
        assert values[metric] == pytest.approx(expect, rel=1e-9), name
        assert notes == {}
        low, high = info.value_range
        assert low <= values[metric] <= high
        perfect = piq_metric(metric, hr, hr)
        assert perfect == pytest.approx(0.0 if info.lower_better else 1.0, abs=1e-6)
        worse_than_perfect = values[metric] > perfect if info.lower_better else values[metric] < perfect
        assert worse_than_perfect, f"{metric} on {name}: a degraded image must score worse than the HR itself"


def test_piq_metrics_read_na_without_piq(monkeypatch):
    monkeypatch.setitem(sys.modules, "piq", None)   # import piq now raises ImportError
    x = torch.rand(3, 200, 200)
    values, notes = get_protocol("gsasr").score(x, x, 2, ["psnr", *PIQ_METRICS])
    assert values["psnr"] == float("inf")
    for metric in PIQ_METRICS:
        assert values[metric] is None and notes[metric] == "n/a (piq not installed)"


def test_ms_ssim_on_an_image_too_small_reads_na():
    pytest.importorskip("piq", reason="piq is not installed (pip install '.[metrics]')")
    x = torch.rand(3, 120, 300)
    values, notes = get_protocol("gsasr").score(x, x, 2, ["ms-ssim", "gmsd"])
    assert values["ms-ssim"] is None and notes["ms-ssim"] == "n/a (image smaller than 161 px for ms-ssim)"
    assert values["gmsd"] == pytest.approx(0.0, abs=1e-9)


def test_every_metric_declares_direction_and_range():
    for name, info in METRICS.items():
        low, high = info.value_range
        assert low < high, name
        assert isinstance(info.lower_better, bool), name
    assert {METRICS[m].needs_package for m in PIQ_METRICS} == {"piq"}
    assert METRICS["gmsd"].lower_better and not METRICS["ms-ssim"].lower_better
