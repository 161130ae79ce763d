"""The report's table model: cells built once, rendered by every format.

Markdown, LaTeX, CSV, HTML and the plain-text summary all render the same `AccuracyTable` / `CostRow`
objects, so the formats cannot disagree about which value is best or why a cell is n/a.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..results.schema import (ERROR, NO_WEIGHTS, OK, UNSUPPORTED, UNSUPPORTED_PRECISION_NOTE, UNSUPPORTED_SCALE_NOTE,
                              CaseRecord, variant, variant_label)
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
    """'+0.1234', '-0.0400'; a delta that rounds to zero is '±0.00' (neither better nor worse, never '-0.00')."""
    if round(value, places) == 0:
        return f"±{0:.{places}f}"
    return f"{value:+.{places}f}"


def delta_sign(delta: float, places: int | None, metric: str) -> str:
    """'same' when |delta| is below half the last printed digit of the published number (rounding cannot tell them
    apart: 32.38 printed stands for 32.375..32.385), else 'better' / 'worse' for us. Unknown precision: the metric's."""
    digits = places if places is not None and places >= 0 else decimals(metric)
    if abs(delta) < 0.5 * 10 ** (-digits):
        return "same"
    return "better" if ((delta < 0) if lower_better(metric) else (delta > 0)) else "worse"


def delta_places(published_places: int | None, metric: str) -> int:
    """A delta is shown to the published value's precision plus two digits, so a 4-decimal reproduction of a
    2-decimal paper number is visible; the metric's own decimals where the precision is not known."""
    return (published_places if published_places is not None and published_places >= 0 else decimals(metric)) + 2


def na_text(case: CaseRecord, metric: str | None = None) -> str:
    """Why a cell has no number, in the words the tables show."""
    if case.status == UNSUPPORTED:
        return UNSUPPORTED_PRECISION_NOTE if UNSUPPORTED_PRECISION_NOTE in case.notes.values() else UNSUPPORTED_SCALE_NOTE
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


def has_variants(cases: Sequence[CaseRecord]) -> bool:
    """Whether the run has more than one (precision, compile) setting: then rows need the variant in their name."""
    return len({(c.precision, bool(c.compiled)) for c in cases}) > 1


def with_variant_labels(cases: Sequence[CaseRecord]) -> list[CaseRecord]:
    """The cases with the variant in their label when the run has several (precision, compile) settings, so every
    table and plot keeps the fp32 and bf16 rows of a method apart (they share label, dataset and scale)."""
    if not has_variants(cases):
        return list(cases)
    return [replace(c, label=variant_label(c)) for c in cases]


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
    """One table cell. `kind`: value | na | error | missing. `note` is the footnote number (1-based) of the
    reason a cell has no value: the reason is written once, below the table, not in every cell."""

    value: float | None = None
    text: str = MISSING
    kind: str = "missing"
    best: bool = False
    second: bool = False
    tied: bool = False        # best, or not significantly worse than the best: the data cannot separate them
    rank: float | None = None  # rank in its column (1 = best; ties share the average rank)
    note: int | None = None
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
    """Paper layout for one protocol: rows = label, column groups = dataset x scale, one column per metric.

    `footnotes[i]` is the reason behind every cell whose `note` is i + 1; `dropped` says which metric columns
    (or dataset x scale groups) were left out because no row had a number there, and why.
    """

    protocol: str
    columns: list[Column]
    rows: list[Row]
    footnotes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    pairs: object = None          # the pairwise frame (asr_bench.results.stats.pairwise) of this table; None: untested

    @property
    def tested(self) -> bool:
        """Whether bold means "significantly better than the second" (per-image values were there to test)."""
        return self.pairs is not None

    def groups(self) -> list[tuple[str, str, int]]:
        """(dataset, scale, number of metric columns) in column order, for spanning headers."""
        spans: dict[tuple[str, str], int] = {}
        for col in self.columns:
            spans[(col.dataset, col.scale)] = spans.get((col.dataset, col.scale), 0) + 1
        return [(d, s, n) for (d, s), n in spans.items()]

    def errors(self) -> list[tuple[str, str]]:
        """(label, message) for every errored case, once each."""
        seen = {}
        for row in self.rows:
            for cell in row.cells:
                if cell.kind == "error":
                    seen.setdefault((row.label, cell.message), None)
        return list(seen)


