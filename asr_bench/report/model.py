"""The report's table model: cells built once, rendered by every format.

Markdown, LaTeX, CSV, HTML and the plain-text summary all render the same `AccuracyTable` / `CostRow`
objects, so the formats cannot disagree about which value is best or why a cell is n/a.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..results.schema import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord
from .published import PublishedMatch, PublishedRow, match_published

METRIC_ORDER = ("psnr", "ssim", "lpips", "dists")
# Used until (or where) asr_bench.metrics.METRICS does not know a metric.
_FALLBACK_LOWER_BETTER = {"psnr": False, "ssim": False, "lpips": True, "dists": True}
_DATASET_TITLES = {
    "set5": "Set5", "set14": "Set14", "b100": "B100", "urban100": "Urban100", "manga109": "Manga109",
    "div2k-val": "DIV2K", "div2k-720": "DIV2K-720", "lsdir-val": "LSDIR",
}
MISSING = "–"  # the case was not part of the run


def _registry_field(metric: str, name: str) -> object | None:
    """A field (`lower_better`, `digits`) of asr_bench.metrics.METRICS[metric]; None where it is not known there."""
    try:
        from ..metrics import METRICS  # type: ignore[attr-defined]
    except Exception:  # the metrics package is optional for rendering a stored run
        return None
    entry = METRICS.get(metric) if hasattr(METRICS, "get") else None
    if entry is None:
        return None
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


def _base_metric(metric: str) -> str:
    """'psnr_y' -> 'psnr', 'LPIPS-alex' -> 'lpips': the family decides direction and decimals."""
    return re.split(r"[_\-\s(]", metric.lower(), maxsplit=1)[0]


def lower_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (LPIPS, DISTS); unknown metrics count as higher-better."""
    found = _registry_field(metric, "lower_better")
    if found is not None:
        return bool(found)
    return _FALLBACK_LOWER_BETTER.get(metric.lower(), _FALLBACK_LOWER_BETTER.get(_base_metric(metric), False))


def decimals(metric: str) -> int:
    """The registry's `digits`, else the paper convention: PSNR in dB to 2 places, the [0,1] metrics to 4."""
    found = _registry_field(metric, "digits")
    if isinstance(found, int) and found >= 0:
        return found
    return 2 if _base_metric(metric) == "psnr" else 4


def metric_title(metric: str) -> str:
    return metric.upper() if metric.lower() in METRIC_ORDER else metric


def metric_sort_key(metric: str) -> tuple[int, str]:
    base = _base_metric(metric)
    return (METRIC_ORDER.index(base) if base in METRIC_ORDER else len(METRIC_ORDER), metric)


def dataset_title(name: str) -> str:
    return _DATASET_TITLES.get(name.lower(), name)


def scale_key(scale: str) -> tuple[float, float]:
    """'4' -> (4, 4), '3x2.5' -> (3, 2.5); unparsable labels sort last."""
    try:
        parts = [float(p) for p in str(scale).lower().lstrip("x×").split("x")]
    except ValueError:
        return (math.inf, math.inf)
    return (parts[0], parts[-1]) if parts else (math.inf, math.inf)


def scale_value(scale: str) -> float:
    """One number per scale for plot axes: the geometric mean of (sy, sx)."""
    sy, sx = scale_key(scale)
    return math.sqrt(sy * sx)


def scale_title(scale: str) -> str:
    return f"x{scale}"


def fmt(value: float | None, places: int) -> str:
    return MISSING if value is None else f"{value:.{places}f}"


def fmt_rate(value: float | None) -> str:
    """Frame rates span 0.01 (CPU, big images) to thousands: keep about three significant digits."""
    if value is None:
        return MISSING
    return f"{value:.1f}" if value >= 100 else f"{value:.3g}"


def fmt_delta(value: float, places: int) -> str:
    return f"{value:+.{places}f}"


def na_text(case: CaseRecord, metric: str | None = None) -> str:
    """Why a cell has no number, in the words the tables show."""
    if case.status == UNSUPPORTED:
        return "n/a (unsupported scale)"
    if case.status == NO_WEIGHTS:
        return "n/a (no weights)"
    if case.status == ERROR:
        return "error"
    note = case.notes.get(metric, "") if metric else ""
    if not note:
        return "n/a"
    return note if note.startswith("n/a") else f"n/a ({note})"


def ordered_unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class Column:
    dataset: str
    scale: str
    metric: str

    @property
    def title(self) -> str:
        return f"{dataset_title(self.dataset)} {scale_title(self.scale)} {metric_title(self.metric)}"


@dataclass
class Cell:
    """One table cell. `kind`: value | na | error | missing. `message` holds an error's text."""

    value: float | None = None
    text: str = MISSING
    kind: str = "missing"
    best: bool = False
    message: str = ""
    published: list[PublishedMatch] = field(default_factory=list)


@dataclass
class Row:
    label: str
    method: str
    encoder: str
    cells: list[Cell]


