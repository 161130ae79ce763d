"""Plots for the report: PSNR (dB) vs scale per dataset, time vs output megapixels (log-log), memory vs scale
(log), a PSNR-vs-time Pareto plot per dataset x scale (accuracy against cost), and stacked bars of where a
call's time goes (the stages methods declare, `CaseRecord.stages`).

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly (no pyplot), so rendering a
report never touches global matplotlib state or needs a display. Each plot is written as PNG (embedded in
the HTML) and as PDF and SVG beside it, for papers. Metadata that carries a date is switched off, so
rendering the same store twice writes the same bytes.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..results.schema import NO_WEIGHTS, OK, CaseRecord, slug
from .model import dataset_title, metric_sort_key, metric_title, ordered_unique, scale_key, scale_title, scale_value

_MARKERS = "osD^v<>pXh*"
FORMATS = ("png", "pdf", "svg")
_METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
             "svg": {"Creator": None, "Date": None}}


def _render(fig: Figure) -> dict[str, bytes]:
    FigureCanvasAgg(fig)
    out = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        options = {"dpi": 110} if fmt == "png" else {}
        if fmt == "svg":
            import matplotlib

            with matplotlib.rc_context({"svg.hashsalt": "asr-bench"}):  # stable ids: same bytes on a re-render
                fig.savefig(buffer, format=fmt, bbox_inches="tight", metadata=_METADATA[fmt], **options)
        else:
            fig.savefig(buffer, format=fmt, bbox_inches="tight", metadata=_METADATA[fmt], **options)
        out[fmt] = buffer.getvalue()
    return out


def _style(label_index: int) -> dict[str, object]:
    return {"marker": _MARKERS[label_index % len(_MARKERS)], "markersize": 5, "linewidth": 1.5}


def _color(label_index: int) -> str:
    return f"C{label_index % 10}"


def _series(cases: Sequence[CaseRecord], x, y) -> dict[str, list[tuple[float, float, str]]]:
    """label -> sorted (x, y, scale) points where both exist."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    for case in cases:
        xv, yv = x(case), y(case)
        if xv is not None and yv is not None and math.isfinite(float(xv)) and math.isfinite(float(yv)):
            out.setdefault(case.label, []).append((float(xv), float(yv), case.scale))
    return {label: sorted(points) for label, points in out.items()}


def _panels(n: int, most: int = 2) -> tuple[int, int]:
    cols = min(n, most)
    return (n + cols - 1) // cols, cols


def _plain_number(value: float, _pos: object = None) -> str:
    return f"{value:g}"


def log_axis(axis, values: Sequence[float]) -> None:
    """Log scale with plain-number ticks (1, 2, 5 per decade), padded to at least a factor of 3 so values that
    coincide (every output the same size) still give a readable axis instead of a strip of crowded labels."""
    low, high = min(values), max(values)
    if low <= 0:
        return
    if axis.axis_name == "x":
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")
    centre = math.sqrt(low * high)
    if high / low < 3:
        low, high = centre / math.sqrt(3), centre * math.sqrt(3)
    else:
        low, high = low / 1.25, high * 1.25
    decades = math.log10(high / low)  # 1-2-5 ticks over a wide range overlap: then one tick per decade
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(_plain_number))
    axis.set_minor_formatter(NullFormatter())
    if axis.axis_name == "x":
        axis.axes.set_xlim(low, high)
    else:
        axis.axes.set_ylim(low, high)


def _legend(fig: Figure) -> None:
    handles, names = [], []
    for ax in fig.axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if names:
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 3), fontsize="small")


