"""bench-ops plumbing on tiny rasterizer workloads (the real workloads are too slow for the test suite)."""
from __future__ import annotations

import dataclasses
import json

import torch

from asr_bench.ops import bench, spec
from asr_bench.ops.rasterize import SPEC
from asr_bench.ops.rasterize.cases import (
    evaluated_pairs,
    flops,
    gsasr_case,
    gsasr_like_gaussians,
    kernel_pairs,
)


def test_bench_rows_and_ratios(monkeypatch, capsys):
    tiny = spec.Workload("fwd tiny", gsasr_case(4, 4, 0.1))
    tiny_bwd = spec.Workload("bwd tiny", gsasr_case(4, 4, 0.5), "backward")
    monkeypatch.setattr(bench, "op_specs", lambda: [dataclasses.replace(SPEC, workloads=(tiny, tiny_bwd))])
    rows = bench.run(torch.device("cpu"), repeats=2)
    assert {r["workload"] for r in rows} == {"fwd tiny", "bwd tiny"}
    for row in rows:
        assert row["seconds"] > 0 and row["thread_seconds"] >= 0 and row["note"] == ""
        if row["backend"] == "torch":
            assert row["speedup"] == 1.0
        assert (row["gflop_per_s"] is None) == (row["workload"] == "bwd tiny")  # FLOPs are declared per forward
    for row in rows:  # pairs per second and their share of exp's rate: compiled forward rows only
        if row["backend"] == "torch" or row["workload"] == "bwd tiny" or kernel_pairs(*gsasr_case(4, 4, 0.1)(
                torch.device("cpu"))) is None:
            assert row["elements_per_s"] is None and row["percent_of_function"] is None
        else:
            pairs = kernel_pairs(*gsasr_case(4, 4, 0.1)(torch.device("cpu")))
            assert row["elements_per_s"] == pairs / row["seconds"] and row["function"] == "exp"
            limit = bench.function_rate("exp", torch.device("cpu"))
            assert abs(row["percent_of_function"] - 100 * pairs / row["seconds"] / limit) < 1e-9
    assert bench.main(["--json", "--repeats", "1", "--no-memory"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one JSON object per row
    assert [r["workload"] for r in printed][:1] == ["fwd tiny"]
    assert bench.main(["--only", "nope"]) == 2


def test_gsasr_like_gaussians_layout():
    params, height, width = gsasr_like_gaussians(3, 5, 4, torch.device("cpu"))
    sx, sy, rho, coords, colours = params
    assert (height, width) == (12, 20) and sx.shape == (16 * 15,) and coords.shape == (240, 2)
    # std in output pixels = sigma * s / 1.2 <= s / 1.2 (docs/methods/gsasr.md §4.2)
    assert (sx * (width - 1) / 2).max() <= 4 / 1.2 and (sy * (height - 1) / 2).max() <= 4 / 1.2
    assert rho.abs().max() < 1 and colours.min() >= 0 and colours.max() <= 1


def test_the_flop_count_is_the_pairs_inside_each_box_counted_pixel_by_pixel():
    params, height, width = gsasr_like_gaussians(3, 4, 3, torch.device("cpu"))
    coords = params[3].double()
    dmax = 0.3
    xs = [2 * w / (width - 1) - 1 for w in range(width)]
    ys = [2 * h / (height - 1) - 1 for h in range(height)]
    slow = sum(1 for x, y in coords.tolist() for px in xs for py in ys if abs(px - x) <= dmax and abs(py - y) <= dmax)
    assert slow > 0 and evaluated_pairs(params[3], height, width, dmax) == slow
    assert flops(*params, height, width, dmax) == 16 * slow


def test_the_kernel_pair_count_covers_every_nonzero_pair_and_stays_in_the_boxes():
    # Counted pixel by pixel in float64: the pairs whose exp is non-zero in float32 (power >= -103.97) must all be
    # evaluated, and nothing beyond the dmax boxes widened by the spans' slack (under two columns each side).
    params, height, width = gsasr_like_gaussians(3, 4, 3, torch.device("cpu"))
    counted = kernel_pairs(*params, height, width, 0.3)
    if counted is None:
        import pytest

        pytest.skip("the cpp rasterizer is not available here")
    sx, sy, rho, coords, _ = [t.double() for t in params]
    xs = torch.tensor([2 * w / (width - 1) - 1 for w in range(width)], dtype=torch.float64)
    ys = torch.tensor([2 * h / (height - 1) - 1 for h in range(height)], dtype=torch.float64)
    nonzero = widened = 0
    column = 2 / (width - 1)
    for a, b, r, (x, y) in zip(sx.tolist(), sy.tolist(), rho.tolist(), coords.tolist()):
        dx, dy = xs[None, :] - x, ys[:, None] - y
        inside = (dx.abs() <= 0.3) & (dy.abs() <= 0.3)
        power = -((dx / a) ** 2 - 2 * r * dx * dy / (a * b) + (dy / b) ** 2) / (2 * (1 - r * r))
        nonzero += int((inside & (power >= -103.97)).sum())
        widened += int(((dx.abs() <= 0.3 + 2.001 * column) & (dy.abs() <= 0.3)).sum())
    assert 0 < nonzero <= counted <= widened
    assert evaluated_pairs(params[3], height, width, 0.3) < widened
