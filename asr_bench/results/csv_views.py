"""CSV text as every view of the store writes it (one helper for the store's views and the report's tables)."""
from __future__ import annotations

import csv
import io
from typing import Any


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """One CSV document ('\\n' line ends, csv-module quoting); also what asr_bench.report.tables writes with."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
