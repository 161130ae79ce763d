"""Protocols: how LR/HR pairs are made, the border and colour rules, quantisation, and scoring."""

import hashlib
import numpy as np
import pytest
import torch
from PIL import Image

import asr_bench as ab
from asr_bench.data import imresize, read_image, resolve_dataset, to_tensor
from asr_bench.errors import UnknownName, UserError
from asr_bench.metrics import psnr, psnr_shave, ssim
from asr_bench.protocols import get_protocol, list_protocols


@pytest.fixture
def set5_ds(set5):
    return resolve_dataset("set5", set5.parent.parent)


def test_catalogue_of_protocols_and_labels():
    assert {"gsasr", "liif", "metasr", "rt4ksr", "ntire"} <= set(list_protocols())
    assert get_protocol("gsasr").label == "gsasr"
    assert get_protocol("gsasr", crop=4).label == "gsasr (crop=4)"
    assert get_protocol("liif", y_channel=False, crop=0).label == "liif (crop=0, y_channel=false)"
    with pytest.raises(UserError, match="allowed: crop"):
        get_protocol("gsasr", crops=4)
    with pytest.raises(UserError, match="integer"):
        get_protocol("gsasr", crop=-1)
    with pytest.raises(UnknownName, match="gsasr"):
        get_protocol("gsasrr")


@pytest.mark.parametrize("name,scale,dataset,border,use_y", [
    ("gsasr", 4, "set5", 4, True), ("gsasr", 3.5, "set5", 3, True), ("gsasr", 12, "set5", 8, True),
    ("gsasr", 4, "div2k-val", 4, True),
    ("liif", 4, "set5", 4, True), ("liif", 4, "div2k-val", 10, False), ("liif", 12, "div2k-val", 18, False),
    ("liif", 3.5, "set5", 4, True),
    ("metasr", 3.5, "set5", 4, True), ("metasr", 2.2, "div2k-val", 9, False),
    ("rt4ksr", 3, "set5", 0, True), ("ntire", 2, "set5", 4, False),
])
def test_border_and_colour_rules(name, scale, dataset, border, use_y):
    p = get_protocol(name)
    assert p.border(scale, dataset) == border and p.colour_is_y(dataset) == use_y


def test_overrides_win_over_the_rules():
    p = get_protocol("liif", crop=2, y_channel=True)
    assert p.border(4, "div2k-val") == 2 and p.colour_is_y("div2k-val")


def test_premade_lr_is_used_and_hr_cropped_to_it(set5_ds, set5):
    for name in ("gsasr", "liif"):
        lr, hr = get_protocol(name).lr_hr(set5_ds, "woman", 3, None)
        assert torch.equal(lr, to_tensor(read_image(set5 / "LR_bicubic" / "X3" / "womanx3.png")))
        assert torch.equal(hr, to_tensor(read_image(set5 / "HR" / "woman.png")[:342, :228]))


def test_gsasr_generates_missing_lr_like_its_script_and_caches_it(set5_ds, set5, tmp_path):
    hr_full = read_image(set5 / "HR" / "woman.png")  # 344 x 228
    p = get_protocol("gsasr")
    lr, hr = p.lr_hr(set5_ds, "woman", 3.5, tmp_path)
    expect = imresize(hr_full, scale=1 / 3.5, mode="float")[:98, :65]  # uncropped HR, then crop floor(H/s)
    assert np.array_equal((lr[0].permute(1, 2, 0) * 255).round().byte().numpy(), expect)
    assert hr.shape[-2:] == (343, 227) and torch.equal(hr, to_tensor(hr_full[:343, :227]))
    digest = hashlib.sha256((set5 / "HR" / "woman.png").read_bytes()).hexdigest()  # keyed by the HR's bytes
    cached = tmp_path / "lr" / "basicsr-float-v1" / "3.5" / f"{digest}.png"
    assert np.array_equal(read_image(cached), expect)
    cached.write_bytes(b"")  # a second call reads the cache (an empty file would be an error)
    with pytest.raises(UserError, match=digest):
        p.lr_hr(set5_ds, "woman", 3.5, tmp_path)


def test_integer_scale_without_premade_file_mod_crops_first(set5_ds, set5):
    hr_full = read_image(set5 / "HR" / "bird.png")  # 288 x 288
    lr, hr = get_protocol("metasr").lr_hr(set5_ds, "bird", 5, None)
    assert np.array_equal((lr[0].permute(1, 2, 0) * 255).round().byte().numpy(),
                          imresize(hr_full[:285, :285], scale=1 / 5, mode="uint8"))
    assert hr.shape[-2:] == (285, 285)


