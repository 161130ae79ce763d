"""Dataset catalogue: layout detection on folders made here, name resolution order, embedded images, errors."""
import numpy as np
import pytest
import skimage.data

from asr_bench.data import list_datasets, resolve_dataset, write_image
from asr_bench.data.catalogue import EMBEDDED_SIZE, detect_layout
from asr_bench.errors import MissingFile, UnknownName, UserError


def img(seed: int, h: int = 12, w: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_names():
    assert list_datasets() == ["set5", "set14", "b100", "urban100", "manga109", "div2k-val", "div2k-720",
                               "lsdir-val", "embedded"]


def test_benchmark_layout(tmp_path):
    root = tmp_path / "benchmark" / "Set14"
    write_image(root / "HR" / "baboon.png", img(0))
    write_image(root / "HR" / "bridge.png", img(1))
    write_image(root / "LR_bicubic" / "X2" / "baboonx2.png", img(2, 6, 5))
    ds = resolve_dataset("set14", tmp_path)
    assert ds.name == "set14" and ds.layout.kind == "benchmark" and ds.image_ids() == ["baboon", "bridge"]
    assert np.array_equal(ds.hr("bridge"), img(1))
    assert np.array_equal(ds.premade_lr("baboon", 2), img(2, 6, 5))
    assert np.array_equal(ds.premade_lr("baboon", 2.0), img(2, 6, 5))
    assert ds.premade_lr("bridge", 2) is None and ds.premade_lr("baboon", 3) is None
    assert ds.premade_lr("baboon", 2.5) is None and ds.premade_lr("baboon", (2, 3)) is None
    with pytest.raises(UnknownName, match="baboon"):
        ds.hr("baboom")


def test_basicsr_div2k_and_720_layouts(tmp_path):
    write_image(tmp_path / "B100" / "GTmod12" / "3096.png", img(0))
    write_image(tmp_path / "B100" / "LRbicx4" / "3096.png", img(1, 3, 2))
    write_image(tmp_path / "DIV2K" / "DIV2K_valid_HR" / "0801.png", img(2))
    write_image(tmp_path / "DIV2K" / "DIV2K_valid_LR_bicubic" / "X3" / "0801x3.png", img(3, 4, 3))
    write_image(tmp_path / "DIV2K" / "DIV2K_GT720" / "0801.png", img(4))
    write_image(tmp_path / "DIV2K" / "DIV2K_LR720" / "X2" / "0801.png", img(5, 6, 5))
    b100 = resolve_dataset("b100", tmp_path)
    assert b100.layout.kind == "basicsr" and np.array_equal(b100.premade_lr("3096", 4), img(1, 3, 2))
    div2k = resolve_dataset("div2k-val", tmp_path)
    assert div2k.layout.kind == "div2k" and np.array_equal(div2k.premade_lr("0801", 3), img(3, 4, 3))
    d720 = resolve_dataset("div2k-720", tmp_path)
    assert d720.layout.kind == "div2k-720" and np.array_equal(d720.hr("0801"), img(4))
    assert np.array_equal(d720.premade_lr("0801", 2), img(5, 6, 5))


def test_plain_folder_and_folder_names(tmp_path):
    write_image(tmp_path / "mine" / "b.png", img(0))
    write_image(tmp_path / "mine" / "a.bmp", img(1))
    (tmp_path / "mine" / "notes.txt").write_text("x")
    ds = resolve_dataset(str(tmp_path / "mine"))
    assert ds.layout.kind == "plain" and ds.name == "mine" and ds.image_ids() == ["a", "b"]
    assert ds.premade_lr("a", 2) is None and ds.cache_key.startswith("mine-")
    assert detect_layout(tmp_path) is None  # only a subfolder, no images
    with pytest.raises(UserError, match="no images"):
        resolve_dataset(str(tmp_path))


def test_lookup_order_root_then_env_then_cwd(tmp_path, monkeypatch):
    for where, seed in (("a", 0), ("b", 1), ("c/datasets", 2)):
        write_image(tmp_path / where / "Set5" / "HR" / "x.png", img(seed))
    monkeypatch.chdir(tmp_path / "c")
    monkeypatch.setenv("ASR_BENCH_DATA", str(tmp_path / "b"))
    assert np.array_equal(resolve_dataset("set5", tmp_path / "a").hr("x"), img(0))
    assert np.array_equal(resolve_dataset("set5").hr("x"), img(1))
    monkeypatch.delenv("ASR_BENCH_DATA")
    assert np.array_equal(resolve_dataset("Set5").hr("x"), img(2))


def test_missing_and_unknown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASR_BENCH_DATA", raising=False)
    with pytest.raises(UserError, match=r"looked in: .*Urban100.*benchmark.tar"):
        resolve_dataset("urban100", tmp_path / "data")
    with pytest.raises(UnknownName, match="Did you mean 'urban100'"):
        resolve_dataset("urban10")
    with pytest.raises(MissingFile, match="nowhere"):
        resolve_dataset("./nowhere")


def test_embedded_is_skimage_centre_crops():
    ds = resolve_dataset("embedded")
    ids = ds.image_ids()
    assert len(ids) >= 3
    for image_id in ids:
        full = getattr(skimage.data, image_id)()
        h, w = full.shape[:2]
        t, l = (h - EMBEDDED_SIZE) // 2, (w - EMBEDDED_SIZE) // 2
        assert np.array_equal(ds.hr(image_id), full[t:t + EMBEDDED_SIZE, l:l + EMBEDDED_SIZE, :3])