def column_chunks(table: AccuracyTable, most: int) -> list[list[int]]:
    """Column indices in pieces of at most `most` metric columns, never splitting a dataset x scale group and
    starting a new piece at each dataset: how a wide table is stacked to fit a page or a window."""
    pieces: list[list[int]] = []
    start, last_dataset = 0, None
    for dataset, _scale, width in table.groups():
        indices = list(range(start, start + width))
        start += width
        if pieces and dataset == last_dataset and len(pieces[-1]) + width <= most:
            pieces[-1].extend(indices)
        else:
            pieces.append(indices)
        last_dataset = dataset
    return pieces


def footnote_mark(number: int) -> str:
    """1 -> 'a', 2 -> 'b', ... 27 -> 'aa': letters, so a marker is never read as a digit of the value."""
    mark = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        mark = chr(ord("a") + rest) + mark
    return mark


def _reason(case: CaseRecord, metric: str) -> str:
    """The words of a cell's footnote: 'weights missing: alexnet-owt-7be5be79.pth', 'unsupported scale', ..."""
    if case.status == ERROR:
        return f"error in {case.label}: {case.error or 'unknown error'}"
    text = na_text(case, metric)
    inner = text[len("n/a ("):-1] if text.startswith("n/a (") and text.endswith(")") else text
    return f"{metric_title(metric)}: {inner}" if case.status == OK else inner


def _value_grid(cases: Sequence[CaseRecord], names: Sequence[str]) -> dict[tuple[str, str, str, str], float]:
    """(metric, label, dataset, scale) -> value for the scored cases: one pandas pivot_table over the results
    DataFrame (the same frame `asr_bench.results.load` gives users)."""
    from ..results import cases_frame

    scored = [c for c in cases if c.status == OK]
    if not scored:
        return {}
    frame = cases_frame(scored)
    present = [m for m in names if m in frame.columns]
    if not present:
        return {}
    frame[present] = frame[present].apply(lambda col: col.astype(float))
    pivot = frame.pivot_table(index="label", columns=["dataset", "scale"], values=present, aggfunc="first")
    grid = {}
    for (metric, dataset, scale), column in pivot.items():
        for label, value in column.items():
            if value == value and math.isfinite(value):  # NaN != NaN: n/a cells stay out of the grid
                grid[(metric, label, dataset, scale)] = float(value)
    return grid


def _mark_best(rows: list[Row], index: int, metric: str) -> None:
    """Without per-image values (nothing to test): bold every cell equal at display precision to the best one, and
    with three or more values underline the second best the same way."""
    places = decimals(metric)
    shown = sorted({round(row.cells[index].value, places) for row in rows if row.cells[index].kind == "value"},
                   reverse=not lower_better(metric))
    count = sum(row.cells[index].kind == "value" for row in rows)
    if count < 2:
        return  # a best of one is no comparison
    for row in rows:
        cell = row.cells[index]
        if cell.kind != "value":
            continue
        cell.best = round(cell.value, places) == shown[0]
        cell.second = count >= 3 and len(shown) > 1 and round(cell.value, places) == shown[1]


def _pair_lookup(pairs: object, protocol: str, column: "Column") -> dict[tuple[str, str], dict[str, object]]:
    """(a, b) -> pairwise row (both orders; delta and interval flipped for b, a) of one table column."""
    frame = pairs  # a pandas DataFrame
    mine = frame[(frame["protocol"] == protocol) & (frame["dataset"] == column.dataset)
                 & (frame["scale"] == column.scale) & (frame["metric"] == column.metric)]
    out: dict[tuple[str, str], dict[str, object]] = {}
    for row in mine.to_dict("records"):
        out[(row["method_a"], row["method_b"])] = row
        out[(row["method_b"], row["method_a"])] = {**row, "method_a": row["method_b"], "method_b": row["method_a"],
                                                   "delta": -row["delta"], "low": -row["high"], "high": -row["low"],
                                                   "mean_a": row["mean_b"], "mean_b": row["mean_a"]}
    return out


def significantly_better(pair: dict[str, object] | None, metric: str) -> bool:
    """Whether method a beats method b in this pair row: Holm-adjusted p below alpha and the mean difference on the
    better side (the interval then excludes zero on that side as well)."""
    if not pair or not bool(pair.get("significant")):
        return False
    delta = float(pair["delta"])  # type: ignore[arg-type]
    return delta < 0 if lower_better(metric) else delta > 0


