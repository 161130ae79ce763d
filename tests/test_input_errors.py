"""Issue 9 list 7: each of these used to end in a traceback, a per-case error or a silent misreading; each
is now one line on stderr with exit code 2 (the CLI contract of tests/test_cli.py).

Unwritable places: the tests run as root here, and root writes into chmod 0o555 folders, so a read-only or
full disk is simulated by making `os.replace` (the rename every store/report write ends with) raise the
errno the kernel would give (EROFS, EACCES, ENOSPC); the chmod variants run only for a non-root user.
"""
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.cli import run_cli

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    save(folder / "a.png", noise(20, 24))
    return folder


def config(tmp_path, body, name="c.yml"):
    path = tmp_path / name
    path.write_text("methods: [bicubic]\nmetrics: [psnr]\ndevice: cpu\nvisuals: {crop: 0}\n"
                    "profiling: {warmup: 0, repeats: 1, memory: false, flops: false}\n"
                    f"cache_dir: {tmp_path / 'cache'}\n" + body)
    return str(path)


def error_of(capsys, argv):
    code = run_cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def run_argv(path, out):
    return ["--config", path, "--no-progress", "--output", str(out)]


# ---------------------------------------------------------------- sizes and scales


def test_an_image_smaller_than_the_scale(tmp_path, capsys):
    save(tmp_path / "tiny" / "t.png", noise(3, 3))
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{tmp_path / 'tiny'}]\nscales: [4]\n"),
                                    tmp_path / "out"))
    assert "t.png is 3x3" in err and "too small for scale 4" in err and "0x0" in err


@pytest.mark.parametrize("scale", ["1e9", "1000000000", "1.0e+9"])
def test_a_huge_scale(tmp_path, images, capsys, scale):
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\nscales: [{scale}]\n"), tmp_path / "out"))
    assert "a.png is 20x24" in err and "too small for scale 1e+09" in err


def test_an_image_whose_target_is_all_border(tmp_path, capsys):
    save(tmp_path / "small" / "s.png", noise(8, 8))  # x4: target 8x8, border 4 per side
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{tmp_path / 'small'}]\nscales: [4]\n"),
                                    tmp_path / "out"))
    assert "s.png" in err and "all border" in err and "4 px" in err


def test_ssim_of_an_image_smaller_than_its_window_is_na_with_a_note():
    from asr_bench.protocols import get_protocol

    sr, hr = torch.rand(1, 3, 14, 14), torch.rand(1, 3, 14, 14)  # border 2 leaves 10x10 < 11x11
    values, notes = get_protocol("gsasr").score(sr, hr, 2, ["psnr", "ssim"])
    assert values["ssim"] is None and "11x11" in notes["ssim"] and values["psnr"] is not None


@pytest.mark.parametrize("scales,expect", [("[[2, x]]", "not a number"), ("[[2, null]]", "not a number"),
                                           ("[[2, 3, 4]]", "not a number"), ("[.inf]", "not a number")])
def test_malformed_scales(tmp_path, images, capsys, scales, expect):
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\nscales: {scales}\n"), tmp_path / "o"))
    assert "scales[0]" in err and expect in err


# ---------------------------------------------------------------- the config file


def test_a_config_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.yml"
    path.write_bytes("methods: [bicubic]\nname: caf\xe9\n".encode("latin-1"))
    err = error_of(capsys, ["--config", str(path)])
    assert "not UTF-8" in err and "0xe9" in err


@pytest.mark.parametrize("body,key", [("scales: [2]\nscales: [3]\n", "scales"),
                                      ("tiling: {tile: 8, tile: 16}\n", "tile")])
def test_duplicate_yaml_keys(tmp_path, images, capsys, body, key):
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\n" + body), tmp_path / "o"))
    assert f"key '{key}' is given twice" in err


def test_an_empty_dataset_list_says_so(tmp_path, capsys):
    err = error_of(capsys, run_argv(config(tmp_path, "datasets: []\n"), tmp_path / "o"))
    assert "'datasets' is empty" in err and "cases.jsonl" not in err


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_mps_where_there_is_none(tmp_path, images, capsys):
    err = error_of(capsys, [*run_argv(config(tmp_path, f"datasets: [{images}]\n"), tmp_path / "o"), "--device", "mps"])
    assert "'mps'" in err and "device=cpu" in err


@pytest.mark.parametrize("methods,found", [("5", "got int"), ("[5]", "holding int"), ("'bicubic'", "got str")])
def test_a_plugin_whose_methods_is_not_a_list_of_specs(tmp_path, images, capsys, methods, found):
    plugin = tmp_path / f"bad_plugin_{len(methods)}.py"  # plugins are cached by file stem within a process
    plugin.write_text(f"METHODS = {methods}\n")
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\nplugins: [{plugin}]\n"), tmp_path / "o"))
    assert plugin.name in err and "METHODS must be a list of MethodSpec" in err and found in err


