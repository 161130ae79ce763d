"""Tables in paper layout: Markdown, LaTeX (booktabs) and CSV, plus the plain-text run summary.

All formats render the one table model (`model.py`; its value grid is a pandas `pivot_table` over the results
DataFrame). The renderers here are our own, not pandas' `Styler.to_latex` / `to_html`: Styler cannot put a
`\\cmidrule(lr)` under each spanning dataset x scale header, a footnote marker in an n/a cell with the reason
below the table, or shrink only a table wider than the text; the HTML needs per-cell published-value pills
and a layout that stacks on a phone (templates/report.html.j2). CSV cells keep full precision (repr of the
float) so a CSV round-trips to the stored numbers.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from ..results.csv_views import csv_text
from ..results.schema import CaseRecord
from .model import (
    FIGURE_NOTES, FRAME_RATES, MISSING, AccuracyTable, Cell, CostRow, VariantRow, column_chunks, cost_only_summary, dataset_title,
    decimals, delta_places, fmt, fmt_delta, fmt_rate, footnote_mark, frame_rate_reasons, has_frame_rates,
    lower_better, metric_sort_key, metric_title, ordered_unique, scale_title, unsupported_summary,
    with_variant_labels,
)

# ------------------------------------------------------------------------------------------ helpers


def _arrow(metric: str) -> str:
    return "↓" if lower_better(metric) else "↑"


def published_delta_text(match: object, metric: str) -> str:
    return fmt_delta(match.delta, delta_places(match.row.places, metric))  # type: ignore[attr-defined]


def _published_suffix(cell: Cell, metric: str) -> str:
    """' (pub 32.38, +0.1234)' for Markdown; 'ref' for a number measured with the official code; '†' marks a
    number made under another protocol."""
    if not cell.published:
        return ""
    parts = []
    for match in cell.published:
        mark = "" if match.same_protocol else f"†{match.row.protocol}"
        what = "ref" if match.row.kind == "reference" else "pub"
        places = match.row.places if match.row.places is not None else decimals(metric)
        parts.append(f"{what} {match.row.value:.{places}f}{mark}, {published_delta_text(match, metric)}")
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
                  "–": "--", "—": "---", "×": r"$\times$", "†": r"$^\dagger$", "±": r"$\pm$", "Δ": r"$\Delta$",
                  "−": "$-$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "µ": r"$\mu$", "·": r"$\cdot$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) if ord(ch) < 128 or ch in _LATEX_SPECIAL else "?" for ch in str(text))


LATEX_MAX_COLUMNS = 10  # metric columns per stacked tabular: wider tables become several, stacked in one float


def _fit(lines: list[str]) -> list[str]:
    """Shrink a tabular to the text width only when it is wider (never enlarge a narrow one)."""
    return [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%", *lines, "}"]


def _latex_notes(notes: Sequence[str]) -> list[str]:
    """Notes under a table, in small type, wrapped (\\sloppy: long file names must not stick out)."""
    if not notes:
        return []
    body = r"\par ".join(notes)  # \par, not \\: a note starting with '[' would be read as \\'s argument
    return [r"\par\smallskip", r"{\footnotesize\sloppy\raggedright " + body + r"\par}"]


def _accuracy_notes(table: AccuracyTable, markdown: bool) -> list[str]:
    bold, second = ("**bold**", "<u>underlined</u>") if markdown else ("bold", "underlined")
    notes = [f"Best per column in {bold}, second best {second}. ↑ higher is better, ↓ lower is better."]
    notes += [f"({footnote_mark(i + 1)}) {reason}" for i, reason in enumerate(table.footnotes)]
    notes += table.dropped
    if any(c.published for r in table.rows for c in r.cells):
        notes.append("(pub P, ±D) = published value and delta ours − published; (ref R, ±D) = measured with the "
                     "official code; † = made under a different protocol (named after †).")
    return notes


# ------------------------------------------------------------------------------------------ accuracy


def _md_cell(cell: Cell) -> str:
    if cell.note is not None:
        return f"{cell.text} ({footnote_mark(cell.note)})"
    if cell.best:
        return f"**{cell.text}**"
    if cell.second:
        return f"<u>{cell.text}</u>"
    return cell.text


def accuracy_markdown(tables: Sequence[AccuracyTable], cases: Sequence[CaseRecord] = ()) -> str:
    parts = []
    for table in tables:
        header = ["Method"] + [f"{col.title}{_arrow(col.metric)}" for col in table.columns]
        rows = [[row.label] + [_md_cell(cell) + _published_suffix(cell, col.metric)
                               for col, cell in zip(table.columns, row.cells)] for row in table.rows]
        parts.append(f"### Accuracy — protocol: {table.protocol}\n\n"
                     + _md_table(header, rows, ["l"] + ["r"] * len(table.columns)))
        parts.append("\n".join(f"- {n}" for n in _accuracy_notes(table, markdown=True)))
    extra = [line for line in (cost_only_summary(cases),) if line]
    if not tables:
        parts.append("No method ran with weights, so there are no accuracy numbers (see the cost table).")
    if extra:
        parts.append("\n".join(f"- {n}" for n in extra))
    return "\n\n".join(parts) + "\n"


def _latex_cell(cell: Cell) -> str:
    if cell.note is not None:
        return rf"--\textsuperscript{{{footnote_mark(cell.note)}}}"
    text = latex_escape(cell.text)
    if cell.best:
        return rf"\textbf{{{text}}}"
    if cell.second:
        return rf"\underline{{{text}}}"
    return text


def accuracy_latex(tables: Sequence[AccuracyTable], cases: Sequence[CaseRecord] = ()) -> str:
    """One `table` per protocol; '' (a comment) when no method has numbers: no empty tables."""
    if not tables:
        return "% no accuracy table: no method ran with weights (see the cost table)\n"
    parts = []
    for table in tables:
        pieces = []
        for indices in column_chunks(table, LATEX_MAX_COLUMNS):
            columns = [table.columns[i] for i in indices]
            groups = ordered_unique((c.dataset, c.scale) for c in columns)
            spans, rules, start = [], [], 2
            for dataset, scale in groups:
                width = sum((c.dataset, c.scale) == (dataset, scale) for c in columns)
                title = latex_escape(f"{dataset_title(dataset)} ") + rf"$\times${latex_escape(scale)}"
                spans.append(rf"\multicolumn{{{width}}}{{c}}{{{title}}}")
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
                start += width
            metrics = [latex_escape(metric_title(c.metric)) + (r"$\downarrow$" if lower_better(c.metric) else r"$\uparrow$")
                       for c in columns]
            tabular = [rf"\begin{{tabular}}{{l{'c' * len(columns)}}}", r"\toprule",
                       " & ".join(["Method", *spans]) + r" \\", " ".join(rules),
                       " & ".join(["", *metrics]) + r" \\", r"\midrule"]
            tabular += [" & ".join([latex_escape(row.label), *(_latex_cell(row.cells[i]) for i in indices)]) + r" \\"
                        for row in table.rows]
            tabular += [r"\bottomrule", r"\end{tabular}"]
            pieces += ([r"\par\medskip"] if pieces else []) + _fit(tabular)
        notes = [latex_escape(n) for n in _accuracy_notes(table, markdown=False)]
        lines = [r"\begin{table}[htbp]", r"\centering",
                 rf"\caption{{Accuracy (protocol: {latex_escape(table.protocol)}).}}",
                 *pieces, *_latex_notes(notes), r"\end{table}"]
        parts.append("\n".join(lines))
    return "% requires \\usepackage{booktabs,graphicx}\n" + "\n\n".join(parts) + "\n"


def _csv_value(value: object) -> object:
    return "" if value is None else (repr(value) if isinstance(value, float) else value)


def accuracy_csv(tables: Sequence[AccuracyTable]) -> str:
    """Wide, paper layout; a column per dataset/scale/metric named '<dataset> x<scale> <METRIC>'.

    Values are full precision; an n/a cell is empty and the row's `notes` column says why, once per reason.
    """
    titles = ordered_unique(col.title for table in tables for col in table.columns)
    rows = []
    for table in tables:
        for row in table.rows:
            by_title = {col.title: (cell.value if cell.kind == "value" else None)
                        for col, cell in zip(table.columns, row.cells)}
            reasons = ordered_unique(
                f"{col.title}: {table.footnotes[cell.note - 1]}" for col, cell in zip(table.columns, row.cells)
                if cell.note is not None)
            rows.append([table.protocol, row.label, row.method, row.encoder,
                         *(_csv_value(by_title.get(t)) for t in titles), "; ".join(reasons)])
    return csv_text(["protocol", "label", "method", "encoder", *titles, "notes"], rows)


# ------------------------------------------------------------------------------------------ published


def published_rows(tables: Sequence[AccuracyTable]) -> list[dict[str, object]]:
    """Every (our cell, published or reference number) pair, flat, for the comparison table."""
    out = []
    for table in tables:
        for row in table.rows:
            for col, cell in zip(table.columns, row.cells):
                for match in cell.published:
                    out.append({
                        "label": row.label, "dataset": col.dataset, "scale": col.scale, "metric": col.metric,
                        "ours": cell.value, "published": match.row.value, "delta": match.delta,
                        "places": match.row.places, "kind": match.row.kind,
                        "protocol": table.protocol, "published_protocol": match.row.protocol,
                        "same_protocol": match.same_protocol, "source": match.row.source,
                    })
    return out


_PUBLISHED_HEADER = ["Method", "Dataset", "Scale", "Metric", "Ours", "Theirs", "Δ (ours − theirs)", "Kind",
                     "Protocol (ours)", "Protocol (theirs)", "Source"]


def published_display(entry: dict[str, object], sources: list[str] | None = None) -> list[str]:
    """Display strings of one comparison row: ours to the delta's precision, theirs as printed, the delta to
    the printed precision plus two digits ('±0.0000' when equal). With `sources`, the source is a number."""
    metric = str(entry["metric"])
    places = entry.get("places")
    dplaces = delta_places(places if isinstance(places, int) else None, metric)
    theirs_places = places if isinstance(places, int) else decimals(metric)
    same = "" if entry["same_protocol"] else " (different)"
    source = str(entry["source"])
    if sources is not None:
        if source not in sources:
            sources.append(source)
        source = f"[{sources.index(source) + 1}]"
    return [str(entry["label"]), dataset_title(str(entry["dataset"])), scale_title(str(entry["scale"])),
            metric_title(metric), fmt(entry["ours"], dplaces), fmt(entry["published"], theirs_places),
            fmt_delta(float(entry["delta"]), dplaces), str(entry.get("kind", "published")), str(entry["protocol"]),
            f"{entry['published_protocol']}{same}", source]


def published_markdown(entries: Sequence[dict[str, object]]) -> str:
    if not entries:
        return "No published or reference numbers matched this run's cases.\n"
    body = _md_table(_PUBLISHED_HEADER, [published_display(e) for e in entries],
                     ["l"] * 4 + ["r"] * 3 + ["l"] * 4)
    return ("### Ours vs published and reference numbers\n\n" + body + "\n\n"
            "- published = printed in a paper; reference = measured with the official code. "
            "Δ to the printed precision plus two digits.\n")


def published_latex(entries: Sequence[dict[str, object]]) -> str:
    if not entries:
        return "% no published or reference number matched this run's cases\n"
    sources: list[str] = []
    rows = []
    for e in entries:  # narrower than the Markdown: dataset, scale and metric in one cell; our protocol in the caption
        c = published_display(e, sources)
        mark = "" if e["same_protocol"] else r"$^\dagger$"
        rows.append([latex_escape(c[0]), latex_escape(f"{c[1]} ") + rf"$\times${latex_escape(str(e['scale']))} "
                     + latex_escape(c[3]), latex_escape(c[4]), latex_escape(c[5]), latex_escape(c[6]),
                     latex_escape(c[7]), latex_escape(str(e["published_protocol"])) + mark, c[10]])
    header = " & ".join(["Method", "Case", "Ours", "Theirs", r"$\Delta$", "Kind", "Protocol (theirs)", "Source"]) + r" \\"
    tabular = [r"\begin{tabular}{llrrrlll}", r"\toprule", header, r"\midrule"]
    tabular += [" & ".join(row) + r" \\" for row in rows]
    tabular += [r"\bottomrule", r"\end{tabular}"]
    ours = ", ".join(ordered_unique(str(e["protocol"]) for e in entries))
    notes = [latex_escape(f"[{i + 1}] {s}") for i, s in enumerate(sources)]
    lines = [r"\begin{table}[htbp]", r"\centering",
             r"\caption{Ours (protocol: " + latex_escape(ours) + r") vs published (printed in a paper) and reference "
             r"(measured with the official code) numbers; $\Delta$ = ours $-$ theirs, to the printed precision plus "
             r"two digits; $^\dagger$ = theirs was made under another protocol.}",
             *_fit(tabular), *_latex_notes(notes), r"\end{table}"]
    return "% requires \\usepackage{booktabs,graphicx}\n" + "\n".join(lines) + "\n"


def published_csv(entries: Sequence[dict[str, object]]) -> str:
    header = ["label", "dataset", "scale", "metric", "ours", "published", "delta", "kind", "protocol",
              "published_protocol", "same_protocol", "source"]
    return csv_text(header, [[_csv_value(e.get(h)) for h in header] for e in entries])


# ------------------------------------------------------------------------------------------ cost


def _memory_kinds(rows: Sequence[CostRow]) -> list[str]:
    return ordered_unique(r.memory_kind for r in rows if r.memory_kind)


def timing_note(rows: Sequence[CostRow]) -> str:
    warmups = ordered_unique(str(r.time_warmup) for r in rows if r.time_repeats)
    devices = ordered_unique(f"{r.device} {r.precision}" for r in rows)
    note = "time = median per image at batch 1"
    if any(r.spread for r in rows):
        note += " (min–max of the timed calls beside it, n = their number)"
    elif any(r.spread_text for r in rows):
        note += " (n = timed calls)"
    if warmups:
        note += f"; after {'/'.join(warmups)} warm-up call{'s' if warmups != ['1'] else ''}"
    return note + f"; device: {', '.join(devices)}"


def frame_rate_note(rows: Sequence[CostRow]) -> str:
    """What the frame-rate columns are, '' when the run did not measure them."""
    if not has_frame_rates(rows):
        return ""
    how = ordered_unique(n for r in rows for k in FRAME_RATES for n in [r.frame_notes.get(k, "")]
                         if n and not n.startswith("n/a"))
    what = "; ".join(f"{title} = frames/s of {size}" for title, size in FRAME_RATES.values())
    return (f"{what}: one seeded random frame, once per method (in its first case), the same in every row of it"
            + (f" ({'; '.join(how)})" if how else ""))


def figure_note_lines(rows: Sequence[CostRow]) -> list[str]:
    """'time of GSASR, DIV2K x2: excludes 53.1 s of one-time setup ...': one line per distinct note."""
    lines = []
    for key, title in FIGURE_NOTES.items():
        by_note: dict[str, list[str]] = {}
        for r in rows:
            if r.figure_notes.get(key):
                by_note.setdefault(r.figure_notes[key], []).append(f"{r.label}, {dataset_title(r.dataset)} "
                                                                  f"{scale_title(r.scale)}")
        lines += [f"{title} of {'; '.join(where)}: {note}" for note, where in by_note.items()]
    return lines


def cost_header(rows: Sequence[CostRow]) -> list[str]:
    frames = [title for title, _ in FRAME_RATES.values()] if has_frame_rates(rows) else []
    peak = [PEAK_TITLE] if has_peak(rows) else []
    return ["Method", "Output (MP)", "Time (ms)", "FPS", *frames, "Memory (MB)", "Params (M)", "FLOPs (G)", *peak]


PEAK_TITLE = "% GEMM peak"


def has_peak(rows: Sequence[CostRow]) -> bool:
    """Whether any row has a "% of GEMM peak" (its FLOPs counted and the run's GEMM rate measured)."""
    return any(r.peak_percent is not None for r in rows)


def cost_values(row: CostRow, frames: bool = False, peak: bool = False) -> list[str]:
    """Display strings after the method: output MP, time, fps, [frame rates], memory, params (M), GFLOPs,
    [% of the machine's GEMM peak]."""
    time_text = MISSING if row.reason else fmt(row.time_ms, 1)
    rates = [row.frame_text(k) for k in FRAME_RATES] if frames else []
    return [fmt(row.output_mpix, 3), time_text, fmt_rate(row.fps), *rates, fmt(row.memory_mb, 1),
            fmt(row.params / 1e6 if row.params is not None else None, 3),
            fmt(row.flops / 1e9 if row.flops is not None else None, 2),
            *([fmt(row.peak_percent, 0)] if peak else [])]


def memory_column(rows: Sequence[CostRow]) -> int:
    """Index of the memory cell in `cost_values` (after the frame-rate columns when there are some)."""
    return 3 + (len(FRAME_RATES) if has_frame_rates(rows) else 0)


def _cost_groups(rows: Sequence[CostRow]) -> list[tuple[tuple[str, str, str], list[CostRow]]]:
    keys = ordered_unique((r.dataset, r.scale, r.protocol) for r in rows)
    return [(key, [r for r in rows if (r.dataset, r.scale, r.protocol) == key]) for key in keys]


def cost_notes(rows: Sequence[CostRow], cases: Sequence[CaseRecord] = (), markdown: bool = True) -> tuple[list[str], dict[str, int]]:
    """The notes under a cost table and the footnote number of each error message."""
    errors = ordered_unique(f"error in {r.label}: {r.message}" for r in rows if r.reason == "error")
    numbers = {text: i + 1 for i, text in enumerate(errors)}
    bold = "**bold**" if markdown else "bold"
    kinds = _memory_kinds(rows)
    notes = [timing_note(rows), f"memory = {', '.join(kinds)}" if kinds else "memory not measured (profiling.memory: false)",
             f"FPS = 1000 / time; fastest time and smallest memory per dataset and scale in {bold}"]
    notes += [line for line in (frame_rate_note(rows), *frame_rate_reasons(rows)) if line]
    notes += figure_note_lines(rows)
    if any(r.random_weights for r in rows):
        notes.append("* = random weights (no checkpoint): cost only, no accuracy")
    notes += [f"({footnote_mark(n)}) {text}" for text, n in numbers.items()]
    notes += [line for line in (unsupported_summary(cases),) if line]
    return notes, numbers


def _cost_label(row: CostRow, multi_protocol: bool) -> str:
    label = f"{row.label} [{row.protocol}]" if multi_protocol else row.label
    return label + ("*" if row.random_weights else "")


def cost_markdown(rows: Sequence[CostRow], cases: Sequence[CaseRecord] = ()) -> str:
    if not rows:
        return "No case ran (every one was an unsupported scale).\n"
    protocols = ordered_unique(r.protocol for r in rows)
    notes, numbers = cost_notes(rows, cases)
    header = cost_header(rows)
    frames, memory = has_frame_rates(rows), memory_column(rows)
    body = []
    for (dataset, scale, protocol), group in _cost_groups(rows):
        body.append([f"**{dataset_title(dataset)} {scale_title(scale)}**"] + [""] * (len(header) - 1))
        for r in group:
            cells = cost_values(r, frames, has_peak(rows))
            if r.reason == "error":
                cells[1] = f"{MISSING} ({footnote_mark(numbers[f'error in {r.label}: {r.message}'])})"
            if r.spread_text:
                cells[1] += f" ({r.spread_text})"
            if r.best_time and not r.reason:
                cells[1] = f"**{cells[1]}**"
            if r.best_memory:
                cells[memory] = f"**{cells[memory]}**"
            body.append([_cost_label(r, len(protocols) > 1), *cells])
    return ("### Cost — protocol: " + ", ".join(protocols) + "\n\n"
            + _md_table(header, body, ["l"] + ["r"] * (len(header) - 1)) + "\n\n"
            + "\n".join(f"- {n}" for n in notes) + "\n")


def cost_latex(rows: Sequence[CostRow], cases: Sequence[CaseRecord] = ()) -> str:
    if not rows:
        return "% no cost table: no case ran\n"
    protocols = ordered_unique(r.protocol for r in rows)
    notes, numbers = cost_notes(rows, cases, markdown=False)
    header = [latex_escape(h) for h in cost_header(rows)]
    frames, memory, width = has_frame_rates(rows), memory_column(rows), len(header)
    tabular = [rf"\begin{{tabular}}{{l{'r' * (width - 1)}}}", r"\toprule", " & ".join(header) + r" \\"]
    for (dataset, scale, protocol), group in _cost_groups(rows):
        title = latex_escape(f"{dataset_title(dataset)} ") + rf"$\times${latex_escape(scale)}"
        tabular += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\emph{{{title}}}}} \\", rf"\cmidrule(lr){{1-{width}}}"]
        for r in group:
            cells = [latex_escape(c) for c in cost_values(r, frames, has_peak(rows))]
            if r.reason == "error":
                cells[1] = rf"--\textsuperscript{{{footnote_mark(numbers[f'error in {r.label}: {r.message}'])}}}"
            if r.best_time and not r.reason:
                cells[1] = rf"\textbf{{{cells[1]}}}"
            if r.spread_text:
                cells[1] = rf"\shortstack[r]{{{cells[1]}\\ {{\scriptsize {latex_escape(r.spread_text)}}}}}"
            if r.best_memory:
                cells[memory] = rf"\textbf{{{cells[memory]}}}"
            label = latex_escape(_cost_label(r, len(protocols) > 1)).replace("*", r"$^\ast$")
            tabular.append(" & ".join([label, *cells]) + r" \\")
    tabular += [r"\bottomrule", r"\end{tabular}"]
    lines = [r"\begin{table}[htbp]", r"\centering",
             rf"\caption{{Cost (protocol: {latex_escape(', '.join(protocols))}).}}",
             *_fit(tabular), *_latex_notes([latex_escape(n).replace("*", r"$^\ast$", 1) for n in notes]),
             r"\end{table}"]
    return "% requires \\usepackage{booktabs,graphicx}\n" + "\n".join(lines) + "\n"