def _mark_significant(rows: list[Row], index: int, column: "Column", lookup: dict) -> None:
    """Bold the best only when it beats the second best significantly; else the best and every method it does not
    beat significantly are marked tied. Ranks (1 = best, ties averaged) feed the average-rank summary."""
    present = [row for row in rows if row.cells[index].kind == "value"]
    order = sorted(present, key=lambda r: r.cells[index].value, reverse=not lower_better(column.metric))
    _rank(order, index, column.metric)
    if len(order) < 2:
        return
    best = order[0]
    beaten = {row.label for row in order[1:]
              if significantly_better(lookup.get((best.label, row.label)), column.metric)}
    if order[1].label in beaten:
        best.cells[index].best = True
        return
    best.cells[index].tied = True
    for row in order[1:]:
        if row.label not in beaten:
            row.cells[index].tied = True


def _rank(order: list[Row], index: int, metric: str) -> None:
    """Rank 1 = best; equal values at display precision share the average of their ranks."""
    places = decimals(metric)
    position = 0
    while position < len(order):
        same = [r for r in order[position:] if round(r.cells[index].value, places)
                == round(order[position].cells[index].value, places)]
        for r in same:
            r.cells[index].rank = position + (len(same) + 1) / 2
        position += len(same)


def rank_summary(table: AccuracyTable) -> list[tuple[str, dict[str, tuple[float, int]]]]:
    """label -> metric -> (average rank over the dataset x scale columns it has a value in, number of columns)."""
    metrics = ordered_unique(c.metric for c in table.columns)
    out = []
    for row in table.rows:
        per: dict[str, tuple[float, int]] = {}
        for metric in metrics:
            ranks = [cell.rank for col, cell in zip(table.columns, row.cells)
                     if col.metric == metric and cell.rank is not None]
            if ranks:
                per[metric] = (sum(ranks) / len(ranks), len(ranks))
        out.append((row.label, per))
    return out


def table_pairs(cases: Sequence[CaseRecord], images: Sequence[object]) -> object:
    """The pairwise frame of these cases (labels as the tables show them) from their per-image rows."""
    from ..results import cases_frame, images_frame
    from ..results.stats import pairwise

    return pairwise(images_frame(list(images)), cases_frame(list(cases)))


def accuracy_tables(cases: Sequence[CaseRecord], published: Sequence[PublishedRow] = (),
                    metrics: Sequence[str] = (), images: Sequence[object] | None = None) -> list[AccuracyTable]:
    """One table per protocol, holding only the methods that have numbers (at least one scored case).

    With the per-image rows (`images`), every pair of methods is tested (asr_bench.results.stats) and bold means
    "better than the second best, Holm-adjusted p < 0.05"; without them bold is the best value, untested.

    Random-weight and unsupported cases belong to the cost table; a metric column with no number in any row is
    dropped and named in `dropped` with its reason; so is a dataset x scale group where no method has a number.
    A table with no rows is not made. Datasets and labels keep run order, scales sort numerically.
    """
    tables = []
    for protocol in ordered_unique(c.protocol for c in cases):
        mine = [c for c in cases if c.protocol == protocol]
        scored_labels = ordered_unique(c.label for c in mine if c.status == OK)
        if not scored_labels:
            continue
        names = sorted({*metrics, *(m for c in mine for m in [*c.metrics, *c.notes])}, key=metric_sort_key)
        grid = _value_grid(mine, names)
        by_key = {(c.label, c.dataset, c.scale): c for c in mine}
        dropped = []
        kept_names = []
        for metric in names:
            if any(k[0] == metric for k in grid):
                kept_names.append(metric)
                continue
            reasons = ordered_unique(_reason(c, metric).split(": ", 1)[-1] for c in mine
                                     if c.status == OK and c.label in scored_labels)
            reasons = [r for r in reasons if r != "n/a"]
            dropped.append(f"{metric_title(metric)} not shown: n/a for every method"
                           + (f" ({'; '.join(reasons)})" if reasons else ""))
        columns = []
        for dataset in ordered_unique(c.dataset for c in mine):
            for scale in sorted(ordered_unique(c.scale for c in mine if c.dataset == dataset), key=scale_key):
                if not any((m, label, dataset, scale) in grid for m in kept_names for label in scored_labels):
                    if kept_names:
                        dropped.append(f"{dataset_title(dataset)} {scale_title(scale)} not shown: "
                                       "no method with weights has a number there (see the cost table)")
                    continue
                columns += [Column(dataset, scale, m) for m in kept_names]
        if not columns:
            continue
        footnotes: list[str] = []
        rows = []
        for label in scored_labels:
            first = next(c for c in mine if c.label == label)
            cells = []
            for col in columns:
                case = by_key.get((label, col.dataset, col.scale))
                value = grid.get((col.metric, label, col.dataset, col.scale))
                if value is not None and case is not None:
                    matches = match_published(case, col.metric, value, published)
                    cells.append(Cell(value=value, text=fmt(value, decimals(col.metric)), kind="value",
                                      published=matches))
                elif case is None:
                    cells.append(Cell())
                else:
                    reason = _reason(case, col.metric)
                    if reason not in footnotes:
                        footnotes.append(reason)
                    cells.append(Cell(text=MISSING, kind="error" if case.status == ERROR else "na",
                                      note=footnotes.index(reason) + 1, message=case.error))
            rows.append(Row(label, first.method, first.encoder, cells))
        pairs = None
        if images is not None:
            pairs = table_pairs(mine, images)
            pairs = pairs[pairs["protocol"] == protocol]
        for index, col in enumerate(columns):
            if pairs is None:
                _mark_best(rows, index, col.metric)
                _rank(sorted([r for r in rows if r.cells[index].kind == "value"], key=lambda r: r.cells[index].value,
                             reverse=not lower_better(col.metric)), index, col.metric)
            else:
                _mark_significant(rows, index, col, _pair_lookup(pairs, protocol, col))
        tables.append(AccuracyTable(protocol, columns, rows, footnotes, dropped, pairs))
    return tables


