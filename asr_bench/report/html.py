"""render_report: a run folder -> tables (md, tex, csv), plots (png) and ONE self-contained report.html.

Everything the HTML needs is inside it (CSS inline, images as base64 data URIs, no scripts, fonts or
CDNs), so the file works offline and can be mailed or archived with the run.
"""
from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .. import atomic
from ..jsontext import dumps
from ..resources import templates_dir
from ..results.schema import slug

from ..results import load
from .explain import machine, protocol_fields, provenance_rows, status_words
from .model import (
    FRAME_RATES, AccuracyTable, Cell, CostRow, VariantRow, accuracy_tables, cost_only_summary, cost_rows,
    dataset_title, decimals, delta_places, fmt, fmt_delta, fmt_rate, footnote_mark, frame_rate_reasons,
    has_frame_rates, lower_better, metric_title, ordered_unique, scale_title, unsupported_summary, variant_label,
    variant_rows, with_variant_labels, delta_sign, TIME_RULE, few_repeats_note,
)
from .plots import TITLES, all_plots, stage_caption
from .published import load_published
from .reading import RunData
from .tables import (
    accuracy_csv, accuracy_latex, accuracy_markdown, cost_csv, cost_header, cost_latex, cost_markdown, has_peak,
    figure_note_lines, frame_rate_note, latex_document, published_csv, published_display, published_latex, published_markdown,
    published_rows, variant_cells, variant_csv, variant_header, variant_latex, variant_markdown, variant_notes,
    pairwise_csv, time_pairwise_csv, paired_entries, paired_display, rank_rows, significance_rule, few_images_note,
    RANK_NOTE, _pairs_note,
)
from .visuals import VisualRow, figure_png, visual_rows

_CONFIG_KEYS = ("config", "resolved_config")
_SKIPPED_KEYS = ("cases",)  # the engine's list of case ids: the tables already show every case
_LONG_LIST = 12


def _environment(run: dict[str, Any]) -> list[tuple[str, str]]:
    """run.json minus the config, flattened one level ('environment.torch' -> 'torch') for a key/value table."""
    items: list[tuple[str, str]] = []

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, (list, tuple)) and len(value) > _LONG_LIST:
            items.append((prefix, f"{len(value)} entries"))
        elif isinstance(value, (list, tuple)):
            items.append((prefix, ", ".join(str(v) for v in value) if all(not isinstance(v, (dict, list)) for v in value)
                          else dumps(value)))
        else:
            items.append((prefix, "" if value is None else str(value)))

    for key, value in run.items():
        if key in _CONFIG_KEYS or key in _SKIPPED_KEYS:
            continue
        add("" if key in ("environment", "env") else key, value)
    return items


def _config_yaml(run: dict[str, Any]) -> str:
    for key in _CONFIG_KEYS:
        if key in run:
            return yaml.safe_dump(run[key], sort_keys=False, allow_unicode=True, default_flow_style=False)
    return ""


def configured_metrics(run: dict[str, Any]) -> list[str]:
    """The metric names the run's config asked for (run.json), [] when it does not say."""
    for key in _CONFIG_KEYS:
        metrics = run.get(key, {}).get("metrics") if isinstance(run.get(key), dict) else None
        if isinstance(metrics, list):
            return [str(m) for m in metrics]
    return []


