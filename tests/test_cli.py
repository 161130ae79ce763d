"""The command line: every subcommand once, and every user mistake as one line on stderr with exit code 2."""
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asr_bench.cli import run_cli
from asr_bench.data import read_image, to_tensor
from asr_bench.errors import UserError
from asr_bench.metrics import psnr, ssim

REPO = Path(__file__).resolve().parent.parent


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_image(h, w, seed):
    rng = np.random.default_rng(seed)
    small = (rng.random((h // 4 + 2, w // 4 + 2, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "imgs"
    for i, (h, w) in enumerate([(24, 32), (20, 20)]):
        save(images / f"im{i}.png", random_image(h, w, i))
    return images


def config_file(tmp_path, text):
    path = tmp_path / "c.yml"
    path.write_text(text)
    return str(path)


def error_of(capsys, argv):
    code = run_cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_run_prints_a_summary_and_writes_the_store(tmp_path, folder, capsys):
    path = config_file(tmp_path, f"""
methods: [bicubic]
datasets: [{folder}]
scales: [2]
metrics: [psnr]
profiling: {{warmup: 0, repeats: 1, memory: false, flops: false}}
cache_dir: {tmp_path / 'cache'}
""")
    assert run_cli(["--config", path, "--output", str(tmp_path / "out"), "--no-progress", "--set", "visuals.crop=8"]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "imgs" in out and "x2" in out
    for name in ("run.json", "cases.jsonl", "cases.csv", "images.jsonl", "images.csv", "report.html"):
        assert (tmp_path / "out" / name).is_file(), name
    assert run_cli(["report", str(tmp_path / "out")]) == 0
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize("argv_tail,expect", [
    (["--set", "methods=[bicubc]"], "Did you mean 'bicubic'"),
    (["--set", "methods=[{method: liif, encoder: edsr-tiny}]"], "edsr-baseline"),
    (["--set", "datasets=[set55]"], "Did you mean 'set5'"),
    (["--set", "datasets=[./no/such/folder]"], "no/such/folder"),
    (["--set", "scales=[1]"], "greater than 1"),
    (["--set", "methods=[{method: liif, checkpoint: missing.pth}]"], "missing.pth"),
    (["--set", "protocol=gsasrr"], "Did you mean 'gsasr'"),
    (["--set", "metrics=[psnrr]"], "Did you mean 'psnr'"),
    (["--set", "profiling.repeat=3"], "profiling.repeats"),
    (["--bogus-flag"], "unrecognized arguments"),
])
def test_user_mistakes_are_one_line_with_exit_code_2(tmp_path, folder, capsys, argv_tail, expect):
    path = config_file(tmp_path, f"methods: [bicubic]\ndatasets: [{folder}]\nscales: [2]\n")
    err = error_of(capsys, ["--config", path, "--output", str(tmp_path / "out"), *argv_tail])
    assert expect in err


def test_malformed_yaml_and_missing_config(tmp_path, capsys):
    assert "line 2" in error_of(capsys, ["--config", config_file(tmp_path, "methods: [bicubic\nscales: [2]\n")])
    assert "quick, " in error_of(capsys, ["--config", str(tmp_path / "none.yml")])


def test_corrupt_image_is_a_user_error_naming_the_file(tmp_path, folder, capsys):
    (folder / "broken.png").write_bytes(b"not a png at all")
    path = config_file(tmp_path, f"""
methods: [bicubic]
datasets: [{folder}]
scales: [2]
profiling: {{warmup: 0, repeats: 1, memory: false}}
cache_dir: {tmp_path / 'cache'}
""")
    err = error_of(capsys, ["--config", path, "--output", str(tmp_path / "out"), "--no-progress"])
    assert "broken.png" in err
    # the same mistake met inside a case worker process (CPU memory profiling) reaches the user the same way
    err = error_of(capsys, ["--config", path, "--output", str(tmp_path / "out2"), "--no-progress",
                            "--set", "profiling.memory=true"])
    assert "broken.png" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(UserError):
        run_cli(["--config", str(tmp_path / "none.yml"), "--debug"])


@pytest.mark.slow
def test_console_entry_exits_2_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "run_bench.py"), "--config", str(tmp_path / "x.yml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: config file not found")
    assert "Traceback" not in done.stderr


def test_score_equals_the_metrics_on_each_pair(tmp_path, capsys):
    gt_dir, sr_dir = tmp_path / "gt", tmp_path / "sr"
    for i in range(2):
        gt = random_image(40, 36, i)
        noisy = np.clip(gt.astype(int) + np.random.default_rng(9 + i).integers(-9, 10, gt.shape), 0, 255)
        save(gt_dir / f"p{i}.png", np.concatenate([gt, gt[:3]], axis=0))  # HR not mod-cropped: 3 rows more
        save(sr_dir / f"p{i}_x4.png", noisy.astype(np.uint8))
    assert run_cli(["score", "--sr", str(sr_dir), "--gt", str(gt_dir), "--scale", "4", "--suffix", "_x4"]) == 0
    result = json.loads(capsys.readouterr().out)
    for row in result["images"]:
        sr = to_tensor(read_image(sr_dir / f"{row['image']}_x4.png"))
        gt = to_tensor(read_image(gt_dir / f"{row['image']}.png"))[..., :40, :]
        assert row["psnr"] == pytest.approx(psnr(sr, gt, crop=4, y_channel=True), abs=1e-9)
        assert row["ssim"] == pytest.approx(ssim(sr, gt, crop=4, y_channel=True), abs=1e-9)
    assert result["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["images"]]))
    out = tmp_path / "scores.csv"
    assert run_cli(["score", "--sr", str(sr_dir), "--gt", str(gt_dir), "--scale", "4", "--suffix", "_x4",
                    "--format", "csv", "--out", str(out)]) == 0
    table = list(csv.reader(io.StringIO(out.read_text())))
    assert table[0] == ["image", "psnr", "ssim"] and table[-1][0] == "mean" and len(table) == 4
    assert "no SR image" in error_of(capsys, ["score", "--sr", str(sr_dir), "--gt", str(gt_dir), "--scale", "4"])


def test_prepare_writes_lr_folders(tmp_path, folder, capsys):
    assert run_cli(["prepare", "--hr", str(folder), "--scales", "2", "4", "--out", str(tmp_path / "p")]) == 0
    assert read_image(tmp_path / "p/LR_bicubic/X4/im0x4.png").shape == (6, 8, 3)
    assert read_image(tmp_path / "p/LR_bicubic/X2/im1x2.png").shape == (10, 10, 3)
    assert "greater than 1" in error_of(capsys, ["prepare", "--hr", str(folder), "--scales", "1", "--out", "x"])
    assert "not found" in error_of(capsys, ["prepare", "--hr", str(tmp_path / "nope"), "--out", "x"])


def test_list_and_doctor(capsys):
    assert run_cli(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("bicubic", "edsr-baseline", "set5", "gsasr", "psnr", "lpips"):
        assert word in out
    assert run_cli(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "lpips" in out and "embedded: found" in out


def test_bench_ops_delegates_its_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(["bench-ops", "--help"])
    assert info.value.code == 0 and "bench-ops" in capsys.readouterr().out
