"""The report: reads a run folder (the result store) and writes tables, plots and one HTML file.

    from asr_bench.report import render_report, summary_table
    paths = render_report(run_dir, published_dir=Path("results/published"))
    print(summary_table(cases))
"""
from __future__ import annotations

from .html import render_report
from .tables import summary_table

__all__ = ["render_report", "summary_table"]