def _per_dataset(cases: Sequence[CaseRecord], y, ylabel: str, title: str, labels: list[str],
                 log_y: bool = False, overlay: Sequence[tuple[str, str, float, str, bool]] = ()) -> dict[str, bytes] | None:
    """One panel per dataset, metric vs scale; `overlay`: (label, dataset, scale value, kind, same protocol) points
    of published or reference numbers, drawn hollow in the method's colour. None when every dataset has one scale
    (a line through one point per method is no plot: the table says it all)."""
    datasets = ordered_unique(c.dataset for c in cases)
    data = {d: _series([c for c in cases if c.dataset == d], lambda c: scale_value(c.scale), y) for d in datasets}
    datasets = [d for d in datasets if data[d]]
    if not datasets or all(len({p[0] for pts in data[d].values() for p in pts}) < 2 for d in datasets):
        return None
    rows, cols = _panels(len(datasets))
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows + 0.6), layout="constrained")
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(rows, cols, i + 1)
        scales = {}
        for label, points in data[dataset].items():
            xs, ys, names = zip(*points)
            scales.update(zip(xs, names))
            ax.plot(xs, ys, label=label, color=_color(labels.index(label)), **_style(labels.index(label)))
        for label, where, x, value, kind, same in overlay:
            if where == dataset and label in labels:
                ax.plot([x], [value], linestyle="none", marker="o" if kind == "reference" else "s", markersize=9,
                        markerfacecolor="none", markeredgewidth=1.4, color=_color(labels.index(label)),
                        label=f"{kind} numbers (hollow){'' if same else ', other protocol'}")
        ax.set_xticks(sorted(scales), [scale_title(scales[x]) for x in sorted(scales)])
        if log_y:
            log_axis(ax.yaxis, [p[1] for pts in data[dataset].values() for p in pts])
        ax.set_title(dataset_title(dataset))
        ax.set_xlabel("scale")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    _legend(fig)
    fig.suptitle(title)
    return _render(fig)


def _metric_shown(cases: Sequence[CaseRecord]) -> str | None:
    ok = [c for c in cases if c.status == OK]
    metrics = sorted(ordered_unique(m for c in ok for m, v in c.metrics.items() if v is not None), key=metric_sort_key)
    return metrics[0] if metrics else None


def _axis_title(metric: str) -> str:
    return f"{metric_title(metric)} (dB)" if metric.lower().startswith("psnr") else metric_title(metric)


def accuracy_plot(cases: Sequence[CaseRecord], published: Sequence[object] = ()) -> dict[str, bytes] | None:
    """PSNR (or the first metric present) vs scale, one panel per dataset, one line per label; the published and
    reference numbers the tables compare with drawn hollow on top."""
    from .published import match_published

    metric = _metric_shown(cases)
    if metric is None:
        return None
    ok = [c for c in cases if c.status == OK]
    protocols = ", ".join(ordered_unique(c.protocol for c in ok))
    labels = ordered_unique(c.label for c in cases)
    overlay = []
    for c in ok:
        value = c.metrics.get(metric)
        if value is None:
            continue
        for match in match_published(c, metric, value, published):
            overlay.append((c.label, c.dataset, scale_value(c.scale), match.row.value, match.row.kind,
                            match.same_protocol))
    return _per_dataset(ok, lambda c: c.metrics.get(metric), _axis_title(metric),
                        f"{metric_title(metric)} vs scale (protocol: {protocols})", labels, overlay=overlay)


def memory_plot(cases: Sequence[CaseRecord]) -> dict[str, bytes] | None:
    """Memory (MB) vs scale on a log axis (small methods stay visible), one panel per dataset."""
    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS)]
    kinds = ordered_unique(c.memory_kind for c in measured if c.memory_kind and c.memory_mb is not None)
    labels = ordered_unique(c.label for c in cases)
    return _per_dataset(measured, lambda c: c.memory_mb if c.memory_mb and c.memory_mb > 0 else None,
                        "memory (MB, log)", f"memory vs scale ({', '.join(kinds) or 'kind not recorded'})",
                        labels, log_y=True)


def _time_errors(case: CaseRecord) -> tuple[float, float]:
    """(below, above) the median to the fastest and slowest timed call: the spread drawn as an error bar."""
    if case.time_min_ms is None or case.time_max_ms is None or case.time_ms is None:
        return 0.0, 0.0
    return max(0.0, case.time_ms - case.time_min_ms), max(0.0, case.time_max_ms - case.time_ms)