WEIGHTS_HINT = "`asr-bench weights list` says where to get them"


def cost_only_summary(cases: Sequence[CaseRecord]) -> str:
    """One line for the methods that ran on random weights (cost only), '' when there are none."""
    labels = ordered_unique(c.label for c in cases if c.status == NO_WEIGHTS)
    scored = {c.label for c in cases if c.status == OK}
    labels = [label for label in labels if label not in scored]
    if not labels:
        return ""
    noun = "method" if len(labels) == 1 else "methods"
    return f"{len(labels)} {noun} ran on random weights: cost only ({', '.join(labels)}); {WEIGHTS_HINT}."


def unsupported_summary(cases: Sequence[CaseRecord]) -> str:
    """'not run (unsupported scale): RT4KSR at x4, x6.5': those cases have no cost either. Cases a method has no
    dtype for are named apart ('not run (unsupported precision): ...')."""
    per_reason: dict[str, dict[str, list[str]]] = {}
    for c in cases:
        if c.status == UNSUPPORTED:
            reason = na_text(c)[len("n/a ("):-1]
            scales = per_reason.setdefault(reason, {}).setdefault(c.label, [])
            text = scale_title(c.scale)
            if text not in scales:
                scales.append(text)
    return "; ".join(f"not run ({reason}): " + "; ".join(f"{label} at {', '.join(scales)}"
                                                          for label, scales in per_label.items())
                     for reason, per_label in per_reason.items())


