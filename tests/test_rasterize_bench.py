"""bench-ops plumbing on a tiny rasterizer workload (the real workloads are too slow for the test suite)."""
from __future__ import annotations

import json

import torch

from asr_bench.ops import bench


def test_bench_rows_and_ratios(monkeypatch, capsys):
    tiny = bench.Workload("rasterize", "fwd tiny", bench._rasterize_case(4, 4, 0.1), bench._rasterize_forward)
    tiny_bwd = bench.Workload("rasterize", "bwd tiny", bench._rasterize_case(4, 4, 0.5), bench._rasterize_backward)
    monkeypatch.setattr(bench, "WORKLOADS", [tiny, tiny_bwd])
    rows = bench.run(torch.device("cpu"), repeats=2)
    assert {r["workload"] for r in rows} == {"fwd tiny", "bwd tiny"}
    for row in rows:
        assert row["seconds"] > 0 and row["note"] == ""
        if row["backend"] == "torch":
            assert row["speedup"] == 1.0
    assert bench.main(["--json", "--repeats", "1", "--no-memory"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["workload"] for r in printed][:1] == ["fwd tiny"]
    assert bench.main(["--only", "nope"]) == 2


def test_gsasr_like_gaussians_layout():
    params, height, width = bench.gsasr_like_gaussians(3, 5, 4, torch.device("cpu"))
    sx, sy, rho, coords, colours = params
    assert (height, width) == (12, 20) and sx.shape == (16 * 15,) and coords.shape == (240, 2)
    # std in output pixels = sigma * s / 1.2 <= s / 1.2 (research/gsasr.md §4.2)
    assert (sx * (width - 1) / 2).max() <= 4 / 1.2 and (sy * (height - 1) / 2).max() <= 4 / 1.2
    assert rho.abs().max() < 1 and colours.min() >= 0 and colours.max() <= 1