def test_liif_large_scales_use_pil_bicubic_on_its_crop(set5_ds, set5):
    hr_full = read_image(set5 / "HR" / "woman.png")  # 344 x 228 -> x6: lr 57 x 38, hr 342 x 228
    lr, hr = get_protocol("liif").lr_hr(set5_ds, "woman", 6, None)
    crop = hr_full[:342, :228]
    expect = np.asarray(Image.fromarray(crop).resize((38, 57), Image.BICUBIC))
    assert np.array_equal((lr[0].permute(1, 2, 0) * 255).round().byte().numpy(), expect)
    assert torch.equal(hr, to_tensor(crop))
    assert get_protocol("liif").output_size((57, 38), (342, 228), 6) == (342, 228)


def test_liif_ignores_premade_files_at_x6_and_up(tmp_path, set5):
    (tmp_path / "HR").mkdir()
    (tmp_path / "HR" / "head.png").write_bytes((set5 / "HR" / "head.png").read_bytes())
    (tmp_path / "LR_bicubic" / "X6").mkdir(parents=True)
    wrong = (set5 / "LR_bicubic" / "X4" / "headx4.png").read_bytes()
    (tmp_path / "LR_bicubic" / "X6" / "headx6.png").write_bytes(wrong)
    folder = resolve_dataset(str(tmp_path))
    lr, _ = get_protocol("liif").lr_hr(folder, "head", 6, None)
    assert lr.shape[-2:] == (46, 46)  # PIL from HR, not the 70x70 file
    with pytest.raises(UserError, match="is 70x70 .* needs 46x46"):  # gsasr takes the file: the wrong size
        get_protocol("gsasr").lr_hr(folder, "head", 6, None)


def test_liif_matlab_scales_without_premade_files_reproduce_them(tmp_path, set5):
    (tmp_path / "HR").mkdir()
    (tmp_path / "HR" / "head.png").write_bytes((set5 / "HR" / "head.png").read_bytes())
    folder = resolve_dataset(str(tmp_path))
    lr, _ = get_protocol("liif").lr_hr(folder, "head", 3, None)
    assert torch.equal(lr, to_tensor(read_image(set5 / "LR_bicubic" / "X3" / "headx3.png")))


def test_finalize_quantises_only_when_the_protocol_does():
    x = torch.tensor([[[[-0.2, 0.5013, 1.3]]]]).expand(1, 3, 1, 3)
    q = get_protocol("gsasr").finalize(x)
    assert torch.equal(q * 255, (q * 255).round()) and q.min() == 0 and q.max() == 1
    f = get_protocol("liif").finalize(x)
    assert f[0, 0, 0, 1] == pytest.approx(0.5013) and f.min() == 0 and f.max() == 1
    assert get_protocol("liif", quantize=True).finalize(x)[0, 0, 0, 1] * 255 == pytest.approx(128)


def test_score_uses_the_protocol_formulas(set5_ds):
    bicubic = ab.build_model("bicubic")
    for name in ("gsasr", "liif"):
        p = get_protocol(name)
        lr, hr = p.lr_hr(set5_ds, "butterfly", 4, None)
        sr = p.finalize(bicubic.upscale(lr, size=p.output_size(lr.shape[-2:], hr.shape[-2:], 4)))
        values, notes = p.score(sr, hr, 4, ["psnr", "ssim"], "set5")
        expect = psnr(sr, hr, 4) if name == "gsasr" else psnr_shave(sr, hr, 4)
        assert values["psnr"] == expect and values["ssim"] == ssim(sr, hr, 4) and notes == {}
    with pytest.raises(UserError, match="target"):
        p.score(sr[..., :-1], hr, 4, ["psnr"], "set5")


