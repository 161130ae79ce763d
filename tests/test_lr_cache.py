"""The generated-LR cache is keyed by content (the HR file's sha256), the recipe and the scale, never by a name.

Reproduces issue 9 item 2: a replaced image (same name) or the same catalogue name under another data root
used to get the LR cached for the old pixels.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.cli import run_cli
from asr_bench.data import imresize, read_image, resolve_dataset
from asr_bench.data.fingerprint import array_sha256, dataset_fingerprint, file_sha256
from asr_bench.protocols import get_protocol


def smooth_image(h, w, seed):
    rng = np.random.default_rng(seed)
    small = (rng.random((h // 4 + 2, w // 4 + 2, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def levels(lr):
    return (lr[0].permute(1, 2, 0) * 255).round().byte().numpy()


def replace_file(path, array):
    """Overwrite in place (same name), and move mtime on so that even a coarse clock sees a change."""
    before = path.stat().st_mtime_ns
    Image.fromarray(array).save(path)
    os.utime(path, ns=(before + 10 ** 9, before + 10 ** 9))


def test_file_sha256_is_the_sha256_of_the_bytes_and_follows_a_replacement(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(smooth_image(20, 24, 0)).save(path)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    replace_file(path, smooth_image(20, 24, 1))
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_persistent_index_is_used_by_later_processes_and_keyed_by_the_file_state(tmp_path, monkeypatch):
    from asr_bench import hashing

    path = tmp_path / "a.png"
    Image.fromarray(smooth_image(20, 24, 0)).save(path)
    truth = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path, index_dir=tmp_path / "idx") == truth
    monkeypatch.setattr(hashing, "_MEMO", {})  # a new process: only the index remembers
    monkeypatch.setattr(hashing, "sha256_of", lambda p: pytest.fail("hashed again"))
    assert file_sha256(path, index_dir=tmp_path / "idx") == truth
    monkeypatch.undo()
    monkeypatch.setattr(hashing, "_MEMO", {})
    replace_file(path, smooth_image(20, 24, 1))
    assert file_sha256(path, index_dir=tmp_path / "idx") == hashlib.sha256(path.read_bytes()).hexdigest() != truth


def test_dataset_fingerprint_lists_every_file_with_its_hash(tmp_path):
    root = tmp_path / "Set5"
    for i, name in enumerate(("x", "y")):
        (root / "HR").mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(16, 16, i)).save(root / "HR" / f"{name}.png")
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(smooth_image(8, 8, 5)).save(root / "LR_bicubic" / "X2" / "xx2.png")
    ds = resolve_dataset("set5", tmp_path)
    fp = dataset_fingerprint(ds, scales=(2, 3.5))
    assert fp["folder"] == str((root / "HR").resolve())
    assert fp["files"] == {f"{n}.png": hashlib.sha256((root / "HR" / f"{n}.png").read_bytes()).hexdigest()
                           for n in ("x", "y")}
    assert fp["lr"] == {"2": {"xx2.png": hashlib.sha256((root / "LR_bicubic" / "X2" / "xx2.png").read_bytes())
                              .hexdigest()}}
    expect = hashlib.sha256(json.dumps({"files": fp["files"], "lr": fp["lr"]}, sort_keys=True).encode())
    assert fp["digest"] == expect.hexdigest()
    replace_file(root / "HR" / "y.png", smooth_image(16, 16, 9))
    after = dataset_fingerprint(ds, scales=(2,))
    assert after["files"]["y.png"] == hashlib.sha256((root / "HR" / "y.png").read_bytes()).hexdigest()
    assert after["files"]["y.png"] != fp["files"]["y.png"] and after["digest"] != fp["digest"]


def test_embedded_images_are_fingerprinted_by_their_pixels():
    ds = resolve_dataset("embedded")
    fp = dataset_fingerprint(ds)
    image_id = ds.image_ids()[0]
    assert fp["files"][image_id] == array_sha256(ds.hr(image_id))
    assert len(fp["files"]) == len(ds.image_ids())


@pytest.mark.parametrize("name,scale", [("gsasr", 3.5), ("metasr", 5), ("liif", 6)])
def test_a_replaced_image_gets_a_fresh_lr(tmp_path, name, scale):
    folder = tmp_path / "imgs"
    folder.mkdir()
    path = folder / "pic.png"
    old, new = smooth_image(48, 60, 0), smooth_image(48, 60, 1)
    Image.fromarray(old).save(path)
    protocol = get_protocol(name)
    first, _ = protocol.lr_hr(resolve_dataset(str(folder)), "pic", scale, tmp_path / "cache")
    replace_file(path, new)
    lr, hr = protocol.lr_hr(resolve_dataset(str(folder)), "pic", scale, tmp_path / "cache")
    fresh, _ = protocol.lr_hr(resolve_dataset(str(folder)), "pic", scale, None)  # no cache at all
    assert torch.equal(lr, fresh) and not torch.equal(lr, first)
    assert np.array_equal(hr[0].permute(1, 2, 0).mul(255).round().byte().numpy(), new[:hr.shape[-2], :hr.shape[-1]])
    if name == "gsasr":  # GSASR's recipe, computed here from the new HR: uncropped imresize, crop floor(H/s)
        h, w = int(48 / 3.5), int(60 / 3.5)
        assert np.array_equal(levels(lr), imresize(read_image(path), scale=1 / 3.5, mode="float")[:h, :w])


def test_the_same_catalogue_name_under_a_second_data_root_scores_its_own_images(tmp_path, capsys):
    roots = [tmp_path / "root1", tmp_path / "root2"]
    for seed, root in enumerate(roots):
        (root / "Set5" / "HR").mkdir(parents=True)
        for i, name in enumerate(("p", "q")):
            Image.fromarray(smooth_image(40, 44, 10 * seed + i)).save(root / "Set5" / "HR" / f"{name}.png")
    config = tmp_path / "c.yml"
    config.write_text("""
methods: [bicubic]
datasets: [set5]
scales: [3.5]
metrics: [psnr]
device: cpu
profiling: {warmup: 0, repeats: 1, memory: false, flops: false}
visuals: {crop: 0}
""")

    def psnr_of(root, out, cache):
        argv = ["--config", str(config), "--no-progress", "--data-root", str(root), "--output", str(tmp_path / out),
                "--set", f"cache_dir={json.dumps(str(tmp_path / cache))}"]
        assert run_cli(argv) == 0, capsys.readouterr().err
        line = (tmp_path / out / "cases.jsonl").read_text().splitlines()[0]
        return json.loads(line)["metrics"]["psnr"]

    first = psnr_of(roots[0], "o1", "shared-cache")
    second = psnr_of(roots[1], "o2", "shared-cache")
    reference = psnr_of(roots[1], "o3", "empty-cache")  # nothing cached: LR made from root2's images
    assert second == reference and second != first