def time_plot(cases: Sequence[CaseRecord]) -> dict[str, bytes] | None:
    """Median time per image (bars: fastest to slowest timed call) vs output megapixels, log-log, one marker per
    method. When every case has the same output size an x axis of sizes would be one tick: then time per method
    (categorical), one column of points per scale."""
    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS) and c.time_ms and c.time_ms > 0]
    labels = ordered_unique(c.label for c in cases)
    data = _series(measured, lambda c: c.output_mpix, lambda c: c.time_ms if c.time_ms and c.time_ms > 0 else None)
    if not data:
        return None
    sizes = [p[0] for pts in data.values() for p in pts]
    by_key = {(c.label, c.scale, round(c.output_mpix or 0, 6)): c for c in measured}
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if max(sizes) / min(sizes) < 1.5:  # (nearly) one output size: a size axis would be one crowded tick
        present = [label for label in labels if any(c.label == label for c in measured)]
        scales = sorted(ordered_unique(c.scale for c in measured), key=scale_key)
        for j, scale in enumerate(scales):
            mine = [c for c in measured if c.scale == scale]
            xs = [present.index(c.label) + (j - (len(scales) - 1) / 2) * 0.12 for c in mine]
            errors = list(zip(*[_time_errors(c) for c in mine])) or [[], []]
            ax.errorbar(xs, [c.time_ms for c in mine], yerr=errors, linestyle="none", capsize=2,
                        color=f"C{j % 10}", marker=_MARKERS[j % len(_MARKERS)], label=scale_title(scale))
        ax.set_xticks(range(len(present)), present, rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(present) - 0.4)
        log_axis(ax.yaxis, [v for c in measured for v in (c.time_ms, c.time_min_ms, c.time_max_ms) if v and v > 0])
        ax.set_ylabel("time per image (ms, log)")
        ax.set_title(f"time per method (outputs {min(sizes):.3g}–{max(sizes):.3g} MP; bars: fastest to slowest call)"
                     if max(sizes) > min(sizes) else f"time per method (every output {sizes[0]:.3g} MP)")
    else:
        labelled: set[tuple[float, str]] = set()
        for label, points in data.items():
            xs, ys, names = zip(*points)
            # markers only: points come from different datasets and scales, a line would suggest a trend
            index = labels.index(label)
            errors = list(zip(*[_time_errors(by_key[(label, n, round(x, 6))]) if (label, n, round(x, 6)) in by_key
                                else (0.0, 0.0) for x, n in zip(xs, names)]))
            ax.errorbar(xs, ys, yerr=errors, linestyle="none", capsize=2, label=label, color=_color(index),
                        **_style(index))
            for x, y, scale in points:
                if (round(x, 6), scale) not in labelled:  # one label per scale and size, not one per method
                    labelled.add((round(x, 6), scale))
                    ax.annotate(scale_title(scale), (x, y), textcoords="offset points", xytext=(5, 3), fontsize=7,
                                color="0.35")
        log_axis(ax.xaxis, [p[0] for pts in data.values() for p in pts])
        log_axis(ax.yaxis, [v for c in measured for v in (c.time_ms, c.time_min_ms, c.time_max_ms) if v and v > 0])
        ax.set_xlabel("output megapixels (log)")
        ax.set_ylabel("time per image (ms, log)")
        ax.set_title("time vs output size (bars: fastest to slowest timed call)")
    ax.grid(alpha=0.3, which="both")
    _legend(fig)
    return _render(fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (time, accuracy) points no other point beats on both (faster or equal AND at least as accurate),
    sorted by time: the accuracy-for-cost frontier."""
    front = []
    for t, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or a > front[-1][1]:
            front.append((t, a))
    return front


def pareto_plot(cases: Sequence[CaseRecord]) -> dict[str, bytes] | None:
    """PSNR (dB) against time per image, one panel per dataset x scale, the Pareto frontier drawn through."""
    metric = _metric_shown(cases)
    if metric is None:
        return None
    ok = [c for c in cases if c.status == OK and c.metrics.get(metric) is not None and c.time_ms]
    groups = [g for g in ordered_unique((c.dataset, c.scale) for c in ok)
              if len({c.label for c in ok if (c.dataset, c.scale) == g}) >= 2]  # a front of one method is no front
    groups = sorted(groups, key=lambda g: (ordered_unique(c.dataset for c in ok).index(g[0]), scale_key(g[1])))
    if not groups:
        return None
    labels = ordered_unique(c.label for c in cases)
    rows, cols = _panels(len(groups), most=2)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows + 0.6), layout="constrained")
    for i, (dataset, scale) in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        mine = [c for c in ok if (c.dataset, c.scale) == (dataset, scale)]
        for c in mine:
            index = labels.index(c.label)
            below, above = _time_errors(c)
            ax.errorbar([c.time_ms], [c.metrics[metric]], xerr=[[below], [above]], linestyle="none", capsize=2,
                        label=c.label, color=_color(index), **_style(index))
        front = pareto_front([(c.time_ms, c.metrics[metric]) for c in mine])
        if len(front) > 1:
            ax.plot(*zip(*front), color="0.5", linewidth=1, linestyle="--", zorder=0)
        log_axis(ax.xaxis, [v for c in mine for v in (c.time_ms, c.time_min_ms or c.time_ms, c.time_max_ms or c.time_ms)])
        ax.set_title(f"{dataset_title(dataset)} {scale_title(scale)}")
        ax.set_xlabel("time per image (ms, log)")
        ax.set_ylabel(_axis_title(metric))
        ax.grid(alpha=0.3, which="both")
    _legend(fig)
    fig.suptitle(f"{metric_title(metric)} vs time (dashed: the Pareto front across methods; up and left is better;"
                 " bars: fastest to slowest timed call)")
    return _render(fig)


OTHER = "other"           # the part of a call's median time no stage covers
STAGE_NOISE = 0.02        # stage sums above the total by more than this fraction are named in the caption


@dataclass
class StageBar:
    """One bar of the stage figure: a case's stage medians in declared order, and what is left of its total."""

    label: str
    dataset: str
    scale: str
    total_ms: float
    stages: dict[str, float]
    profile_input: tuple[int, ...]

    @property
    def other_ms(self) -> float:
        """Total median minus the sum of the stage medians, never below 0 (medians do not add exactly)."""
        return max(0.0, self.total_ms - sum(self.stages.values()))

    @property
    def excess_ms(self) -> float:
        """How far the stage medians' sum exceeds the total median (0 when it does not)."""
        return max(0.0, sum(self.stages.values()) - self.total_ms)


def stage_bars(cases: Sequence[CaseRecord]) -> list[StageBar]:
    """Bars for the measured cases that have stages: by dataset (run order), label (run order), then scale."""
    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS) and c.stages and c.time_ms]
    datasets = ordered_unique(c.dataset for c in cases)
    labels = ordered_unique(c.label for c in cases)
    measured.sort(key=lambda c: (datasets.index(c.dataset), labels.index(c.label), scale_key(c.scale)))
    return [StageBar(c.label, c.dataset, c.scale, float(c.time_ms), {k: float(v) for k, v in c.stages.items()},
                     tuple(c.profile_input)) for c in measured]


