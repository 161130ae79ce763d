"""save_images (every SR output as a PNG), the visual crop's placement (most detail, or visuals.crop_at),
the thumbnail and box written for the report, and the config keys that drive them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.config import parse_config
from asr_bench.engine.outputs import output_path, save_output
from asr_bench.engine.visuals import detail_box, placed_box, save_crops
from asr_bench.errors import UserError


def _brute_force_detail(hr: np.ndarray, side: int) -> tuple[int, int]:
    """Slow loop over every window: the top-left with the largest sum of squared luma differences."""
    y = 0.299 * hr[0] + 0.587 * hr[1] + 0.114 * hr[2]
    energy = np.zeros_like(y)
    energy[:, 1:] += np.diff(y, axis=1) ** 2
    energy[1:, :] += np.diff(y, axis=0) ** 2
    best, where = -1.0, (0, 0)
    for top in range(y.shape[0] - side + 1):
        for left in range(y.shape[1] - side + 1):
            total = energy[top:top + side, left:left + side].sum()
            if total > best + 1e-12:
                best, where = total, (top, left)
    return where


def test_the_crop_goes_where_the_hr_has_most_detail():
    rng = np.random.default_rng(1)
    hr = np.full((3, 40, 50), 0.5)
    hr[:, 22:30, 31:41] = rng.random((3, 8, 10))  # one textured patch on a flat image
    top, left, bottom, right = detail_box(torch.from_numpy(hr)[None], (40, 50), 12)
    assert (bottom - top, right - left) == (12, 12)
    assert (top, left) == _brute_force_detail(hr, 12)
    assert top <= 22 and bottom >= 30 and left <= 31 and right >= 41  # the patch is inside the box


def test_crop_at_places_the_corner_and_is_moved_inside_the_image():
    assert placed_box((40, 50), (40, 50), 12, (5, 7)) == (5, 7, 17, 19)
    assert placed_box((40, 50), (38, 50), 12, (35, 45)) == (26, 38, 38, 50)  # clipped to the smaller image


def test_save_crops_writes_thumbnail_and_box_and_every_method_uses_the_first_box(tmp_path: Path):
    rng = np.random.default_rng(2)
    hr = torch.from_numpy(rng.random((1, 3, 40, 48))).float()
    lr = hr[..., ::2, ::2]
    save_crops(tmp_path, "A", hr, hr, lr, 16, crop_at=(4, 6))
    save_crops(tmp_path, "B", hr.flip(-1), hr, lr, 16, crop_at=(20, 20))  # a later case cannot move the box
    box = json.loads((tmp_path / "box.json").read_text())
    assert box["box"] == [4, 6, 20, 22] and box["hr_size"] == [40, 48]
    gt = np.asarray(Image.open(tmp_path / "GT.png"))
    expected = np.round(hr[0, :, 4:20, 6:22].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(gt, expected)
    from asr_bench.results.schema import label_stem

    b = np.asarray(Image.open(tmp_path / f"{label_stem('B')}.png"))
    assert np.array_equal(b, np.round(hr.flip(-1)[0, :, 4:20, 6:22].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    assert Image.open(tmp_path / "thumb.png").size == (48, 40)  # small images are kept whole


def test_save_output_writes_the_quantised_output(tmp_path: Path):
    sr = torch.tensor([[[[0.0, 0.5, 1.2]], [[0.2, -0.1, 0.998]], [[1 / 255, 0.5 / 255, 0.7]]]])
    path = save_output(tmp_path, "Set5", "3.5", "LIIF (edsr-baseline)", "baby", sr)
    assert path == output_path(tmp_path, "Set5", "3.5", "LIIF (edsr-baseline)", "baby")
    stem = path.parent.name
    assert path.relative_to(tmp_path).as_posix() == f"images/set5/x3.5/{stem}/baby.png"
    assert stem.startswith("liif_edsr-baseline-") and len(stem) == len("liif_edsr-baseline-") + 6
    expected = [[[0, 51, 1], [128, 0, 0], [255, 254, 178]]]  # clamp, x255, round (half to even, as torch.round), by hand
    assert np.asarray(Image.open(path)).tolist() == expected


def test_config_keys_for_outputs_and_crop_placement():
    config = parse_config({"methods": "all", "save_images": True, "visuals": {"crop": 64, "crop_at": [10, 20]}})
    assert config.save_images is True and config.visuals.crop_at == (10, 20)
    default = parse_config({"methods": "all"})
    assert default.save_images is False and default.visuals.crop_at is None


@pytest.mark.parametrize("bad", [[1], [1, -2], "10,20", [1.5, 2]])
def test_a_bad_crop_at_is_a_user_error_with_an_example(bad):
    with pytest.raises(UserError, match=r"visuals.crop_at must be \[top, left\].*crop_at: \[120, 200\]"):
        parse_config({"methods": "all", "visuals": {"crop_at": bad}})