class _Footnotes:
    """Numbers cost-table error messages once each, so a cell can say '– [2]' and the list below explains it."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], int] = {}

    def number(self, label: str, message: str) -> int:
        return self.items.setdefault((label, message), len(self.items) + 1)

    def listing(self) -> list[dict[str, Any]]:
        return [{"n": n, "label": label, "message": message} for (label, message), n in self.items.items()]


def _published_view(match: Any, metric: str) -> dict[str, Any]:
    places = delta_places(match.row.places, metric)
    shown = match.row.places if match.row.places is not None else decimals(metric)
    return {
        "value": f"{match.row.value:.{shown}f}", "delta": fmt_delta(match.delta, places),
        "sign": delta_sign(match.delta, match.row.places, metric),
        "same_protocol": match.same_protocol, "protocol": match.row.protocol,
        "kind": "ref" if match.row.kind == "reference" else "pub",
        "title": f"{match.row.kind}: {match.row.value} ({match.row.source}; protocol {match.row.protocol or '?'})",
    }


def _cell_view(cell: Cell, metric: str, table_id: int) -> dict[str, Any]:
    return {"text": cell.text, "kind": cell.kind, "best": cell.best, "second": cell.second, "tied": cell.tied,
            "note": footnote_mark(cell.note) if cell.note is not None else None,
            "anchor": f"t{table_id}-{cell.note}" if cell.note is not None else "",
            "published": [_published_view(m, metric) for m in cell.published]}


MAX_HTML_COLUMNS = 8  # metric columns per stacked HTML table: fits a 1400 px window without sideways scrolling


def _chunks(table: AccuracyTable) -> list[tuple[str, list[tuple[str, int]]]]:
    """(dataset, [(scale, width), ...]) pieces: one per dataset, split further when wider than MAX_HTML_COLUMNS."""
    pieces: list[tuple[str, list[tuple[str, int]]]] = []
    for dataset, scale, width in table.groups():
        last = pieces[-1] if pieces else None
        if last and last[0] == dataset and sum(w for _, w in last[1]) + width <= MAX_HTML_COLUMNS:
            last[1].append((scale, width))
        else:
            pieces.append((dataset, [(scale, width)]))
    return pieces


def _accuracy_part(table: AccuracyTable, dataset: str, groups: list[tuple[str, int]], table_id: int) -> dict[str, Any]:
    """Some scales of one dataset: the HTML stacks these so the page does not scroll sideways."""
    scales = {s for s, _ in groups}
    indices = [i for i, col in enumerate(table.columns) if col.dataset == dataset and col.scale in scales]
    columns = [table.columns[i] for i in indices]
    starts, index = set(), 0
    for _, width in groups:
        starts.add(index)
        index += width
    return {
        "dataset": dataset_title(dataset),
        "groups": [{"title": f"{dataset_title(dataset)} {scale_title(s)}", "span": n} for s, n in groups],
        "metrics": [{"title": metric_title(c.metric), "arrow": "↓" if lower_better(c.metric) else "↑"} for c in columns],
        "starts": starts,
        "rows": [{"label": row.label, "cells": [_cell_view(row.cells[i], table.columns[i].metric, table_id)
                                               for i in indices]}
                 for row in table.rows],
    }


def _accuracy_view(table: AccuracyTable, table_id: int) -> dict[str, Any]:
    return {
        "protocol": table.protocol,
        "parts": [_accuracy_part(table, d, groups, table_id) for d, groups in _chunks(table)],
        "has_published": any(c.published for r in table.rows for c in r.cells),
        "footnotes": [{"mark": footnote_mark(i + 1), "anchor": f"t{table_id}-{i + 1}", "text": text}
                      for i, text in enumerate(table.footnotes)],
        "dropped": table.dropped,
        "rule": significance_rule(table), "few": few_images_note(table),
        "ranks": _rank_view(table),
        "pairs": [paired_display(e) for e in paired_entries(table)],
        "pairs_note": _pairs_note(table) if table.tested else "",
    }


def _rank_view(table: AccuracyTable) -> dict[str, Any] | None:
    if len({(c.dataset, c.scale) for c in table.columns}) < 2 or len(table.rows) < 2:
        return None
    metrics, body = rank_rows(table)
    return {"header": ["Method", *(f"{metric_title(m)} rank" for m in metrics)], "rows": body, "note": RANK_NOTE}


def _cost_view(rows: Sequence[CostRow], notes: _Footnotes) -> dict[str, Any]:
    kinds = ordered_unique(r.memory_kind for r in rows if r.memory_kind)
    protocols = ordered_unique(r.protocol for r in rows)
    frames = has_frame_rates(rows)
    groups = []
    for r in rows:
        key = (r.dataset, r.scale, r.protocol)
        if not groups or groups[-1]["key"] != key:
            title = f"{dataset_title(r.dataset)} {scale_title(r.scale)}" + (f" [{r.protocol}]" if len(protocols) > 1 else "")
            groups.append({"key": key, "title": title, "rows": []})
        groups[-1]["rows"].append({
            "label": r.label, "random": r.random_weights,
            "reason": r.reason, "footnote": notes.number(r.label, r.message) if r.reason == "error" else None,
            "mpix": fmt(r.output_mpix, 3), "time": fmt(r.time_ms, 1), "spread": r.spread_text, "fps": fmt_rate(r.fps),
            "frames": [{"text": r.frame_text(k), "title": r.frame_notes.get(k, "")} for k in FRAME_RATES] if frames else [],
            "memory": fmt(r.memory_mb, 1), "memory_title": r.memory_kind,
            "params": fmt(r.params / 1e6 if r.params is not None else None, 3),
            "flops": fmt(r.flops / 1e9 if r.flops is not None else None, 2),
            "peak": fmt(r.peak_percent, 0),
            "best_time": r.best_time, "tied_time": r.tied_time, "best_memory": r.best_memory,
        })
    warmups = ordered_unique(str(r.time_warmup) for r in rows if r.time_repeats)
    timing = (f"the median after {'/'.join(warmups)} warm-up call{'s' if warmups != ['1'] else ''}" if warmups else "")
    return {"header": cost_header(rows), "groups": groups, "peak": has_peak(rows), "protocols": protocols, "kinds": kinds,
            "timing": timing, "devices": ordered_unique(f"{r.device} {r.precision}" for r in rows),
            "has_random": any(r.random_weights for r in rows), "has_spread": any(r.spread for r in rows),
            "has_count": any(r.spread_text for r in rows),
            "frames_note": frame_rate_note(rows), "frames_na": frame_rate_reasons(rows),
            "figure_notes": figure_note_lines(rows),
            "single_repeat": bool(rows) and all(r.time_repeats == 1 for r in rows if r.time_repeats),
            "time_rule": TIME_RULE, "few": ""}


def _variant_view(rows: Sequence[VariantRow], names: Sequence[str]) -> dict[str, Any]:
    """The precision / compile comparison for the page: the same cells as the Markdown, signs coloured."""
    reasons: list[str] = []
    body = []
    for r in rows:
        cells = variant_cells(r, names, reasons)
        deltas = []
        for m, text in zip(names, cells[6:]):
            value = r.deltas.get(m)
            better = None if value is None else ((value < 0) if lower_better(m) else (value > 0))
            sign = ("na" if value is None else "same" if text.startswith("±") else "better" if better else "worse")
            deltas.append({"text": text, "sign": sign})
        body.append({"label": cells[0], "case": cells[1], "variant": cells[2], "time": cells[3],
                     "reference": cells[4], "speedup": cells[5], "faster": r.speedup is not None and r.speedup > 1,
                     "deltas": deltas})
    return {"header": variant_header(names), "rows": body, "notes": variant_notes(rows, reasons)}


def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2")


def render_html(data: RunData, tables: Sequence[AccuracyTable], cost: Sequence[CostRow],
                published: Sequence[dict[str, Any]], plots: dict[str, dict[str, bytes]],
                visuals: Sequence[VisualRow], variants: tuple[Sequence[VariantRow], Sequence[str]] = ((), ())) -> str:
    """The report page as one string; everything embedded. `data.cases` carry their variant labels
    (`with_variant_labels`) when the run has several precisions or compile settings."""
    notes = _Footnotes()
    accuracy = [_accuracy_view(t, i + 1) for i, t in enumerate(tables)]
    cost_view = _cost_view(cost, notes)
    few = few_repeats_note(data.cases)
    cost_view["few"] = few[:1].upper() + few[1:] + "." if few else ""
    published_view = []
    for e in published:
        cells = published_display(e)
        dplaces = delta_places(e.get("places") if isinstance(e.get("places"), int) else None, str(e["metric"]))
        published_view.append({
            "label": cells[0], "dataset": cells[1], "scale": cells[2], "metric": cells[3], "ours": cells[4],
            "published": cells[5], "delta": cells[6], "kind": cells[7], "protocol": cells[8],
            "published_protocol": e["published_protocol"], "same_protocol": e["same_protocol"], "source": e["source"],
            "sign": delta_sign(float(e["delta"]), e.get("places") if isinstance(e.get("places"), int) else None,
                               str(e["metric"]))})
    protocols = ordered_unique(c.protocol for c in data.cases)
    return _template().render(
        title=f"asr-bench report — {data.run_dir.name}",
        run_name=data.run_dir.name,
        protocols=protocols,
        n_cases=len(data.cases),
        partial=data.partial,
        statuses=status_words(data.cases),
        machine=machine(data.run),
        cost_only=cost_only_summary(data.cases),
        unsupported=unsupported_summary(data.cases),
        protocol_fields=protocol_fields(data.run, protocols),
        provenance=provenance_rows(data.cases),
        environment=_environment(data.run),
        config_yaml=_config_yaml(data.run),
        accuracy=accuracy,
        cost=cost_view,
        published=published_view,
        plots=[{"title": TITLES.get(name, name), "name": name,
                "caption": stage_caption(data.cases) if name == "stages" else "",
                "wide": name == "stages",  # one bar per method and scale: the labels need the page's width
                "uri": "data:image/png;base64," + base64.b64encode(files["png"]).decode("ascii")}
               for name, files in plots.items()],
        variants=_variant_view(*variants) if variants[0] else None,
        visuals=visuals,
        footnotes=notes.listing(),
    )


TEMP_PREFIX = atomic.TEMP_PREFIX  # the report's temp files, as every writer's (asr_bench.atomic)


def _write(path: Path, text: str | bytes) -> Path:
    """Temp file + rename (asr_bench.atomic): a reader never sees half a file, a failed write (a full disk) leaves
    the old file and no temp file, and the file gets the user's umask like any file they create."""
    return atomic.write_bytes(path, text if isinstance(text, bytes) else text.encode("utf-8"))