def cost_csv(rows: Sequence[CostRow]) -> str:
    header = ["protocol", "label", "dataset", "scale", "status", "output_mpix", "time_ms", "time_min_ms",
              "time_max_ms", "time_iqr_ms", "fps", "memory_mb", "memory_kind", "params", "flops", "device",
              "precision", "time_repeats", "time_warmup", *FRAME_RATES, *(f"{k}_note" for k in FRAME_RATES),
              *(f"{k}_note" for k in FIGURE_NOTES)]
    body = [[r.protocol, r.label, r.dataset, r.scale,
             r.reason or ("random weights" if r.random_weights else "ok"), *(
        _csv_value(v) for v in (r.output_mpix, r.time_ms, r.time_min_ms, r.time_max_ms, r.time_iqr_ms, r.fps,
                                r.memory_mb, r.memory_kind, r.params, r.flops, r.device, r.precision,
                                r.time_repeats, r.time_warmup, *(r.frames.get(k) for k in FRAME_RATES),
                                *(r.frame_notes.get(k, "") for k in FRAME_RATES),
                                *(r.figure_notes.get(k, "") for k in FIGURE_NOTES)))] for r in rows]
    return csv_text(header, body)


# ------------------------------------------------------------------------------------------ precision


def speedup_text(value: float | None) -> str:
    """'1.84×' (> 1: faster than fp32 eager); '–' where either time is missing."""
    return MISSING if value is None else f"{value:.2f}×"


