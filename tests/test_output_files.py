"""What we write besides the store: no temp files left after a failed or killed report render, and strict
JSON (no NaN/Infinity tokens) wherever we dump JSON (issue 9 list 8)."""
import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asr_bench import atomic
from asr_bench.cli import run_cli
from asr_bench.config import parse_config
from asr_bench.errors import UserError
from asr_bench.jsontext import dumps
from asr_bench.report import render_report
from asr_bench.report.html import TEMP_PREFIX


def strict_loads(text):
    def refuse(token):
        raise ValueError(f"non-JSON token {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def run_dir(tmp_path, images, capsys):
    config = tmp_path / "c.yml"
    config.write_text(f"methods: [bicubic]\ndatasets: [{images}]\nscales: [2]\nmetrics: [psnr]\ndevice: cpu\n"
                      "profiling: {warmup: 0, repeats: 1, memory: false, flops: false}\nvisuals: {crop: 8}\n"
                      f"cache_dir: {tmp_path / 'cache'}\n")
    assert run_cli(["--config", str(config), "--no-progress", "--output", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    return tmp_path / "run"


def leftovers(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.name.startswith(TEMP_PREFIX) or ".tmp" in p.name)


def test_a_render_that_fails_on_a_full_disk_leaves_no_temp_files(run_dir, monkeypatch):
    before = (run_dir / "report.html").read_bytes()
    real = os.replace

    def full(src, dst, *args, **kwargs):
        if Path(dst).name == "report.html":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        render_report(run_dir)
    assert leftovers(run_dir) == []
    assert (run_dir / "report.html").read_bytes() == before  # the old report is intact


def test_temp_files_of_a_killed_render_are_removed_and_user_files_kept(run_dir):
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [run_dir / f"{TEMP_PREFIX}{int(dead.stdout)}-9@{host}@report.html.ab12.tmp",
             run_dir / "tables" / f"{TEMP_PREFIX}{int(dead.stdout)}-9@{host}@accuracy.md.cd34.tmp"]
    start = atomic.process_start(os.getpid())
    live = run_dir / f"{TEMP_PREFIX}{os.getpid()}-{start}@{host}@report.html.ef56.tmp"  # a render in progress
    for path in (*stale, live):
        path.write_text("half a report")
    mine = [run_dir / ".notes.tmp", run_dir / "draft.tmp"]
    for path in mine:
        path.write_text("the user's")
    render_report(run_dir)
    assert not any(p.exists() for p in stale) and live.exists()
    assert all(p.read_text() == "the user's" for p in mine)
    live.unlink()
    assert sorted(leftovers(run_dir)) == sorted(p.name for p in mine)


def test_score_of_identical_images_writes_null_and_a_note_not_infinity(images, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert run_cli(["score", "--sr", str(images), "--gt", str(images), "--scale", "2", "--out", str(out)]) == 0
    result = strict_loads(out.read_text())
    assert [row["psnr"] for row in result["images"]] == [None, None]
    assert [row["ssim"] for row in result["images"]] == [1.0, 1.0]
    assert result["mean"]["psnr"] is None and "inf" in result["notes"]["psnr"]
    assert result["mean"]["ssim"] == 1.0


def test_score_of_identical_images_reads_inf_with_a_note_in_csv_and_on_the_console(images, tmp_path, capsys):
    """A user met an empty PSNR cell: an SR equal to its GT has zero error, so its PSNR is +inf (and the mean too)."""
    assert run_cli(["score", "--sr", str(images), "--gt", str(images), "--scale", "2", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    table = [line.split(",") for line in captured.out.splitlines()]
    assert table[0] == ["image", "psnr", "ssim"]
    assert [row[1] for row in table[1:]] == ["inf", "inf", "inf"]  # two images, then the mean
    assert all(float(row[1]) == float("inf") for row in table[1:])
    assert "note: psnr: inf on image" in captured.err and "SR equals GT" in captured.err


def test_json_helper_writes_null_for_every_non_finite_number():
    text = dumps({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": {"d": (2.0, float("nan"))}})
    assert strict_loads(text) == {"a": None, "b": [None, None, 1.5], "c": {"d": [2.0, None]}}


@pytest.mark.parametrize("raw", [{"methods": [{"method": "bicubic", "kwargs": {"x": float("nan")}}]},
                                 {"methods": ["bicubic"], "protocol": {"name": "gsasr", "crop": float("inf")}}])
def test_non_finite_free_form_config_values_are_refused(raw):
    with pytest.raises(UserError, match="only finite numbers"):
        parse_config(raw)
