"""`asr-bench reproduce`: the LIIF Set5 rows reproduce the official code's numbers (37.9877 / 34.3997 / 32.2375 dB,
docs/methods/liif.md §6.5, asr_bench/published/reference.csv) with exit 0; a different checkpoint exits 1 naming
the rows outside the published precision; with nothing in place, one message lists everything missing."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from asr_bench import weights
from asr_bench.cli import run_cli
from asr_bench.report.published import PublishedRow
from asr_bench.reproduce import Comparison, compare, tables

REPO = Path(__file__).resolve().parent.parent
FILE = "edsr-baseline-liif.pth"


@pytest.fixture(autouse=True)
def no_user_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("ASR_BENCH_DATA", str(tmp_path / "no-data"))


def test_every_paper_config_is_a_table_and_list_names_them(capsys):
    found = tables()
    papers = sorted(p.stem.replace("_", "-") for p in (REPO / "asr_bench" / "configs" / "paper").glob("*.yml"))
    assert set(papers) <= set(found) and "liif-set5" in found
    assert run_cli(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^{name}\s", out, re.MULTILINE) for name in found)


def test_nothing_in_place_is_one_message_listing_all_that_is_missing(tmp_path, capsys):
    code = run_cli(["reproduce", "liif-set5", "--data-root", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "2 thing(s) missing" in err
    assert "`asr-bench weights fetch liif.edsr-baseline`" in err           # the weights, with the command
    assert "dataset set5" in err and "benchmark.tar" in err and "--data-root" in err   # the data, with where
    assert not (tmp_path / "r").exists()


def test_a_number_is_held_to_the_precision_it_was_printed_with():
    row = lambda value, places, kind="published": PublishedRow(  # noqa: E731
        "liif", "edsr-baseline", "set5", "4", "liif", "psnr", value, "s", places=places, kind=kind)
    case = SimpleNamespace(status="ok", label="L", method="liif", encoder="edsr-baseline", dataset="set5", scale="4",
                           protocol="liif", metrics={"psnr": 32.23754})
    (only,), _ = compare([case], [row(32.31, 2), row(32.2375, 4, "reference")])
    assert only.kind == "reference" and only.within                  # the reference wins where both exist
    assert Comparison("L", "set5", "4", "psnr", 32.23744, 32.2375, 4, "reference", "").within is False
    assert Comparison("L", "set5", "4", "psnr", 32.315, 32.31, 2, "published", "").within is True
    assert Comparison("L", "set5", "4", "psnr", 32.3151, 32.31, 2, "published", "").within is False


def _reproduce(tmp_path: Path, set5: Path, weights_dir: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           weights.ENV: str(tmp_path / "empty-cache"), "HF_HUB_CACHE": str(tmp_path / "empty-hf"),
           "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "asr_bench", "reproduce", "liif-set5", "--data-root",
                           str(set5.parent.parent), "--checkpoint-dir", str(weights_dir), "-o", str(tmp_path / "run"),
                           "--device", "cpu", "--no-progress"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1800)


@pytest.mark.slow
def test_reproduce_liif_set5_gives_the_official_numbers_and_exit_0(tmp_path, set5, liif_checkpoint):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / FILE).symlink_to(liif_checkpoint)
    done = _reproduce(tmp_path, set5, folder)
    assert done.returncode == 0, done.stdout + done.stderr
    for scale, value in (("2", "37.9877"), ("3", "34.3997"), ("4", "32.2375")):
        line = next(line for line in done.stdout.splitlines() if re.search(rf"\sset5\s+x{scale}\s+psnr\s", line))
        ours = float(line.split()[4])
        assert line.split()[5] == value and abs(ours - float(value)) <= 5e-5 and line.rstrip().endswith("yes")
    assert "within the published precision" in done.stdout


@pytest.mark.slow
def test_reproduce_with_a_different_checkpoint_exits_1_naming_the_rows(tmp_path, set5, liif_checkpoint):
    """The official file with its MLP's first layer scaled by 1.05, saved to tmp and named as the row's checkpoint
    (under the official name in a weights folder it would be refused by the sha256 check before anything runs)."""
    data = torch.load(liif_checkpoint, map_location="cpu", weights_only=True)
    sd = data["model"]["sd"]
    sd["imnet.layers.0.weight"] = sd["imnet.layers.0.weight"] * 1.05
    other = tmp_path / "perturbed.pth"
    torch.save({"model": data["model"]}, other)
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           weights.ENV: str(tmp_path / "empty-cache"), "HF_HUB_CACHE": str(tmp_path / "empty-hf")}
    done = subprocess.run([sys.executable, "-m", "asr_bench", "reproduce", "liif-set5", "--data-root",
                           str(set5.parent.parent), "-o", str(tmp_path / "run"), "--device", "cpu", "--no-progress",
                           "--set", f"methods=[{{preset: liif.edsr-baseline, checkpoint: {other}, "
                                    "label: EDSR-baseline-LIIF}]"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1800)
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert "outside the published precision" in last
    assert all(f"set5 x{s} psnr" in last for s in (2, 3, 4)), last