def variant_header(names: Sequence[str]) -> list[str]:
    return ["Method", "Case", "Variant", "Time (ms)", "fp32 (ms)", "Speed-up",
            *(f"Δ{metric_title(m)}{' (dB)' if m.lower().startswith('psnr') else ''}" for m in names)]


def variant_cells(row: VariantRow, names: Sequence[str], reasons: list[str]) -> list[str]:
    """Display strings of one comparison row; the reason of an n/a delta is added to `reasons` and marked."""
    cells = [row.label, f"{dataset_title(row.dataset)} {scale_title(row.scale)}", row.variant,
             fmt(row.time_ms, 1), fmt(row.reference_ms, 1), speedup_text(row.speedup)]
    for m in names:
        value = row.deltas.get(m)
        if value is not None:
            cells.append(fmt_delta(value, delta_places(None, m)))
            continue
        reason = row.reason or row.notes.get(m, "n/a")
        if reason not in reasons:
            reasons.append(reason)
        cells.append(f"n/a ({footnote_mark(reasons.index(reason) + 1)})")
    return cells


def variant_notes(rows: Sequence[VariantRow], reasons: Sequence[str]) -> list[str]:
    notes = ["Each row against the same method, dataset and scale in fp32 without torch.compile: Δ = this − fp32 "
             "(PSNR in dB; ↑ metrics: positive is better, ↓ metrics: negative is better), shown to the metric's "
             "decimals plus two; speed-up = fp32 median time / this median time (above 1× = faster), both the "
             "cost table's medians on the same profiling input"]
    notes += [f"({footnote_mark(i + 1)}) {reason}" for i, reason in enumerate(reasons)]
    return notes