@dataclass
class CostRow:
    """Cost of one measured case. Cells are None where not measured; `note` = footnote number of an error."""

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
    best_time: bool = False    # significantly faster than the second fastest (timed calls, Holm-adjusted p < 0.05)
    tied_time: bool = False    # fastest median, or not significantly slower than it: the timer cannot separate them
    best_memory: bool = False
    random_weights: bool = False
    time_min_ms: float | None = None
    time_max_ms: float | None = None
    time_iqr_ms: float | None = None
    frames: dict[str, float | None] = field(default_factory=dict)   # FRAME_RATES key -> fps of the method
    frame_notes: dict[str, str] = field(default_factory=dict)       # FRAME_RATES key -> why n/a ('x3 unsupported')
    figure_notes: dict[str, str] = field(default_factory=dict)      # 'time' / 'flops' -> what the figure leaves out
    peak_gflops: float | None = None  # the run's measured fp32 GEMM rate (run.json "gemm_peak"), the yardstick

    @property
    def peak_percent(self) -> float | None:
        """FLOPs per second of the median call as a percentage of the machine's measured GEMM rate."""
        if not (self.flops and self.time_ms and self.peak_gflops) or self.reason:
            return None
        return 100.0 * self.flops / (self.time_ms / 1000.0) / 1e9 / self.peak_gflops

    @property
    def fps(self) -> float | None:
        """Frames per second at batch 1: 1000 / median time."""
        return 1000.0 / self.time_ms if self.time_ms else None

    @property
    def spread(self) -> str:
        """'11.9–13.0' (min–max of the repeats) when the store has it, else '' (also for one timed call: no spread)."""
        if self.time_min_ms is None or self.time_max_ms is None or self.time_repeats == 1:
            return ""
        return f"{self.time_min_ms:.1f}–{self.time_max_ms:.1f}"

    @property
    def spread_text(self) -> str:
        """'11.9–13.0, n=7': the spread and how many timed calls the median is of (adaptive: it differs per row)."""
        count = f"n={self.time_repeats}" if self.time_repeats and self.time_ms is not None and not self.reason else ""
        return ", ".join(part for part in (self.spread, count) if part)

    def frame_text(self, key: str) -> str:
        """A frame-rate cell: the rate, 'n/a' where the method cannot make that frame (the reason goes below the
        table), '–' where it was not measured."""
        value = self.frames.get(key)
        if value is not None:
            return fmt_rate(value)
        return "n/a" if self.frame_notes.get(key, "").startswith("n/a") else MISSING


# cost_notes keys that qualify a row's own figure (time less one-time setup, FLOPs not counted) -> column title
FIGURE_NOTES = {"time": "time", "flops": "FLOPs"}

# CaseRecord field -> (column title, what it is): profiling.frame_rates measures them once per method row
FRAME_RATES = {"fps_720p_4k": ("FPS 720p→4K", "1280×720 → 3840×2160 (×3)"),
               "fps_1080p_4k": ("FPS 1080p→4K", "1920×1080 → 3840×2160 (×2)")}


def has_frame_rates(rows: Sequence[CostRow]) -> bool:
    """Whether the run measured frame rates (profiling.frame_rates): then the cost table has their columns."""
    return any(r.frames.get(k) is not None or r.frame_notes.get(k) for r in rows for k in FRAME_RATES)


def frame_rate_reasons(rows: Sequence[CostRow]) -> list[str]:
    """'FPS 720p→4K n/a: RT4KSR (x3 unsupported)', one line per column that has an n/a cell."""
    lines = []
    for key, (title, _) in FRAME_RATES.items():
        why = ordered_unique(f"{r.label} ({r.frame_notes[key][len('n/a ('):-1] if r.frame_notes[key].startswith('n/a (') else r.frame_notes[key]})"
                             for r in rows if r.frames.get(key) is None and r.frame_notes.get(key, "").startswith("n/a"))
        if why:
            lines.append(f"{title} n/a: {', '.join(why)}")
    return lines


UNCHECKED_SETUP_NOTE = ("may include one-time setup (a compiled op built on first use): measured without a warm-up "
                        "by an asr-bench that did not yet take it out; rerun into a new output folder to measure it again")


def figure_notes(case: CaseRecord) -> dict[str, str]:
    """The notes that qualify a case's own time and FLOPs. A time stored before one-time setup was taken out
    (`time_setup_ms` absent) from a first call nothing warmed up (no warm-up, no memory call) says it may hold a
    compile, rather than pass for the method's time."""
    notes = {k: case.cost_notes[k] for k in FIGURE_NOTES if case.cost_notes.get(k)}
    if (case.time_ms is not None and getattr(case, "time_setup_ms", None) is None and case.time_warmup == 0
            and case.memory_mb is None and "time" not in notes):
        notes["time"] = UNCHECKED_SETUP_NOTE
    return notes


def _method_frames(cases: Sequence[CaseRecord]) -> dict[str, tuple[dict[str, float | None], dict[str, str]]]:
    """label -> (frame rates, notes) from the case that measured them (the method row's first case)."""
    out: dict[str, tuple[dict[str, float | None], dict[str, str]]] = {}
    for c in cases:
        values = {k: getattr(c, k, None) for k in FRAME_RATES}
        notes = {k: c.cost_notes[k] for k in FRAME_RATES if c.cost_notes.get(k)}
        if any(v is not None for v in values.values()) or notes:
            out.setdefault(c.label, (values, notes))
    return out