@pytest.mark.parametrize("scale,psnr_pub,ssim_pub", [(2, 33.66, 0.9299), (3, 30.39, 0.8682), (4, 28.42, 0.8104)])
def test_bicubic_on_set5_matches_the_published_baseline(set5_ds, scale, psnr_pub, ssim_pub):
    """The bicubic row every SR paper prints for Set5 (e.g. EDSR/RCAN tables); those used MATLAB's
    uint8-rounded Y, hence a few hundredths of a dB of slack."""
    p, model = get_protocol("gsasr"), ab.build_model("bicubic")
    ps, ss = [], []
    for image in set5_ds.image_ids():
        lr, hr = p.lr_hr(set5_ds, image, scale, None)
        sr = p.finalize(model.upscale(lr, size=tuple(hr.shape[-2:])))
        values, _ = p.score(sr, hr, scale, ["psnr", "ssim"], "set5")
        ps.append(values["psnr"])
        ss.append(values["ssim"])
    assert np.mean(ps) == pytest.approx(psnr_pub, abs=0.03)
    assert np.mean(ss) == pytest.approx(ssim_pub, abs=0.0012)


@pytest.mark.slow
def test_liif_protocol_reproduces_the_official_liif_number(set5_ds, liif_checkpoint):
    """docs/methods/liif.md §6.5: the official LIIF code + edsr-baseline-liif.pth on Set5 x4 gives 32.2375 dB (its
    float32 PSNR; ours is float64). ~6 min on 2 CPU cores."""
    if "liif" not in ab.list_methods():
        pytest.skip("needs the liif method")
    model = ab.build_model("liif", "edsr-baseline", checkpoint=str(liif_checkpoint))
    p, values = get_protocol("liif"), []
    for image in set5_ds.image_ids():
        lr, hr = p.lr_hr(set5_ds, image, 4, None)
        sr = p.finalize(model.upscale(lr, size=p.output_size(lr.shape[-2:], hr.shape[-2:], 4), clamp=False))
        values.append(p.score(sr, hr, 4, ["psnr"], "set5")[0]["psnr"])
    assert np.mean(values) == pytest.approx(32.2375, abs=2e-4)


def test_rt4ksr_crops_lr_to_even_sides_and_hr_to_lr_times_scale(set5_ds, set5):
    """RT4KSR's benchmark loader: butterfly x3 LR is 85x85 on disk -> 84x84, HR -> 252x252 (top-left)."""
    lr, hr = get_protocol("rt4ksr").lr_hr(set5_ds, "butterfly", 3)
    disk_lr = read_image(set5 / "LR_bicubic" / "X3" / "butterflyx3.png")
    disk_hr = read_image(set5 / "HR" / "butterfly.png")
    assert disk_lr.shape[:2] == (85, 85)
    assert tuple(lr.shape[-2:]) == (84, 84) and tuple(hr.shape[-2:]) == (252, 252)
    assert torch.equal(lr, to_tensor(disk_lr[:84, :84]))
    assert torch.equal(hr, to_tensor(disk_hr[:252, :252]))


def _package_with_wrong_lr(tmp_path):
    """An EDSR-layout dataset whose LR_bicubic/X2 holds the x4 files (a copy mistake)."""
    root = tmp_path / "Set5"
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    rng = np.random.default_rng(0)
    hr = (rng.random((40, 44, 3)) * 255).astype(np.uint8)
    Image.fromarray(hr).save(root / "HR" / "pic.png")
    Image.fromarray(imresize(hr, scale=1 / 4, mode="uint8")).save(root / "LR_bicubic" / "X2" / "picx2.png")
    return root


@pytest.mark.parametrize("name", ["gsasr", "liif", "rt4ksr"])
def test_premade_lr_of_the_wrong_size_is_a_one_line_error(tmp_path, name):
    root = _package_with_wrong_lr(tmp_path)
    ds = resolve_dataset("set5", tmp_path)
    with pytest.raises(UserError) as info:
        get_protocol(name).lr_hr(ds, "pic", 2, None)
    message = str(info.value)
    assert str(root / "LR_bicubic" / "X2" / "picx2.png") in message and "\n" not in message
    assert "is 10x11" in message and "needs 20x22" in message  # found, and floor(40/2) x floor(44/2) expected


def test_premade_lr_of_the_wrong_size_stops_the_run_with_exit_2(tmp_path, capsys):
    from asr_bench.cli import run_cli

    _package_with_wrong_lr(tmp_path)
    config = tmp_path / "c.yml"
    config.write_text(f"methods: [bicubic]\ndatasets: [set5]\nscales: [2]\nmetrics: [psnr]\ndevice: cpu\n"
                      f"profiling: {{warmup: 0, repeats: 1, memory: false, flops: false}}\n"
                      f"data_root: {tmp_path}\noutput: {tmp_path / 'out'}\n")
    assert run_cli(["--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: premade LR ") and err.count("\n") == 1 and "picx2.png" in err
