"""Report parts added for readers: plots' log axes and Pareto frontier, per-case provenance and timing spread
(records built here with those fields), the page's protocol and machine sections."""
from __future__ import annotations

import csv
import io
import itertools
import json
import random
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from test_report_store import make_cases, make_run

from asr_bench.report import render_report
from asr_bench.report.model import cost_rows
from asr_bench.report.plots import log_axis, pareto_front
from asr_bench.report.tables import cost_csv, cost_markdown


def test_a_log_axis_over_coinciding_values_is_padded_and_labelled_with_plain_numbers():
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0.26, 0.2600001, 0.26025], [1, 2, 3], "o")
    log_axis(ax.xaxis, [0.26, 0.2600001, 0.26025])
    fig.canvas.draw()  # tick labels exist after a draw
    low, high = ax.get_xlim()
    assert ax.get_xscale() == "log" and high / low >= 3 - 1e-9
    labels = [t.get_text() for t in ax.xaxis.get_majorticklabels() if t.get_text()]
    assert labels and all(len(text) <= 4 for text in labels), labels  # '0.2', '0.5': no '0.260000'


def test_the_pareto_front_is_every_point_no_other_point_beats():
    rng = random.Random(3)
    points = [(rng.uniform(1, 100), rng.uniform(25, 35)) for _ in range(40)] + [(5.0, 30.0), (5.0, 31.0)]
    dominated = {p for p, q in itertools.permutations(points, 2)
                 if q[0] <= p[0] and q[1] >= p[1] and q != p}
    assert pareto_front(points) == sorted(set(points) - dominated)


def test_provenance_and_timing_spread_are_shown_when_the_records_have_them(tmp_path: Path, png_only_plots: None):
    cases = make_cases()
    for case in cases:
        if case.status in ("ok", "no-weights") and case.time_ms is not None:
            case.time_min_ms, case.time_max_ms, case.time_iqr_ms = case.time_ms * 0.9, case.time_ms * 1.3, 0.1
            case.provenance = {"checkpoint_sha256": "ab" * 32 if case.method != "bicubic" else None,
                               "dataset_fingerprint": f"fp-{case.dataset}", "versions": {"torch": "2.13.0"}}
    make_run(tmp_path / "run", cases, visuals=False)
    html = render_report(tmp_path / "run")["report.html"].read_text()
    assert "Provenance per case" in html and "ab" * 32 in html and "fp-urban100" in html and "torch 2.13.0" in html
    liif = next(c for c in cases if c.label.startswith("LIIF") and c.dataset == "set5" and c.scale == "2")
    spread = f"{liif.time_min_ms:.1f}–{liif.time_max_ms:.1f}, n={liif.time_repeats}"  # the median's repeat count too
    assert f'<span class="spread">{spread}</span>' in html
    assert f"{liif.time_ms:.1f} ({spread})" in cost_markdown(cost_rows(cases))
    row = next(r for r in csv.DictReader(io.StringIO(cost_csv(cost_rows(cases))))
               if r["label"] == liif.label and r["dataset"] == "set5" and r["scale"] == "2")
    assert float(row["time_min_ms"]) == liif.time_min_ms and float(row["time_iqr_ms"]) == 0.1
    stored = json.loads((tmp_path / "run" / "cases.jsonl").read_text().splitlines()[1])
    assert stored["provenance"]["dataset_fingerprint"] == "fp-set5"  # the record field round-trips


def test_records_without_provenance_or_spread_render_without_those_parts(tmp_path: Path, png_only_plots: None):
    make_run(tmp_path / "run", visuals=False)
    html = render_report(tmp_path / "run")["report.html"].read_text()
    assert "Provenance per case" not in html
    spreads = re.findall(r'<span class="spread">([^<]*)</span>', html)
    assert spreads and set(spreads) == {"n=10"}  # no min–max stored: only the repeat count (make_cases: 10)
