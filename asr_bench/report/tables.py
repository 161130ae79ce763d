"""Tables in paper layout: Markdown, LaTeX (booktabs) and CSV, plus the plain-text run summary.

Accuracy: rows = method x encoder label, column groups = dataset x scale, one column per metric, best per
column in bold. Cost: one row per case. Every table names the protocol its numbers were made under.
CSV cells keep full precision (repr of the float) so a CSV round-trips to the stored numbers.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..results.schema import CaseRecord
from ..results.csv_views import csv_text
from .model import (
    MISSING, AccuracyTable, Cell, CostRow, accuracy_tables, dataset_title, decimals, fmt, fmt_delta, fmt_rate,
    lower_better, metric_sort_key, metric_title, na_text, ordered_unique, scale_title,
)

# ------------------------------------------------------------------------------------------ helpers


def _arrow(metric: str) -> str:
    return "↓" if lower_better(metric) else "↑"


def _published_suffix(cell: Cell, metric: str) -> str:
    """' (pub 32.38, +0.12)' for Markdown; '†' marks a number published under another protocol."""
    if not cell.published:
        return ""
    places = decimals(metric)
    parts = []
    for match in cell.published:
        mark = "" if match.same_protocol else f"†{match.row.protocol}"
        parts.append(f"pub {match.row.value:.{places}f}{mark}, {fmt_delta(match.delta, places)}")
    return " (" + "; ".join(parts) + ")"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "–": "--", "×": r"$\times$", "†": r"$^\dagger$"}


WIDE_COLUMNS = 8  # wider accuracy tables are scaled to the text width (\resizebox, graphicx)


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


# ------------------------------------------------------------------------------------------ accuracy


def accuracy_markdown(tables: Sequence[AccuracyTable]) -> str:
    parts = []
    for table in tables:
        header = ["Method"] + [f"{col.title}{_arrow(col.metric)}" for col in table.columns]
        rows = []
        for row in table.rows:
            cells = [row.label]
            for col, cell in zip(table.columns, row.cells):
                text = f"**{cell.text}**" if cell.best else cell.text
                cells.append(text + _published_suffix(cell, col.metric))
            rows.append(cells)
        parts.append(f"### Accuracy — protocol: {table.protocol}\n\n"
                      + _md_table(header, rows, ["l"] + ["r"] * len(table.columns)))
        notes = ["Best per column in **bold**. ↑ higher is better, ↓ lower is better."]
        if any(c.published for r in table.rows for c in r.cells):
            notes.append("(pub P, ±D) = published value and delta ours − published; "
                         "† = published under a different protocol (named after †).")
        notes += [f"error in {label}: {message}" for label, message in table.errors()]
        parts.append("\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def _latex_cell(cell: Cell) -> str:
    text = latex_escape(cell.text)
    return rf"\textbf{{{text}}}" if cell.best else text


def accuracy_latex(tables: Sequence[AccuracyTable]) -> str:
    parts = []
    for table in tables:
        n = len(table.columns)
        spans, rules, start = [], [], 2
        for dataset, scale, width in table.groups():
            title = latex_escape(f"{dataset_title(dataset)} ") + rf"$\times${latex_escape(scale)}"
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{title}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        metrics = [latex_escape(metric_title(c.metric)) + (r"$\downarrow$" if lower_better(c.metric) else r"$\uparrow$")
                   for c in table.columns]
        lines = [
            r"\begin{table}[t]", r"\centering",
            rf"\caption{{Accuracy (protocol: {latex_escape(table.protocol)}). Best per column in bold.}}",
            *([r"\resizebox{\linewidth}{!}{%"] if n > WIDE_COLUMNS else []),
            rf"\begin{{tabular}}{{l{'c' * n}}}", r"\toprule",
            " & ".join(["Method", *spans]) + r" \\", " ".join(rules),
            " & ".join(["", *metrics]) + r" \\", r"\midrule",
        ]
        for row in table.rows:
            lines.append(" & ".join([latex_escape(row.label), *(_latex_cell(c) for c in row.cells)]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", *(["}"] if n > WIDE_COLUMNS else []), r"\end{table}"]
        parts.append("\n".join(lines))
    return "% requires \\usepackage{booktabs} (and graphicx for \\resizebox on wide tables)\n" + "\n\n".join(parts) + "\n"


def _csv_value(value: object) -> object:
    return "" if value is None else (repr(value) if isinstance(value, float) else value)


def accuracy_csv(tables: Sequence[AccuracyTable]) -> str:
    """Wide, paper layout; a column per dataset/scale/metric named '<dataset> x<scale> <METRIC>'.

    Values are full precision; n/a cells carry their reason; one `protocol` column states the protocol.
    """
    titles = ordered_unique(col.title for table in tables for col in table.columns)
    rows = []
    for table in tables:
        for row in table.rows:
            by_title = {col.title: (cell.value if cell.kind == "value" else cell.text)
                        for col, cell in zip(table.columns, row.cells)}
            rows.append([table.protocol, row.label, row.method, row.encoder,
                         *(_csv_value(by_title.get(t, MISSING)) for t in titles)])
    return csv_text(["protocol", "label", "method", "encoder", *titles], rows)


# ------------------------------------------------------------------------------------------ published


def published_rows(tables: Sequence[AccuracyTable]) -> list[dict[str, object]]:
    """Every (our cell, published number) pair, flat, for the comparison table."""
    out = []
    for table in tables:
        for row in table.rows:
            for col, cell in zip(table.columns, row.cells):
                for match in cell.published:
                    out.append({
                        "label": row.label, "dataset": col.dataset, "scale": col.scale, "metric": col.metric,
                        "ours": cell.value, "published": match.row.value, "delta": match.delta,
                        "protocol": table.protocol, "published_protocol": match.row.protocol,
                        "same_protocol": match.same_protocol, "source": match.row.source,
                    })
    return out


_PUBLISHED_HEADER = ["Method", "Dataset", "Scale", "Metric", "Ours", "Published", "Δ (ours − pub)",
                     "Protocol (ours)", "Protocol (pub)", "Source"]


def _published_display(entry: dict[str, object]) -> list[str]:
    places = decimals(str(entry["metric"]))
    same = "" if entry["same_protocol"] else " (different)"
    return [str(entry["label"]), dataset_title(str(entry["dataset"])), scale_title(str(entry["scale"])),
            metric_title(str(entry["metric"])), fmt(entry["ours"], places), fmt(entry["published"], places),
            fmt_delta(float(entry["delta"]), places), str(entry["protocol"]),
            f"{entry['published_protocol']}{same}", str(entry["source"])]


def published_markdown(entries: Sequence[dict[str, object]]) -> str:
    if not entries:
        return "No published numbers matched this run's cases.\n"
    body = _md_table(_PUBLISHED_HEADER, [_published_display(e) for e in entries], ["l"] * 4 + ["r"] * 3 + ["l"] * 3)
    return "### Ours vs published\n\n" + body + "\n"


def published_latex(entries: Sequence[dict[str, object]]) -> str:
    lines = [r"\begin{table}[t]", r"\centering",
             r"\caption{Ours vs published numbers ($\Delta$ = ours $-$ published).}",
             r"\begin{tabular}{llllrrrlll}", r"\toprule",
             " & ".join(latex_escape(h) for h in _PUBLISHED_HEADER).replace("Δ", r"$\Delta$").replace("−", "$-$") + r" \\",
             r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in _published_display(e)) + r" \\" for e in entries]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "% requires \\usepackage{booktabs}\n" + "\n".join(lines) + "\n"


def published_csv(entries: Sequence[dict[str, object]]) -> str:
    header = ["label", "dataset", "scale", "metric", "ours", "published", "delta", "protocol",
              "published_protocol", "same_protocol", "source"]
    return csv_text(header, [[_csv_value(e[h]) for h in header] for e in entries])


# ------------------------------------------------------------------------------------------ cost


def _memory_kinds(rows: Sequence[CostRow]) -> list[str]:
    return ordered_unique(r.memory_kind for r in rows if r.memory_kind)


def _timing_note(rows: Sequence[CostRow]) -> str:
    settings = ordered_unique(f"{r.time_repeats} repeats after {r.time_warmup} warm-up" for r in rows if r.time_repeats)
    devices = ordered_unique(f"{r.device} {r.precision}" for r in rows)
    note = "time = median per image at batch 1"
    if settings:
        note += f" ({'; '.join(settings)})"
    return note + f"; device: {', '.join(devices)}"


def _cost_cells(row: CostRow, bold: str = "**") -> list[str]:
    """Display strings: output MP, time, fps, memory, params (M), GFLOPs. n/a reason in the time cell."""
    def b(text: str, on: bool) -> str:
        return f"{bold}{text}{bold}" if on and bold else text

    if row.reason:
        time_text = row.reason
    else:
        time_text = b(fmt(row.time_ms, 1), row.best_time)
    return [
        fmt(row.output_mpix, 3), time_text, fmt_rate(row.fps),
        b(fmt(row.memory_mb, 1), row.best_memory),
        fmt(row.params / 1e6 if row.params is not None else None, 3),
        fmt(row.flops / 1e9 if row.flops is not None else None, 2),
    ]


def cost_header(rows: Sequence[CostRow]) -> list[str]:
    kinds = _memory_kinds(rows)
    memory = f"Memory (MB, {kinds[0]})" if len(kinds) == 1 else "Memory (MB)"
    return ["Method", "Dataset", "Scale", "Output (MP)", "Time (ms)", "FPS", memory, "Params (M)", "FLOPs (G)"]


def _cost_prefix(row: CostRow, multi_protocol: bool) -> list[str]:
    label = f"{row.label} [{row.protocol}]" if multi_protocol else row.label
    return [label, dataset_title(row.dataset), scale_title(row.scale)]


def cost_markdown(rows: Sequence[CostRow]) -> str:
    protocols = ordered_unique(r.protocol for r in rows)
    kinds = _memory_kinds(rows)
    header = cost_header(rows) + (["Memory kind"] if len(kinds) > 1 else [])
    body = [_cost_prefix(r, len(protocols) > 1) + _cost_cells(r)
            + ([r.memory_kind] if len(kinds) > 1 else []) for r in rows]
    notes = [f"protocol: {', '.join(protocols)}", _timing_note(rows),
             "FPS = 1000 / time; fastest time and smallest memory per dataset and scale in **bold**"]
    return ("### Cost — protocol: " + ", ".join(protocols) + "\n\n"
            + _md_table(header, body, ["l", "l", "l"] + ["r"] * (len(header) - 3)) + "\n\n"
            + "\n".join(f"- {n}" for n in notes) + "\n")


def cost_latex(rows: Sequence[CostRow]) -> str:
    protocols = ordered_unique(r.protocol for r in rows)
    kinds = _memory_kinds(rows)
    header = cost_header(rows) + (["Memory kind"] if len(kinds) > 1 else [])
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{Cost (protocol: {latex_escape(', '.join(protocols))}); {latex_escape(_timing_note(rows))}.}}",
             rf"\begin{{tabular}}{{lll{'r' * (len(header) - 3)}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    for r in rows:
        cells = [latex_escape(c) for c in _cost_prefix(r, len(protocols) > 1)]
        cells += [latex_escape(c) for c in _cost_cells(r, bold="")]
        if r.best_time and not r.reason:
            cells[4] = rf"\textbf{{{cells[4]}}}"
        if r.best_memory:
            cells[6] = rf"\textbf{{{cells[6]}}}"
        cells += [latex_escape(r.memory_kind)] if len(kinds) > 1 else []
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "% requires \\usepackage{booktabs}\n" + "\n".join(lines) + "\n"


def cost_csv(rows: Sequence[CostRow]) -> str:
    header = ["protocol", "label", "dataset", "scale", "status", "output_mpix", "time_ms", "fps", "memory_mb",
              "memory_kind", "params", "flops", "device", "precision", "time_repeats", "time_warmup"]
    body = [[r.protocol, r.label, r.dataset, r.scale, r.reason or "ok", *(
        _csv_value(v) for v in (r.output_mpix, r.time_ms, r.fps, r.memory_mb, r.memory_kind, r.params, r.flops,
                                r.device, r.precision, r.time_repeats, r.time_warmup))] for r in rows]
    return csv_text(header, body)


# ------------------------------------------------------------------------------------------ summary


def summary_table(cases: Sequence[CaseRecord]) -> str:
    """Compact plain-text table printed at the end of a run: one line per case, aligned columns."""
    if not cases:
        return "(no cases)"
    metrics = []
    for table in accuracy_tables(cases):
        metrics += [c.metric for c in table.columns]
    metrics = sorted(ordered_unique(metrics), key=metric_sort_key)
    # The reason a case has no scores goes in a last column, so the metric columns stay narrow and aligned.
    header = ["method", "dataset", "scale", "protocol", *(metric_title(m) for m in metrics), "time ms", "mem MB",
              "note"]
    lines = []
    for case in cases:
        if case.status == "ok":
            values = [fmt(case.metrics.get(m), decimals(m)) if case.metrics.get(m) is not None
                      else ("n/a" if m in case.notes else MISSING) for m in metrics]
            note = ""
        else:
            values, note = ["n/a"] * len(metrics), na_text(case)
        measured = case.status in ("ok", "no-weights")
        lines.append([case.label, case.dataset, scale_title(case.scale), case.protocol, *values,
                      fmt(case.time_ms if measured else None, 1), fmt(case.memory_mb if measured else None, 1), note])
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    numeric = set(range(4, len(header) - 1))

    def line(cells: list[str], strip: bool = True) -> str:
        text = "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
        return text.rstrip() if strip else text

    rule = "  ".join("-" * w for w in widths)
    errors = [f"  error in {c.label} {c.dataset} x{c.scale}: {c.error}" for c in cases if c.status == "error"]
    return "\n".join([line(header, strip=False), rule, *(line(r) for r in lines), *errors])