def variant_markdown(rows: Sequence[VariantRow], names: Sequence[str]) -> str:
    if not rows:
        return "The run has one precision and compile setting: nothing to compare.\n"
    reasons: list[str] = []
    body = [variant_cells(r, names, reasons) for r in rows]
    header = variant_header(names)
    return ("### Precision and compile vs fp32 eager\n\n"
            + _md_table(header, body, ["l", "l", "l"] + ["r"] * (len(header) - 3)) + "\n\n"
            + "\n".join(f"- {n}" for n in variant_notes(rows, reasons)) + "\n")


def variant_latex(rows: Sequence[VariantRow], names: Sequence[str]) -> str:
    if not rows:
        return "% no precision table: the run has one precision and compile setting\n"
    reasons: list[str] = []
    header = variant_header(names)
    tabular = [rf"\begin{{tabular}}{{lll{'r' * (len(header) - 3)}}}", r"\toprule",
               " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    for r in rows:
        cells = [latex_escape(c) for c in variant_cells(r, names, reasons)]
        cells = [re.sub(r"^n/a \(([a-z]+)\)$", r"--\\textsuperscript{\1}", c) for c in cells]
        cells[1] = latex_escape(f"{dataset_title(r.dataset)} ") + rf"$\times${latex_escape(r.scale)}"
        cells[6:] = [("$-$" + c[1:]) if c.startswith("-") else c for c in cells[6:]]  # a minus, not a hyphen
        tabular.append(" & ".join(cells) + r" \\")
    tabular += [r"\bottomrule", r"\end{tabular}"]
    lines = [r"\begin{table}[htbp]", r"\centering",
             r"\caption{Precision and compile: accuracy change and speed-up against fp32 eager.}",
             *_fit(tabular), *_latex_notes([latex_escape(n) for n in variant_notes(rows, reasons)]), r"\end{table}"]
    return "% requires \\usepackage{booktabs,graphicx}\n" + "\n".join(lines) + "\n"


def variant_csv(rows: Sequence[VariantRow], names: Sequence[str]) -> str:
    header = ["protocol", "label", "dataset", "scale", "variant", "time_ms", "fp32_time_ms", "speedup",
              *(f"delta_{m}" for m in names), "notes"]
    body = [[r.protocol, r.label, r.dataset, r.scale, r.variant,
             *(_csv_value(v) for v in (r.time_ms, r.reference_ms, r.speedup, *(r.deltas.get(m) for m in names))),
             "; ".join(ordered_unique([r.reason] if r.reason else [f"{m}: {n}" for m, n in r.notes.items()]))]
            for r in rows]
    return csv_text(header, body)


def latex_document(names: Sequence[str]) -> str:
    """tables/tables.tex: a complete document that `\\input`s each table file (pdflatex tables.tex in tables/)."""
    inputs = [rf"\input{{{name}}}" for name in names]
    return "\n".join([
        r"\documentclass[11pt]{article}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\begin{document}",
        *(inputs or [r"No tables: the run has no measured case."]),
        r"\end{document}",
    ]) + "\n"


# ------------------------------------------------------------------------------------------ summary

_SHORT_STATUS = {"no-weights": "cost only", "unsupported": "unsupported", "error": "error"}
SUMMARY_LABEL = 24  # longer labels are shortened with '…' so the notes keep their room
SUMMARY_WIDTH = 100  # the console summary never wraps in a 100-column terminal


def summary_table(cases: Sequence[CaseRecord], width: int = SUMMARY_WIDTH) -> str:
    """Compact plain-text table printed at the end of a run: one line per case, at most `width` columns.

    The protocol goes above the table when there is one; metric columns no case has a number in are left
    out (said below); labels and notes are shortened with '…' when a line would still be too wide.
    """
    if not cases:
        return "(no cases)"
    cases = with_variant_labels(cases)
    metrics = sorted(ordered_unique(m for c in cases for m in [*c.metrics, *c.notes]), key=metric_sort_key)
    shown = [m for m in metrics if any(c.metrics.get(m) is not None for c in cases)]
    protocols = ordered_unique(c.protocol for c in cases)
    with_protocol = len(protocols) > 1
    header = ["method", "dataset", "scale", *(["protocol"] if with_protocol else []),
              *(metric_title(m) for m in shown), "ms", "MB", "note"]
    lines = []
    for case in cases:
        if case.status == "ok":
            values = [fmt(case.metrics.get(m), decimals(m)) if case.metrics.get(m) is not None else "n/a"
                      for m in shown]
            note = ""
        else:
            values, note = [MISSING] * len(shown), _SHORT_STATUS.get(case.status, case.status)
        measured = case.status in ("ok", "no-weights")
        lines.append([case.label, case.dataset, scale_title(case.scale), *([case.protocol] if with_protocol else []),
                      *values, fmt(case.time_ms if measured else None, 1),
                      fmt(case.memory_mb if measured else None, 1), note])
    first_numeric = 4 if with_protocol else 3
    numeric = set(range(first_numeric, len(header) - 1))
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fixed = sum(widths[1:-1]) + 2 * (len(header) - 1)
    label_room = max(12, min(widths[0], SUMMARY_LABEL, width - fixed - 12))
    widths[0] = min(widths[0], label_room)
    note_room = max(0, width - (fixed + widths[0]))
    widths[-1] = min(widths[-1], note_room)

    def clip(text: str, room: int) -> str:
        return text if len(text) <= room else text[: max(0, room - 1)] + "…"

    def line(cells: list[str], strip: bool = True) -> str:
        cells = [clip(str(cells[0]), widths[0]), *cells[1:-1], clip(str(cells[-1]), note_room)]
        text = "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
        return text.rstrip() if strip else text

    rule = "  ".join("-" * w for w in widths)
    out = ([f"protocol: {protocols[0]}"] if not with_protocol else []) + [line(header, strip=False), rule]
    out += [line(r) for r in lines]
    hidden = [metric_title(m) for m in metrics if m not in shown]
    if hidden:
        reasons = ordered_unique(n for c in cases if c.status == "ok" for m in metrics if m not in shown
                                 for n in [c.notes.get(m, "")] if n)
        text = f"not shown (n/a for every case): {', '.join(hidden)}" + (f" — {'; '.join(reasons)}" if reasons else "")
        out.append(text if len(text) <= width else _wrap(text, width))
    out += [clip(f"error in {c.label} {c.dataset} x{c.scale}: {c.error}", width) for c in cases if c.status == "error"]
    for extra in (cost_only_summary(cases), unsupported_summary(cases)):
        if extra:
            out.append(extra if len(extra) <= width else _wrap(extra, width))
    return "\n".join(out)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, subsequent_indent="  "))