def cost_rows(cases: Sequence[CaseRecord], peak_gflops: float | None = None) -> list[CostRow]:
    """One row per run case (not the unsupported ones: nothing ran), grouped by dataset (run order) then scale;
    fastest and leanest per group marked. Timing spread comes from the record when it has one. `peak_gflops`
    (the run's measured GEMM rate) gives each row its "% of GEMM peak"."""
    datasets = ordered_unique(c.dataset for c in cases)
    labels = ordered_unique(c.label for c in cases)
    ordered = sorted(
        (c for c in cases if c.status != UNSUPPORTED),
        key=lambda c: (datasets.index(c.dataset), scale_key(c.scale), labels.index(c.label), c.protocol),
    )
    frames = _method_frames(cases)
    rows = []
    for c in ordered:
        measured = c.status in (OK, NO_WEIGHTS)
        rates, rate_notes = frames.get(c.label, ({}, {}))
        rows.append(CostRow(
            label=c.label, dataset=c.dataset, scale=c.scale, protocol=c.protocol,
            reason="" if measured else na_text(c),
            output_mpix=c.output_mpix, time_ms=c.time_ms if measured else None,
            memory_mb=c.memory_mb if measured else None, memory_kind=c.memory_kind,
            params=c.params, flops=c.flops if measured else None, device=c.device, precision=c.precision,
            time_repeats=c.time_repeats, time_warmup=c.time_warmup, message=c.error,
            random_weights=c.status == NO_WEIGHTS,
            time_min_ms=getattr(c, "time_min_ms", None) if measured else None,
            time_max_ms=getattr(c, "time_max_ms", None) if measured else None,
            time_iqr_ms=getattr(c, "time_iqr_ms", None) if measured else None,
            frames=dict(rates), frame_notes=dict(rate_notes),
            figure_notes=figure_notes(c) if measured else {},
            peak_gflops=peak_gflops,
        ))
    _mark_fastest(rows, cases)
    for key in ordered_unique((r.dataset, r.scale, r.protocol) for r in rows):
        group = [r for r in rows if (r.dataset, r.scale, r.protocol) == key]
        values = [r.memory_mb for r in group if r.memory_mb is not None]
        if len(values) >= 2:  # peak memory is one deterministic reading, not a noisy sample: the smallest is bold
            for r in group:
                r.best_memory = r.memory_mb == min(values)
    return rows


TIME_RULE = ("fastest in bold only when its timed calls are faster than the second fastest's by a Mann-Whitney U "
             "test, Holm-adjusted across the table, p < 0.05; ≈ = the fastest and those the timer cannot separate from it")


def few_repeats_note(cases: Sequence[CaseRecord]) -> str:
    """What the timed calls cannot establish: with n calls each the smallest two-sided Mann-Whitney p is
    2 / C(2n, n); Holm over m comparisons multiplies it by m. '' when a significant difference is possible."""
    from ..results import cases_frame
    from ..results.stats import ALPHA, time_pairwise

    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS) and c.time_ms is not None]
    if len(measured) < 2:
        return ""
    frame = time_pairwise(cases_frame(measured), intervals=False)
    if not len(frame):
        return ""
    counts = [min(a, b) for a, b in zip(frame["n_a"], frame["n_b"])]
    n, m = max(counts), int(frame["family_size"].max() or len(frame))
    if n < 2:
        return ("one timed call per case: times cannot be tested, so no time is bold; "
                "set profiling.repeats to 7 or more for a test")
    best = 2 / math.comb(2 * n, n) * max(m, 1)
    if best < ALPHA:
        return ""
    return (f"with {n} timed calls per case the smallest Mann-Whitney p is 2/C({2 * n},{n}) = {2 / math.comb(2 * n, n):.4f}, "
            f"and Holm over the {m} comparisons of this table makes it {min(best, 1):.3f} ≥ {ALPHA}: no time difference "
            "here can be significant, however far apart the medians are; set profiling.repeats (and max_repeats) "
            "higher for a test that can decide")


