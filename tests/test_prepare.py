"""prepare: benchmark-style LR folders (bit-exact with the official Set5 package) and GSASR's DIV2K-720 crops."""
import numpy as np
import pytest

from asr_bench.data import imresize, read_image, resolve_dataset, write_image
from asr_bench.data.prepare import prepare_div2k_720, prepare_lr
from asr_bench.errors import UserError


def test_prepare_lr_reproduces_the_official_set5_package(set5, tmp_path):
    prepare_lr(set5 / "HR", [2, 3, 4], tmp_path / "Set5")
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        assert (tmp_path / "Set5" / "HR" / f"{name}.png").read_bytes() == (set5 / "HR" / f"{name}.png").read_bytes()
        for s in (2, 3, 4):
            ours = read_image(tmp_path / "Set5" / "LR_bicubic" / f"X{s}" / f"{name}x{s}.png")
            assert np.array_equal(ours, read_image(set5 / "LR_bicubic" / f"X{s}" / f"{name}x{s}.png"))
    ds = resolve_dataset(str(tmp_path / "Set5"))
    assert ds.layout.kind == "benchmark" and ds.premade_lr("bird", 3).shape == (96, 96, 3)


def test_prepare_lr_other_formats_and_rerun(tmp_path):
    hr = np.random.default_rng(0).integers(0, 256, (25, 19, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "x.bmp", hr)
    written = prepare_lr(tmp_path / "in", [3], tmp_path / "out")
    assert np.array_equal(read_image(tmp_path / "out" / "HR" / "x.png"), hr)
    lr = read_image(tmp_path / "out" / "LR_bicubic" / "X3" / "xx3.png")
    assert np.array_equal(lr, imresize(hr[:24, :18], scale=1 / 3, mode="uint8"))
    assert len(written) == 2 and prepare_lr(tmp_path / "in", [3], tmp_path / "out") == []
    with pytest.raises(UserError, match="integer"):
        prepare_lr(tmp_path / "in", [2.5], tmp_path / "out")
    with pytest.raises(UserError, match="not found"):
        prepare_lr(tmp_path / "missing", [2], tmp_path / "out")


def test_prepare_div2k_720(tmp_path):
    hr = np.random.default_rng(1).integers(0, 256, (820, 810, 3), dtype=np.uint8)
    write_image(tmp_path / "DIV2K_valid_HR" / "0801.png", hr)
    prepare_div2k_720(tmp_path / "DIV2K_valid_HR", tmp_path / "out", scales=[4, 12])
    gt = read_image(tmp_path / "out" / "DIV2K_GT720" / "0801.png")
    assert np.array_equal(gt, hr[80:800, 80:800])
    lr = read_image(tmp_path / "out" / "DIV2K_LR720" / "X12" / "0801.png")
    assert lr.shape == (60, 60, 3) and np.array_equal(lr, imresize(gt, scale=1 / 12, mode="float"))
    ds = resolve_dataset("div2k-720", tmp_path / "out")
    assert ds.image_ids() == ["0801"] and ds.premade_lr("0801", 4).shape == (180, 180, 3)
    with pytest.raises(UserError, match="divide 720"):
        prepare_div2k_720(tmp_path / "DIV2K_valid_HR", tmp_path / "out", scales=[7])
