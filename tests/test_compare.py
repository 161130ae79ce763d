"""`asr-bench compare`: runs merge only where nothing that changes the numbers differs (bicubic on a tiny folder)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asr_bench.cli import run_cli
from asr_bench.config import parse_config
from asr_bench.engine.runner import run_benchmark
from asr_bench.results import load
from asr_bench.results.compare import compare_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of one bicubic config: two whole runs, one sharded twin; then one image changed and a fourth."""
    root = tmp_path_factory.mktemp("compare")
    data = root / "tiny"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (36, 48), "b": (40, 32), "c": (24, 24)}.items():
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(data / f"{name}.png")

    def run(output: str, shard: str | None = None) -> Path:
        config = parse_config({"methods": ["bicubic"], "datasets": [str(data)], "scales": [2, 3],
                               "metrics": ["psnr"], "device": "cpu",
                               "profiling": {"warmup": 0, "repeats": 2, "max_repeats": 2, "memory": False,
                                             "flops": False},
                               "output": str(root / output), "cache_dir": str(root / "cache")}, default_name="t")
        run_benchmark(config, progress=False, render=False, shard=shard)
        return root / output

    first, second = run("day1"), run("day2")
    run("sharded", "0/2")
    sharded = run("sharded", "1/2")
    image = np.asarray(Image.open(data / "b.png")).copy()
    image[0, 0] = 255 - image[0, 0]  # one pixel of one image
    Image.fromarray(image).save(data / "b.png")
    changed = run("changed")
    return {"first": first, "second": second, "sharded": sharded, "changed": changed, "root": root}


def test_two_runs_of_one_config_merge(runs):
    result = compare_runs([runs["first"], runs["second"]])
    assert not result.not_comparable and len(result.cases) == 2 and len(result.merged) == 2
    assert {c.label for c in result.cases} == {"bicubic"}


def test_a_run_and_its_sharded_twin_merge(runs):
    assert len(load(runs["sharded"]).cases) == 2  # the two shards together hold every case
    result = compare_runs([runs["first"], runs["sharded"]])
    assert not result.not_comparable and len(result.cases) == 2


def test_a_changed_image_makes_the_affected_cases_not_comparable_and_they_stay_apart(runs, capsys):
    result = compare_runs([runs["first"], runs["changed"]])
    assert len(result.not_comparable) == 2  # both scales read the changed image
    assert all("dataset fingerprint" in line and "protocol" not in line.split(": ", 2)[2]
               for line in result.not_comparable)
    assert sorted(c.label for c in result.cases) == ["bicubic", "bicubic", "bicubic [changed]", "bicubic [changed]"]
    out = runs["root"] / "merged"
    assert run_cli(["compare", str(runs["first"]), str(runs["changed"]), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Not comparable" in printed and "dataset fingerprint" in printed
    assert (out / "report.html").exists() and "bicubic [changed]" in (out / "tables" / "accuracy.md").read_text()


def test_compare_needs_two_runs(runs, capsys):
    assert run_cli(["compare", str(runs["first"]), "--output", str(runs["root"] / "x")]) == 2
    assert "at least two run folders" in capsys.readouterr().err