def stage_names(bars: Sequence[StageBar]) -> list[str]:
    """Every stage in the order methods declare them (first seen), 'other' last."""
    return ordered_unique([name for bar in bars for name in bar.stages]) + [OTHER]


def stage_caption(cases: Sequence[CaseRecord]) -> str:
    """What the stage figure shows: whose medians, on which input; where the stages exceed the total."""
    bars = stage_bars(cases)
    if not bars:
        return ""
    inputs = []
    for dataset in ordered_unique(b.dataset for b in bars):
        sizes = ordered_unique("×".join(str(n) for n in b.profile_input) for b in bars
                               if b.dataset == dataset and b.profile_input)
        inputs.append(f"{dataset_title(dataset)}: LR {', '.join(sizes)}" if sizes else dataset_title(dataset))
    text = ("Median ms per stage over the timed calls of each case, on its profiling input "
            f"({'; '.join(inputs)}); other = the total median minus the stages' sum (never below 0).")
    over = [b for b in bars if b.excess_ms > STAGE_NOISE * b.total_ms]
    if over:
        worst = max(over, key=lambda b: b.excess_ms / b.total_ms)
        text += (f" In {len(over)} bar{'s' if len(over) > 1 else ''} the stages add up to more than the total "
                 f"(at most {worst.excess_ms:.2f} ms, {100 * worst.excess_ms / worst.total_ms:.0f}%, "
                 f"{worst.label} x{worst.scale}): medians of parts need not add to the median of the whole; "
                 "there other is 0.")
    return text


