"""LPIPS and DISTS plumbing: random backbones saved in torchvision's key layout, checked against the formulas
written out independently here (module-style networks, as the lpips / DISTS_pytorch packages build them)."""
import numpy as np
import pytest
import torch
from torch import nn

from asr_bench.metrics import WeightsMissing, dists, lpips
from asr_bench.metrics.weights import ALEXNET_FILE, DISTS_HEAD, LPIPS_ALEX_HEAD, VGG16_FILE, find_head
from asr_bench.protocols import get_protocol


def torchvision_alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


def torchvision_vgg16_features() -> nn.Sequential:
    layers, c = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(*layers)


def save_backbone(features: nn.Sequential, path, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=(2 / (m.in_channels * m.kernel_size[0] ** 2)) ** 0.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # full torchvision checkpoints carry a classifier too
    torch.save(state, path)
    return features


@pytest.fixture
def alex_dir(tmp_path):
    feats = save_backbone(torchvision_alexnet_features(), tmp_path / ALEXNET_FILE, 0)
    torch.manual_seed(1)
    lins = [torch.rand(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]
    torch.save({f"lin{i}.model.1.weight": w for i, w in enumerate(lins)}, tmp_path / "alex.pth")
    return tmp_path, feats, lins


def reference_lpips(x, y, feats, lins):
    """lpips.LPIPS(net='alex', version='0.1') forward, normalize=True, written out."""
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)
    slices = [feats[0:2], feats[2:5], feats[5:8], feats[8:10], feats[10:12]]

    def outs(img):
        h, res = ((2 * img - 1) - shift) / scale, []
        for s in slices:
            h = s(h)
            res.append(h)
        return res

    total = 0
    for a, b, w in zip(outs(x), outs(y), lins):
        na = a / (torch.sqrt((a ** 2).sum(1, keepdim=True)) + 1e-10)
        nb = b / (torch.sqrt((b ** 2).sum(1, keepdim=True)) + 1e-10)
        total = total + ((na - nb) ** 2 * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    return float(total)


def test_lpips_equals_the_formula(alex_dir):
    folder, feats, lins = alex_dir
    torch.manual_seed(2)
    x, y = torch.rand(1, 3, 72, 80), torch.rand(1, 3, 72, 80)
    with torch.no_grad():
        ref = reference_lpips(x, y, feats, lins)
    assert lpips(x, y, weights_dir=folder) == pytest.approx(ref, rel=1e-5)
    assert lpips(x, x, weights_dir=folder) == pytest.approx(0.0, abs=1e-7)
    assert lpips(y, x, weights_dir=folder) == pytest.approx(ref, rel=1e-5)  # symmetric


class L2Pool(nn.Module):
    def __init__(self, channels):
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        out = nn.functional.conv2d(x ** 2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def reference_dists(x, y, vgg, alpha, beta):
    """DISTS_pytorch.DISTS forward, written out: stages split at the pools, pools replaced by L2 pooling."""
    stages = [vgg[0:4], nn.Sequential(L2Pool(64), vgg[5:9]), nn.Sequential(L2Pool(128), vgg[10:16]),
              nn.Sequential(L2Pool(256), vgg[17:23]), nn.Sequential(L2Pool(512), vgg[24:30])]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(img):
        h, res = (img - mean) / std, [img]
        for s in stages:
            h = s(h)
            res.append(h)
        return res

    chns = [3, 64, 128, 256, 512, 512]
    a_all, b_all = alpha / (alpha.sum() + beta.sum()), beta / (alpha.sum() + beta.sum())
    d1 = d2 = 0
    start = 0
    for f0, f1, c in zip(feats(x), feats(y), chns):
        a, b = a_all[:, start:start + c], b_all[:, start:start + c]
        start += c
        m0, m1 = f0.mean([2, 3], keepdim=True), f1.mean([2, 3], keepdim=True)
        d1 = d1 + (a * (2 * m0 * m1 + 1e-6) / (m0 ** 2 + m1 ** 2 + 1e-6)).sum()
        v0, v1 = ((f0 - m0) ** 2).mean([2, 3], keepdim=True), ((f1 - m1) ** 2).mean([2, 3], keepdim=True)
        cov = (f0 * f1).mean([2, 3], keepdim=True) - m0 * m1
        d2 = d2 + (b * (2 * cov + 1e-6) / (v0 + v1 + 1e-6)).sum()
    return float(1 - (d1 + d2))


def test_dists_equals_the_formula(tmp_path):
    vgg = save_backbone(torchvision_vgg16_features(), tmp_path / VGG16_FILE, 3)
    torch.manual_seed(4)
    alpha, beta = torch.rand(1, 1475, 1, 1) * 0.2, torch.rand(1, 1475, 1, 1) * 0.2
    (tmp_path / "DISTS_pytorch").mkdir()
    torch.save({"alpha": alpha, "beta": beta}, tmp_path / "DISTS_pytorch" / "weights.pt")
    x = torch.rand(1, 3, 64, 72)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        ref = reference_dists(x, y, vgg, alpha, beta)
    assert dists(x, y, weights_dir=tmp_path) == pytest.approx(ref, abs=1e-6)
    assert dists(x, x, weights_dir=tmp_path) == pytest.approx(0.0, abs=1e-6)


def test_missing_backbone_is_reported_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    x = torch.rand(1, 3, 40, 40)
    with pytest.raises(WeightsMissing, match=ALEXNET_FILE):
        lpips(x, x, weights_dir=tmp_path)
    values, notes = get_protocol("gsasr").score(x, x, 2, ["psnr", "lpips", "dists"], "set5", str(tmp_path))
    assert values["lpips"] is None and notes["lpips"] == f"n/a (weights missing: {ALEXNET_FILE})"
    assert values["dists"] is None and notes["dists"] == f"n/a (weights missing: {VGG16_FILE})"
    assert values["psnr"] == float("inf") and "psnr" not in notes


def test_backbone_found_in_torch_home(tmp_path, monkeypatch, alex_dir):
    folder, feats, lins = alex_dir
    hub = tmp_path / "th" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / ALEXNET_FILE).write_bytes((folder / ALEXNET_FILE).read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    head = tmp_path / "heads"
    head.mkdir()
    (head / "alex.pth").write_bytes((folder / "alex.pth").read_bytes())
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert lpips(x, y, weights_dir=head) == pytest.approx(reference_lpips(x, y, feats, lins), rel=1e-5)


def test_official_head_weights_have_the_expected_layout():
    """When the lpips / dists-pytorch wheels are installed, their data files are found and well-formed."""
    lp, dp = find_head(LPIPS_ALEX_HEAD), find_head(DISTS_HEAD)
    if lp is None or dp is None:
        pytest.skip("pip install lpips dists-pytorch --no-deps to test the official head weights")
    lins = torch.load(lp, map_location="cpu", weights_only=True)
    assert [tuple(lins[f"lin{i}.model.1.weight"].shape) for i in range(5)] == [
        (1, 64, 1, 1), (1, 192, 1, 1), (1, 384, 1, 1), (1, 256, 1, 1), (1, 256, 1, 1)]
    ab = torch.load(dp, map_location="cpu", weights_only=True)
    assert ab["alpha"].shape == ab["beta"].shape == (1, 1475, 1, 1)
