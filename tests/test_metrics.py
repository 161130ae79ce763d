"""PSNR/SSIM equal BasicSR's formulas (re-derived here in numpy/scipy) and the EDSR/LIIF PSNR, on real Set5 images."""
import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from asr_bench.data import imresize, read_image, to_tensor
from asr_bench.errors import UnknownName
from asr_bench.metrics import METRICS, get_metric, list_metrics, psnr, psnr_shave, ssim
from asr_bench.metrics.colour import y_basicsr, y_exact


def numpy_y(rgb_u8: np.ndarray) -> np.ndarray:
    """BasicSR to_y_channel on an RGB uint8 image: float32 /255, BT.601 dot in float64, float32, *255."""
    x = rgb_u8.astype(np.float32) / 255.0
    y = (np.dot(x[..., ::-1], [24.966, 128.553, 65.481]) + 16.0) / 255.0
    return (y.astype(np.float32) * 255.0).astype(np.float64)


def numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM with an 11x11 sigma-1.5 Gaussian, valid region only (scipy correlate, then trim)."""
    x = np.arange(11) - 5.0
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    win = np.outer(g, g)
    f = lambda img: scipy.ndimage.correlate(img, win, mode="reflect")[5:-5, 5:-5]  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = f(a), f(b)
    s1, s2, s12 = f(a * a) - mu1 ** 2, f(b * b) - mu2 ** 2, f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


def bicubic_pair(set5, name: str, s: int) -> tuple[np.ndarray, np.ndarray]:
    """A realistic (SR, HR) pair: the official LR upscaled by MATLAB bicubic, rounded to uint8."""
    lr = read_image(set5 / "LR_bicubic" / f"X{s}" / f"{name}x{s}.png")
    hr = read_image(set5 / "HR" / f"{name}.png")[: lr.shape[0] * s, : lr.shape[1] * s]
    return imresize(lr, scale=s, mode="float"), hr


@pytest.mark.parametrize("name,s", [("bird", 2), ("butterfly", 3), ("woman", 4)])
def test_psnr_ssim_equal_the_formula_on_real_images(set5, name, s):
    sr, hr = bicubic_pair(set5, name, s)
    c = s
    ys, yh = numpy_y(sr)[c:-c, c:-c], numpy_y(hr)[c:-c, c:-c]
    assert psnr(to_tensor(sr), to_tensor(hr), crop=c, y_channel=True) == pytest.approx(numpy_psnr(ys, yh), abs=1e-9)
    assert ssim(to_tensor(sr), to_tensor(hr), crop=c, y_channel=True) == pytest.approx(numpy_ssim(ys, yh), abs=1e-9)
    rs, rh = sr[c:-c, c:-c].astype(np.float64), hr[c:-c, c:-c].astype(np.float64)
    assert psnr(to_tensor(sr), to_tensor(hr), crop=c, y_channel=False) == pytest.approx(numpy_psnr(rs, rh), abs=1e-9)
    rgb_ssim = np.mean([numpy_ssim(rs[..., k], rh[..., k]) for k in range(3)])
    assert ssim(to_tensor(sr), to_tensor(hr), crop=c, y_channel=False) == pytest.approx(rgb_ssim, abs=1e-9)


def test_liif_psnr_equals_its_formula(set5):
    sr, hr = bicubic_pair(set5, "bird", 3)
    sr_f = torch.from_numpy(sr).permute(2, 0, 1).double() / 255 + 0.001  # unquantised float output
    diff = sr_f.numpy() - to_tensor(hr)[0].double().numpy()
    y = np.tensordot(np.array([65.738, 129.057, 25.064]) / 256, diff, axes=1)[3:-3, 3:-3]
    expect_y = -10 * math.log10(np.mean(y ** 2))
    assert psnr_shave(sr_f, to_tensor(hr), 3, y_channel=True) == pytest.approx(expect_y, abs=1e-9)
    rgb = diff[:, 9:-9, 9:-9]
    expect_rgb = -10 * math.log10(np.mean(rgb ** 2))
    assert psnr_shave(sr_f, to_tensor(hr), 9, y_channel=False) == pytest.approx(expect_rgb, abs=1e-9)


def test_one_level_everywhere_is_48_13_db():
    a = torch.full((1, 3, 20, 20), 100 / 255)
    b = torch.full((1, 3, 20, 20), 101 / 255)
    assert psnr(a, b, y_channel=False) == pytest.approx(20 * math.log10(255), abs=1e-4)
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0)


def test_basicsr_y_is_the_bt601_luma_to_float32_precision():
    rgb = torch.rand(3, 16, 16)
    assert torch.allclose(y_basicsr(rgb), y_exact(rgb), atol=2e-5)
    assert float(y_exact(torch.zeros(3, 1, 1))) == 16.0 and float(y_exact(torch.ones(3, 1, 1))) == pytest.approx(235.0)


def test_metric_table():
    assert list_metrics() == ["psnr", "ssim", "lpips", "dists", "ms-ssim", "fsim", "vif", "gmsd", "haarpsi"]
    assert not METRICS["psnr"].lower_better and METRICS["lpips"].lower_better and METRICS["dists"].lower_better
    assert METRICS["lpips"].needs_weights and not METRICS["ssim"].needs_weights
    with pytest.raises(UnknownName, match="psnr"):
        get_metric("psnrr")