def render_report(run_dir: Path, published_dir: Path | None = None) -> dict[str, Path]:
    """Render every table, plot and the HTML of a run folder from its store alone; returns name -> path.

    Names: 'accuracy.md|tex|csv', 'cost.md|tex|csv', 'published.md|tex|csv' (when a published folder is
    given), 'precision.md|tex|csv' (when the run has several precisions or compile settings), 'tables.tex' (a complete LaTeX document inputting the .tex tables), 'plots/<name>.png|pdf|svg'
    (including one 'visual_<dataset>_x<scale>_<image>.png' figure per crop folder), 'report.html'.
    """
    # the public reading API: DataFrames + the records they were built from (a partial run: the header says it)
    results = load(Path(run_dir), warn_partial=False)
    stored = results.data
    data = dataclasses.replace(stored, cases=with_variant_labels(stored.cases))  # fp32 and bf16 rows kept apart
    published_numbers = load_published(published_dir)
    metrics = configured_metrics(data.run)
    tables = accuracy_tables(data.cases, published_numbers, metrics, images=data.images)
    peak = data.run.get("gemm_peak") if isinstance(data.run.get("gemm_peak"), dict) else {}
    cost = cost_rows(data.cases, peak.get("gflops"))
    published = published_rows(tables)
    plots = all_plots(data.cases, published_numbers)
    variants = variant_rows(stored.cases, metrics)
    for folder in (data.run_dir, data.run_dir / "tables", data.run_dir / "plots"):
        atomic.clean(folder)  # temp files of a render killed midway (the files they were to replace are intact)
    return _write_all(data, published_dir, tables, cost, published, plots, variants, stored)


