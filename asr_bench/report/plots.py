"""Plots for the report: PSNR vs scale per dataset, time vs output megapixels, memory vs scale.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly (no pyplot), so rendering
a report never touches global matplotlib state or needs a display. Each plot is PNG bytes; the HTML
embeds them as base64 and `render_report` also writes them under <run>/plots/.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..results.schema import NO_WEIGHTS, OK, CaseRecord
from .model import dataset_title, metric_sort_key, metric_title, ordered_unique, scale_value

_MARKERS = "osD^v<>pXh*"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _style(label_index: int) -> dict[str, object]:
    return {"marker": _MARKERS[label_index % len(_MARKERS)], "markersize": 5, "linewidth": 1.5}


def _series(cases: Sequence[CaseRecord], x, y) -> dict[str, list[tuple[float, float]]]:
    """label -> sorted (x, y) points where both exist."""
    out: dict[str, list[tuple[float, float]]] = {}
    for case in cases:
        xv, yv = x(case), y(case)
        if xv is not None and yv is not None:
            out.setdefault(case.label, []).append((float(xv), float(yv)))
    return {label: sorted(points) for label, points in out.items()}


def _panels(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return (n + cols - 1) // cols, cols


def _per_dataset(cases: Sequence[CaseRecord], y, ylabel: str, title: str, labels: list[str]) -> bytes | None:
    datasets = ordered_unique(c.dataset for c in cases)
    data = {d: _series([c for c in cases if c.dataset == d], lambda c: scale_value(c.scale), y) for d in datasets}
    datasets = [d for d in datasets if data[d]]
    if not datasets:
        return None
    rows, cols = _panels(len(datasets))
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows), layout="constrained")
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, points in data[dataset].items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=label, **_style(labels.index(label)))
        ax.set_title(dataset_title(dataset))
        ax.set_xlabel("scale")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, names = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 4), fontsize="small")
    fig.suptitle(title)
    return _png(fig)


def accuracy_plot(cases: Sequence[CaseRecord]) -> bytes | None:
    """PSNR (or the first metric present) vs scale, one panel per dataset, one line per label."""
    ok = [c for c in cases if c.status == OK]
    metrics = sorted(ordered_unique(m for c in ok for m, v in c.metrics.items() if v is not None), key=metric_sort_key)
    if not metrics:
        return None
    metric = metrics[0]
    protocols = ", ".join(ordered_unique(c.protocol for c in ok))
    labels = ordered_unique(c.label for c in cases)
    return _per_dataset(ok, lambda c: c.metrics.get(metric), metric_title(metric),
                        f"{metric_title(metric)} vs scale (protocol: {protocols})", labels)


def memory_plot(cases: Sequence[CaseRecord]) -> bytes | None:
    """Memory (MB) vs scale, one panel per dataset."""
    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS)]
    kinds = ordered_unique(c.memory_kind for c in measured if c.memory_kind and c.memory_mb is not None)
    labels = ordered_unique(c.label for c in cases)
    return _per_dataset(measured, lambda c: c.memory_mb, "memory (MB)",
                        f"memory vs scale ({', '.join(kinds) or 'kind not recorded'})", labels)


def time_plot(cases: Sequence[CaseRecord]) -> bytes | None:
    """Median time per image vs output megapixels, log-log, one line per label over all datasets."""
    measured = [c for c in cases if c.status in (OK, NO_WEIGHTS)]
    labels = ordered_unique(c.label for c in cases)
    data = _series(measured, lambda c: c.output_mpix, lambda c: c.time_ms)
    if not data:
        return None
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for label, points in data.items():
        xs, ys = zip(*points)
        # markers only: points come from different datasets and scales, a line between them would suggest a trend
        ax.plot(xs, ys, linestyle="none", label=label, **_style(labels.index(label)))
    xs_all = [x for pts in data.values() for x, _ in pts]
    ys_all = [y for pts in data.values() for _, y in pts]
    if min(xs_all) > 0 and max(xs_all) / min(xs_all) > 10:  # log only when the values span decades
        ax.set_xscale("log")
    if min(ys_all) > 0 and max(ys_all) / min(ys_all) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("output megapixels")
    ax.set_ylabel("time per image (ms)")
    ax.set_title("time vs output size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _png(fig)


def all_plots(cases: Sequence[CaseRecord]) -> dict[str, bytes]:
    """name -> PNG bytes, only for plots that have data."""
    plots = {"accuracy_vs_scale": accuracy_plot(cases), "time_vs_mpix": time_plot(cases),
             "memory_vs_scale": memory_plot(cases)}
    return {name: png for name, png in plots.items() if png is not None}