@dataclass
class AccuracyTable:
    """Paper layout for one protocol: rows = label, column groups = dataset x scale, one column per metric."""

    protocol: str
    columns: list[Column]
    rows: list[Row]

    def groups(self) -> list[tuple[str, str, int]]:
        """(dataset, scale, number of metric columns) in column order, for spanning headers."""
        spans: dict[tuple[str, str], int] = {}
        for col in self.columns:
            spans[(col.dataset, col.scale)] = spans.get((col.dataset, col.scale), 0) + 1
        return [(d, s, n) for (d, s), n in spans.items()]

    def errors(self) -> list[tuple[str, str]]:
        """(label, message) for every errored case, once each, for footnotes."""
        seen = {}
        for row in self.rows:
            for cell in row.cells:
                if cell.kind == "error":
                    seen.setdefault((row.label, cell.message), None)
        return list(seen)


def _case_cell(case: CaseRecord | None, metric: str, published: Sequence[PublishedRow]) -> Cell:
    if case is None:
        return Cell()
    if case.status == ERROR:
        return Cell(text="error", kind="error", message=case.error or "unknown error")
    value = case.metrics.get(metric)
    if case.status != OK or value is None or not math.isfinite(value):
        return Cell(text=na_text(case, metric), kind="na")
    matches = match_published(case, metric, value, published)
    return Cell(value=float(value), text=fmt(value, decimals(metric)), kind="value", published=matches)


def _mark_best(rows: list[Row], index: int, metric: str) -> None:
    """Bold every cell equal (at display precision) to the best one, so visible ties are all bold."""
    places = decimals(metric)
    shown = [round(row.cells[index].value, places) for row in rows if row.cells[index].kind == "value"]
    if len(shown) < 2:
        return  # a best of one is no comparison
    best = min(shown) if lower_better(metric) else max(shown)
    for row in rows:
        cell = row.cells[index]
        if cell.kind == "value" and round(cell.value, places) == best:
            cell.best = True


def accuracy_tables(cases: Sequence[CaseRecord], published: Sequence[PublishedRow] = (),
                    metrics: Sequence[str] = ()) -> list[AccuracyTable]:
    """One table per protocol label; datasets and labels keep run order, scales sort numerically.

    Every dataset x scale group gets the same metric columns: those any case of the protocol has, plus
    `metrics` (the run's configured list), so a group where nothing could be scored still shows why.
    """
    tables = []
    for protocol in ordered_unique(c.protocol for c in cases):
        mine = [c for c in cases if c.protocol == protocol]
        by_key = {(c.label, c.dataset, c.scale): c for c in mine}
        names = sorted({*metrics, *(m for c in mine for m in [*c.metrics, *c.notes])}, key=metric_sort_key)
        columns = []
        for dataset in ordered_unique(c.dataset for c in mine):
            scales = sorted(ordered_unique(c.scale for c in mine if c.dataset == dataset), key=scale_key)
            columns += [Column(dataset, scale, m) for scale in scales for m in names]
        rows = []
        for label in ordered_unique(c.label for c in mine):
            first = next(c for c in mine if c.label == label)
            cells = [_case_cell(by_key.get((label, col.dataset, col.scale)), col.metric, published) for col in columns]
            rows.append(Row(label, first.method, first.encoder, cells))
        for index, col in enumerate(columns):
            _mark_best(rows, index, col.metric)
        tables.append(AccuracyTable(protocol, columns, rows))
    return tables


@dataclass
class CostRow:
    """Cost of one case. Cells are None where not measured; `reason` says why (status text)."""

    label: str
    dataset: str
    scale: str
    protocol: str
    reason: str
    output_mpix: float | None
    time_ms: float | None
    memory_mb: float | None
    memory_kind: str
    params: int | None
    flops: float | None
    device: str
    precision: str
    time_repeats: int
    time_warmup: int
    message: str = ""
    best_time: bool = False
    best_memory: bool = False

    @property
    def fps(self) -> float | None:
        """Frames per second at batch 1: 1000 / median time."""
        return 1000.0 / self.time_ms if self.time_ms else None


def cost_rows(cases: Sequence[CaseRecord]) -> list[CostRow]:
    """One row per case, grouped by dataset (run order) then scale; fastest and leanest per group marked."""
    datasets = ordered_unique(c.dataset for c in cases)
    labels = ordered_unique(c.label for c in cases)
    ordered = sorted(
        cases, key=lambda c: (datasets.index(c.dataset), scale_key(c.scale), labels.index(c.label), c.protocol)
    )
    rows = []
    for c in ordered:
        measured = c.status in (OK, NO_WEIGHTS)
        rows.append(CostRow(
            label=c.label, dataset=c.dataset, scale=c.scale, protocol=c.protocol,
            reason="" if measured else na_text(c),
            output_mpix=c.output_mpix, time_ms=c.time_ms if measured else None,
            memory_mb=c.memory_mb if measured else None, memory_kind=c.memory_kind,
            params=c.params, flops=c.flops if measured else None, device=c.device, precision=c.precision,
            time_repeats=c.time_repeats, time_warmup=c.time_warmup, message=c.error,
        ))
    for key in ordered_unique((r.dataset, r.scale, r.protocol) for r in rows):
        group = [r for r in rows if (r.dataset, r.scale, r.protocol) == key]
        for attr, flag in (("time_ms", "best_time"), ("memory_mb", "best_memory")):
            values = [getattr(r, attr) for r in group if getattr(r, attr) is not None]
            if len(values) >= 2:
                for r in group:
                    if getattr(r, attr) == min(values):
                        setattr(r, flag, True)
    return rows