def _write_all(data: RunData, published_dir: Path | None, tables: Any, cost: Any, published: Any,
               plots: dict[str, bytes], variants: tuple[Any, Any] = ((), ()),
               stored: RunData | None = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    tables_dir = data.run_dir / "tables"
    texts = {"accuracy.md": accuracy_markdown(tables, data.cases), "accuracy.tex": accuracy_latex(tables, data.cases),
             "accuracy.csv": accuracy_csv(tables), "cost.md": cost_markdown(cost, data.cases),
             "cost.tex": cost_latex(cost, data.cases), "cost.csv": cost_csv(cost),
             "pairwise.csv": pairwise_csv(tables), "time_pairwise.csv": time_pairwise_csv(data.cases)}
    inputs = [name for name, has in (("accuracy", bool(tables)), ("cost", bool(cost))) if has]
    if variants[0]:
        texts |= {"precision.md": variant_markdown(*variants), "precision.tex": variant_latex(*variants),
                  "precision.csv": variant_csv(*variants)}
        inputs.append("precision")
    if published_dir is not None:
        texts |= {"published.md": published_markdown(published), "published.tex": published_latex(published),
                  "published.csv": published_csv(published)}
        if published:
            inputs.append("published")
    texts["tables.tex"] = latex_document(inputs)
    for name, text in texts.items():
        out[name] = _write(tables_dir / name, text)
    for name, files in plots.items():
        for fmt_name, payload in files.items():
            out[f"plots/{name}.{fmt_name}"] = _write(data.run_dir / "plots" / f"{name}.{fmt_name}", payload)
    # the engine names a crop by the case's variant label (the plain label for fp32 eager), in every run
    crop_cases = [dataclasses.replace(c, label=variant_label(c)) for c in (stored or data).cases]
    visuals = visual_rows(data.run_dir, crop_cases, data.images)
    for row in visuals:
        name = f"plots/visual_{slug(row.dataset)}_x{row.scale}_{row.image}.png"
        out[name] = _write(data.run_dir / name, figure_png(row))
    out["report.html"] = _write(data.run_dir / "report.html",
                                render_html(data, tables, cost, published, plots, visuals, variants))
    return out
