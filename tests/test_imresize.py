"""imresize = MATLAB imresize(..., 'bicubic'): against the official Set5 LR files and a slow per-pixel reference."""
import math

import numpy as np
import pytest
import torch

from asr_bench.data import imresize, read_image
from asr_bench.data.imresize import round_half_away
from asr_bench.errors import UserError

SET5 = ["baby", "bird", "butterfly", "head", "woman"]


def keys_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax ** 3 - 2.5 * ax ** 2 + 1
    if ax <= 2:
        return -0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2
    return 0.0


def mirror(i: int, n: int) -> int:
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


def axis_weights(n_in: int, n_out: int, s: float) -> list[dict[int, float]]:
    """For each output sample, {input index: weight}: the continuous kernel centred at (o + 0.5) / s - 0.5."""
    out = []
    for o in range(n_out):
        centre = (o + 0.5) / s - 0.5
        k_scale = min(s, 1.0)  # antialias: stretch by 1/s when shrinking
        reach = 2 / k_scale
        taps = {}
        for i in range(math.floor(centre - reach) - 1, math.ceil(centre + reach) + 2):
            w = k_scale * keys_cubic((centre - i) * k_scale)
            if w:
                taps[mirror(i, n_in)] = taps.get(mirror(i, n_in), 0.0) + w
        total = sum(taps.values())
        out.append({i: w / total for i, w in taps.items()})
    return out


def slow_resize(img: np.ndarray, out_hw: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """Per output pixel: sum over the 2-D kernel support (float64, no intermediate rounding)."""
    wy = axis_weights(img.shape[0], out_hw[0], scale[0])
    wx = axis_weights(img.shape[1], out_hw[1], scale[1])
    out = np.zeros((out_hw[0], out_hw[1], img.shape[2]))
    for r in range(out_hw[0]):
        for c in range(out_hw[1]):
            acc = np.zeros(img.shape[2])
            for i, a in wy[r].items():
                for j, b in wx[c].items():
                    acc += a * b * img[i, j]
            out[r, c] = acc
    return out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_mode_reproduces_the_benchmark_lr_files_pixel_for_pixel(set5, scale):
    for name in SET5:
        hr = read_image(set5 / "HR" / f"{name}.png")
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
        official = read_image(set5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        ours = imresize(hr, scale=1 / scale, mode="uint8")
        assert ours.shape == official.shape
        assert np.array_equal(ours, official), f"{name} x{scale}: {(ours != official).sum()} pixels differ"


def test_float_mode_equals_the_slow_reference_on_a_real_image(set5):
    hr = read_image(set5 / "HR" / "butterfly.png")[40:100, 60:128]  # 60x68 patch keeps the loop short
    img = torch.from_numpy(hr).permute(2, 0, 1).float() / 255
    for scale, size in [(1 / 4, (15, 17)), (1 / 3.3, (19, 21))]:
        ours = imresize(img, scale=scale)
        assert tuple(ours.shape[-2:]) == size
        ref = slow_resize(hr.astype(np.float64) / 255, size, (scale, scale))
        assert np.abs(ours.permute(1, 2, 0).numpy() - ref).max() < 1e-5


@pytest.mark.parametrize("scale", [2.3, (1.7, 3.2), (0.6, 2.5)])
def test_upscaling_and_asymmetric_scales_equal_the_slow_reference(scale):
    rng = np.random.default_rng(0)
    img = rng.random((9, 11, 3))
    pair = scale if isinstance(scale, tuple) else (scale, scale)
    size = (math.ceil(9 * pair[0]), math.ceil(11 * pair[1]))
    ours = imresize(torch.from_numpy(img).permute(2, 0, 1), scale=scale)
    assert tuple(ours.shape[-2:]) == size
    ref = slow_resize(img, size, pair)
    assert np.abs(ours.permute(1, 2, 0).numpy() - ref).max() < 1e-12


def test_size_argument_uses_out_over_in_as_the_scale():
    img = torch.rand(3, 10, 12, dtype=torch.float64)
    ours = imresize(img, size=(23, 17))
    ref = slow_resize(img.permute(1, 2, 0).numpy(), (23, 17), (23 / 10, 17 / 12))
    assert np.abs(ours.permute(1, 2, 0).numpy() - ref).max() < 1e-12


def test_output_size_is_matlab_ceil_without_float_error():
    img = torch.rand(3, 255, 256)
    assert tuple(imresize(img, scale=1 / 3).shape[-2:]) == (85, 86)
    assert tuple(imresize(img, scale=(0.5, 1 / 4)).shape[-2:]) == (128, 64)


def test_constant_image_stays_constant_and_batches_work():
    img = torch.full((2, 3, 17, 13), 0.3)
    out = imresize(img, scale=0.41)
    assert out.shape[:2] == (2, 3) and torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)


def test_types_round_trip():
    hwc = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out = imresize(hwc, scale=0.5)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (6, 5, 3)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()
    out_t = imresize(chw, scale=0.5)
    assert out_t.dtype == torch.uint8 and np.array_equal(out_t.permute(1, 2, 0).numpy(), out)
    grey = imresize(hwc[..., 0], scale=0.5)
    assert grey.shape == (6, 5) and np.array_equal(grey, out[..., 0])
    # float mode on uint8 rounds once at the end: never further than 1 level from uint8 mode here
    once = imresize(hwc, scale=0.5, mode="float")
    assert np.abs(once.astype(int) - out.astype(int)).max() <= 1


def test_matlab_rounding_is_half_away_from_zero():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999])
    assert round_half_away(x).tolist() == [1, 2, 3, -1, -2, 2]


def test_mistakes_are_user_errors():
    img = torch.rand(3, 8, 8)
    with pytest.raises(UserError, match="exactly one"):
        imresize(img, scale=0.5, size=(4, 4))
    with pytest.raises(UserError, match="uint8"):
        imresize(img, scale=0.5, mode="uint8")
    with pytest.raises(UserError, match="mode"):
        imresize(img, scale=0.5, mode="nearest")
    with pytest.raises(UserError):
        imresize(img, scale=-2)