def stage_gid(bar: StageBar, stage: str) -> str:
    """The SVG id of a segment ('stage-set5_liif_edsr-baseline_x2-encoder'), so a reader can find it in the file."""
    return f"stage-{slug(f'{bar.dataset} {bar.label} x{bar.scale}')}-{slug(stage)}"


def stage_plot(cases: Sequence[CaseRecord]) -> dict[str, bytes] | None:
    """Where the time goes: one horizontal stacked bar per case with stages (method x scale, per dataset), in ms,
    and beside it the same bars as shares of the total, so a method's small bars are still legible."""
    bars = stage_bars(cases)
    if not bars:
        return None
    names = stage_names(bars)
    colours = {name: ("0.72" if name == OTHER else _color(i)) for i, name in enumerate(names)}
    datasets = ordered_unique(b.dataset for b in bars)
    several = len(datasets) > 1
    height = 0.34 * len(bars) + 0.5 * len(datasets) + 1.4
    fig = Figure(figsize=(10.0, max(2.6, height)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    ticks, tick_names, y = [], [], 0.0
    positions = []
    for dataset in datasets:
        for bar in (b for b in bars if b.dataset == dataset):
            positions.append(y)
            ticks.append(y)
            tick_names.append(f"{bar.label} {scale_title(bar.scale)}" + (f" · {dataset_title(dataset)}" if several else ""))
            y += 1.0
        y += 0.5  # a gap between datasets
    for bar, pos in zip(bars, positions):
        left = share = 0.0
        parts = [*bar.stages.items(), (OTHER, bar.other_ms)]
        total = sum(ms for _, ms in parts) or 1.0
        for name, ms in parts:
            drawn = axes[0].barh(pos, ms, left=left, height=0.7, color=colours[name])
            drawn.patches[0].set_gid(stage_gid(bar, name))
            axes[1].barh(pos, 100 * ms / total, left=share, height=0.7, color=colours[name])
            left += ms
            share += 100 * ms / total
        axes[0].annotate(f"{bar.total_ms:.0f} ms" if bar.total_ms >= 100 else f"{bar.total_ms:.3g} ms", (max(left, bar.total_ms), pos), textcoords="offset points",
                         xytext=(4, 0), va="center", fontsize=7, color="0.3")
    axes[0].set_yticks(ticks, tick_names, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("median time per call (ms)")
    axes[0].set_xlim(0, max(max(b.total_ms, sum(b.stages.values())) for b in bars) * 1.15)
    axes[1].set_xlabel("share of the call (%)")
    axes[1].set_xlim(0, 100)
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    handles = [Patch(color=colours[name], label=name) for name in names]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(names), 6), fontsize="small")
    fig.suptitle("where the time goes: stages per method and scale")
    return _render(fig)


TITLES = {"accuracy_vs_scale": "Accuracy vs scale", "time_vs_mpix": "Time vs output megapixels",
          "memory_vs_scale": "Memory vs scale", "pareto": "Accuracy vs time (Pareto)",
          "stages": "Where the time goes (stages)"}


def all_plots(cases: Sequence[CaseRecord], published: Sequence[object] = ()) -> dict[str, dict[str, bytes]]:
    """name -> {'png': ..., 'pdf': ..., 'svg': ...}, only for plots that have data."""
    plots = {"accuracy_vs_scale": accuracy_plot(cases, published), "pareto": pareto_plot(cases),
             "time_vs_mpix": time_plot(cases), "memory_vs_scale": memory_plot(cases), "stages": stage_plot(cases)}
    return {name: files for name, files in plots.items() if files is not None}