def test_a_broken_run_json_on_rerun_is_rewritten_from_the_database(tmp_path, images, capsys):
    """run.json is an exported view: a damaged one is not read, the rerun works and writes it anew."""
    path = config(tmp_path, f"datasets: [{images}]\nscales: [2]\n")
    assert run_cli(run_argv(path, tmp_path / "out")) == 0
    (tmp_path / "out" / "run.json").write_text('{"name": "c", ')  # cut short by hand or by a tool
    assert run_cli(run_argv(path, tmp_path / "out")) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["name"] == "c"


# ---------------------------------------------------------------- score / prepare arguments


def test_score_out_is_a_folder(tmp_path, images, capsys):
    err = error_of(capsys, ["score", "--sr", str(images), "--gt", str(images), "--scale", "2", "--out", str(tmp_path)])
    assert "is a folder" in err and "scores.json" in err


@pytest.mark.parametrize("scale", ["inf", "nan", "1e400"])
@pytest.mark.parametrize("protocol", ["liif", "gsasr"])
def test_score_with_an_infinite_scale(images, capsys, scale, protocol):
    err = error_of(capsys, ["score", "--sr", str(images), "--gt", str(images), "--scale", scale, "--protocol", protocol])
    assert "finite number greater than 1" in err


@pytest.mark.parametrize("scale", ["inf", "nan"])
def test_prepare_with_an_infinite_scale(tmp_path, images, capsys, scale):
    err = error_of(capsys, ["prepare", "--hr", str(images), "--scales", scale, "--out", str(tmp_path / "p")])
    assert "finite number greater than 1" in err


def test_prepare_out_is_a_file(tmp_path, images, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    err = error_of(capsys, ["prepare", "--hr", str(images), "--out", str(target)])
    assert "file.txt is a file, not a folder" in err and target.read_text() == "mine"


# ---------------------------------------------------------------- unwritable output places


def failing_replace(monkeypatch, under, code):
    """os.replace into `under` fails as the kernel would (read-only filesystem, no permission, disk full)."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(Path(dst).resolve()).startswith(str(Path(under).resolve())):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", replace)


def test_run_output_is_a_file(tmp_path, images, capsys):
    (tmp_path / "taken").write_text("mine")
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\n"), tmp_path / "taken"))
    assert "is a file, not a folder" in err and (tmp_path / "taken").read_text() == "mine"


def test_run_output_under_a_file(tmp_path, images, capsys):
    (tmp_path / "taken").write_text("mine")
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\n"), tmp_path / "taken" / "run"))
    assert "cannot write" in err and "ENOTDIR" in err


@pytest.mark.parametrize("code,expect", [(errno.EROFS, "read-only"), (errno.EACCES, "permissions"),
                                         (errno.ENOSPC, "free some space")])
def test_run_into_a_read_only_unwritable_or_full_folder(tmp_path, images, capsys, monkeypatch, code, expect):
    failing_replace(monkeypatch, tmp_path / "out", code)
    err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\n"), tmp_path / "out"))
    assert "cannot write " + str(tmp_path / "out") in err and expect in err and errno.errorcode[code] in err


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; the monkeypatched variant covers it")
def test_run_into_a_chmod_read_only_folder(tmp_path, images, capsys):
    (tmp_path / "out").mkdir()
    os.chmod(tmp_path / "out", 0o555)
    try:
        err = error_of(capsys, run_argv(config(tmp_path, f"datasets: [{images}]\n"), tmp_path / "out"))
    finally:
        os.chmod(tmp_path / "out", 0o755)
    assert "cannot write" in err and "EACCES" in err


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_report_into_a_read_only_or_full_folder(tmp_path, images, capsys, monkeypatch, code):
    assert run_cli(run_argv(config(tmp_path, f"datasets: [{images}]\nscales: [2]\n"), tmp_path / "out")) == 0
    capsys.readouterr()
    failing_replace(monkeypatch, tmp_path / "out", code)
    err = error_of(capsys, ["report", str(tmp_path / "out")])
    assert "cannot write " + str(tmp_path / "out") in err and errno.errorcode[code] in err


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; the monkeypatched variant covers it")
def test_report_into_a_chmod_read_only_folder(tmp_path, images, capsys):
    assert run_cli(run_argv(config(tmp_path, f"datasets: [{images}]\nscales: [2]\n"), tmp_path / "out")) == 0
    capsys.readouterr()
    os.chmod(tmp_path / "out", 0o555)
    try:
        err = error_of(capsys, ["report", str(tmp_path / "out")])
    finally:
        os.chmod(tmp_path / "out", 0o755)
    assert "cannot write" in err