def _mark_fastest(rows: list[CostRow], cases: Sequence[CaseRecord]) -> None:
    """Bold the fastest median only when it is significantly faster than the second (asr_bench.results.stats
    .time_pairwise on the stored timed calls); otherwise mark it and those not significantly slower as tied."""
    from ..results import cases_frame
    from ..results.stats import time_pairwise

    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS) and c.time_ms is not None]
    if not measured:
        return
    frame = time_pairwise(cases_frame(measured), intervals=False)
    verdict = {}
    for row in frame.to_dict("records"):
        key = (row["dataset"], row["scale"], row["protocol"])
        faster_a = bool(row["significant"]) and row["delta"] < 0
        faster_b = bool(row["significant"]) and row["delta"] > 0
        verdict[(key, row["method_a"], row["method_b"])] = faster_a
        verdict[(key, row["method_b"], row["method_a"])] = faster_b
    for key in ordered_unique((r.dataset, r.scale, r.protocol) for r in rows):
        group = sorted((r for r in rows if (r.dataset, r.scale, r.protocol) == key and r.time_ms is not None
                        and not r.reason), key=lambda r: r.time_ms)
        if len(group) < 2:
            continue
        fastest = group[0]
        beaten = {r.label for r in group[1:] if verdict.get((key, fastest.label, r.label), False)}
        if group[1].label in beaten:
            fastest.best_time = True
            continue
        for r in [fastest, *group[1:]]:
            r.tied_time = r is fastest or r.label not in beaten


@dataclass
class VariantRow:
    """One case in another precision or compiled, against the same case in fp32 eager (the reference).

    `deltas[metric]` = this − reference (None where either is n/a; `notes[metric]` says why), `speedup` =
    reference median time / this median time (> 1: faster). `reason` is set when there is nothing to compare."""

    label: str
    dataset: str
    scale: str
    protocol: str
    variant: str
    time_ms: float | None
    reference_ms: float | None
    speedup: float | None
    deltas: dict[str, float | None]
    notes: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def variant_rows(cases: Sequence[CaseRecord], metrics: Sequence[str] = ()) -> tuple[list[VariantRow], list[str]]:
    """(rows, metric names) of the precision / compile comparison; no rows when the run has one setting only.

    A variant the method has no dtype for (unsupported precision) has no row: the cost table's notes name it.
    Rows: by dataset, then method (run order), then scale (numerically), then variant (run order)."""
    if not has_variants(cases):
        return [], []
    reference = {(c.label, c.dataset, c.scale, c.protocol): c for c in cases if not variant(c)}
    others = [c for c in cases if variant(c) and c.status != UNSUPPORTED]
    names = sorted({*metrics, *(m for c in cases if c.status == OK for m, v in c.metrics.items() if v is not None)},
                   key=metric_sort_key)
    names = [m for m in names if any(c.metrics.get(m) is not None for c in cases if c.status == OK)]
    datasets = ordered_unique(c.dataset for c in cases)
    labels = ordered_unique(c.label for c in cases)
    variants = ordered_unique(variant(c) for c in others)
    others.sort(key=lambda c: (datasets.index(c.dataset), labels.index(c.label), scale_key(c.scale),
                               variants.index(variant(c))))
    rows = []
    for c in others:
        ref = reference.get((c.label, c.dataset, c.scale, c.protocol))
        measured = c.status in (OK, NO_WEIGHTS)
        ref_measured = ref is not None and ref.status in (OK, NO_WEIGHTS)
        time_ms = c.time_ms if measured else None
        ref_ms = ref.time_ms if ref_measured else None
        deltas: dict[str, float | None] = {}
        notes: dict[str, str] = {}
        for m in names:
            mine = c.metrics.get(m) if c.status == OK else None
            theirs = ref.metrics.get(m) if ref is not None and ref.status == OK else None
            deltas[m] = mine - theirs if mine is not None and theirs is not None else None
            if deltas[m] is None:
                notes[m] = (na_text(c, m) if mine is None else
                            "no fp32 eager case" if ref is None else na_text(ref, m) + " in fp32")
        reason = ("error" if c.status == ERROR else
                  "no fp32 eager case" if ref is None else
                  "fp32 eager: " + na_text(ref) if not ref_measured else "")
        rows.append(VariantRow(
            label=c.label, dataset=c.dataset, scale=c.scale, protocol=c.protocol, variant=variant(c),
            time_ms=time_ms, reference_ms=ref_ms,
            speedup=ref_ms / time_ms if ref_ms and time_ms else None,
            deltas=deltas, notes=notes, reason=reason))
    return rows, names
