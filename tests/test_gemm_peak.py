"""The cost table's "% GEMM peak": the run measures its GEMM rate once; a row's percentage is FLOPs/s over it."""
from __future__ import annotations

import csv
import io

from asr_bench.engine.peak import gemm_peak
from asr_bench.report.model import CostRow
from asr_bench.report.tables import PEAK_TITLE, cost_csv, cost_header, cost_values


def row(**changes) -> CostRow:
    base = dict(label="m", dataset="d", scale="x4", protocol="p", reason="", output_mpix=0.04, time_ms=250.0,
                memory_mb=10.0, memory_kind="", params=1000, flops=20e9, device="cpu", precision="fp32",
                time_repeats=5, time_warmup=1)
    return CostRow(**{**base, **changes})


def test_percent_of_peak_is_flops_per_second_over_the_measured_rate():
    r = row(peak_gflops=160.0)
    assert abs(r.peak_percent - 100 * (20e9 / 0.25) / 160e9) < 1e-9  # 80 GFLOP/s of 160
    assert cost_header([r])[-1] == PEAK_TITLE
    assert cost_values(r, peak=True)[-1] == "50"


def test_no_percentage_without_flops_a_time_or_a_peak():
    for r in (row(), row(peak_gflops=160.0, flops=None), row(peak_gflops=160.0, reason="error")):
        assert r.peak_percent is None
    assert PEAK_TITLE not in cost_header([row()])


def test_the_peak_is_measured_once_per_process():
    first = gemm_peak("cpu")
    assert first is not None and first["gflops"] > 0 and first["device"] == "cpu"
    assert gemm_peak("cpu") is first


def test_cost_csv_carries_the_percentage_for_scripts():
    """cost.csv holds the same figure the tables print: 20 GFLOP in 0.25 s on a 160 GFLOP/s peak is 50 %."""
    with_peak, without = row(peak_gflops=160.0), row(flops=None, peak_gflops=160.0)
    rows = list(csv.DictReader(io.StringIO(cost_csv([with_peak, without]))))
    assert abs(float(rows[0]["percent_gemm_peak"]) - 50.0) < 1e-9
    assert rows[1]["percent_gemm_peak"] == ""
