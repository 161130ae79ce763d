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
from ..results.stats import ALPHA, EXACT_MAX_N, min_sign_flip_p
from .model import (
    FIGURE_NOTES, TIME_RULE, few_repeats_note, rank_summary, FRAME_RATES, MISSING, AccuracyTable, Cell, CostRow, VariantRow, column_chunks, cost_only_summary, dataset_title,
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
                  "−": "$-$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "µ": r"$\mu$", "·": r"$\cdot$", "≈": r"$\approx$", "<": "$<$", ">": "$>$", "≥": r"$\geq$", "≤": r"$\leq$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) if ord(ch) < 128 or ch in _LATEX_SPECIAL else "?" for ch in str(text))


# The page the LaTeX tables are laid out for: A4 with 2.5 cm margins (tables.tex sets exactly that), every table in
# \small, no \resizebox (a paper's tables share one font size). A table wider than the text is split into stacked
# tabulars (accuracy) or turned sideways (cost and the other row tables); a float taller than the budget continues
# in the next float. Widths are estimated from the cell texts at \small (digits 4.6 pt, letters about 4.3 pt, and a
# margin): the compile test (tests/test_latex_compile.py) checks the estimate leaves no overfull box.
LATEX_TEXT_WIDTH_PT = 455.0
LATEX_TEXT_HEIGHT_PT = 700.0
LATEX_FLOAT_BUDGET_PT = 560.0   # caption, tabulars and notes of one float; the rest is slack for LaTeX's own spacing
LATEX_SIZE = r"\small"
_CHAR_PT, _ROW_PT, _NOTE_LINE_PT, _PAD_PT = 4.8, 11.5, 11.0, 12.0
LATEX_LABEL_MAX_PT = 110.0      # longer method names wrap in a ragged-right column of this width
LATEX_PREAMBLE = ("% requires \\usepackage{booktabs,array,rotating}; laid out for a 455 pt (16 cm) text width\n")


def _visible(text: str) -> str:
    """The characters a LaTeX cell prints (commands and braces dropped), for width estimates."""
    text = re.sub(r"\\rlap\{.*?\}\}?", "", text)
    text = re.sub(r"\$\\times\$", "x", text)
    text = re.sub(r"\\[a-zA-Z]+\*?", "", text)
    return re.sub(r"[{}$^]", "", text)


def _text_pt(text: str) -> float:
    """Estimated width at \\small: capitals are wider than digits, lower case a bit narrower."""
    width = 0.0
    for ch in _visible(text):
        width += 6.6 if ch.isupper() else 4.6 if ch.isdigit() else 4.4 if ch.islower() else 3.2 if ch in ".,:;!|()[]' " else 5.0
    return width * 1.16  # the per-character widths are 9 pt ones; \\small of an 11 pt article is 10 pt


def _label_spec(labels: Sequence[str]) -> tuple[str, float]:
    """The method column: 'l' when every label fits, else a wrapping ragged-right column of LATEX_LABEL_MAX_PT."""
    widest = max((_text_pt(label) for label in labels), default=0.0)
    if widest <= LATEX_LABEL_MAX_PT:
        return "l", widest + _PAD_PT
    return rf">{{\raggedright\arraybackslash}}p{{{LATEX_LABEL_MAX_PT:.0f}pt}}", LATEX_LABEL_MAX_PT + _PAD_PT


def _rows_pt(labels: Sequence[str], extra_rows: int = 0) -> float:
    """Height of the body rows: a wrapped label takes as many lines as it needs."""
    lines = sum(max(1, -(-int(_text_pt(label)) // int(LATEX_LABEL_MAX_PT))) for label in labels)
    return (lines + extra_rows) * _ROW_PT


def _notes_pt(notes: Sequence[str], width: float = LATEX_TEXT_WIDTH_PT) -> float:
    per_line = max(20, int(width / (_CHAR_PT * 0.92)))
    return sum(max(1, -(-len(_visible(n)) // per_line)) for n in notes) * _NOTE_LINE_PT + 8


def _latex_notes(notes: Sequence[str]) -> list[str]:
    """Notes under a table, same size as the table, wrapped (\\sloppy: long file names must not stick out)."""
    if not notes:
        return []
    body = r"\par ".join(notes)  # \par, not \\: a note starting with '[' would be read as \\'s argument
    return [r"\par\smallskip", r"{\sloppy\raggedright " + body + r"\par}"]


def latex_floats(caption: str, blocks: Sequence[tuple[list[str], float]], notes: Sequence[str],
                 sideways: bool = False) -> str:
    """Tabular blocks (lines, height in pt) packed into as few floats as fit the page; the caption on each
    ('continued' after the first), the notes under the last. `sideways`: rotated (a table wider than the text)."""
    env = "sidewaystable" if sideways else "table"
    budget = (LATEX_TEXT_WIDTH_PT - 40 if sideways else LATEX_FLOAT_BUDGET_PT)
    note_width = LATEX_TEXT_HEIGHT_PT - 40 if sideways else LATEX_TEXT_WIDTH_PT
    caption_pt = _notes_pt([caption], note_width) + 6
    floats: list[list[str]] = [[]]
    used = caption_pt
    for lines, height in blocks:
        if floats[-1] and used + height + 10 > budget:
            floats.append([])
            used = caption_pt
        floats[-1] += ([r"\par\medskip"] if floats[-1] else []) + lines
        used += height + 10
    notes_pt = _notes_pt(notes, note_width)
    tail: list[str] = []
    if notes and floats[-1] and used + notes_pt > budget:
        tail = _latex_notes(notes)  # the notes alone in a last float, still under the table they belong to
    out = []
    total = len(floats) + (1 if tail else 0)
    for i, body in enumerate(floats):
        last = i == len(floats) - 1
        title = caption if i == 0 else caption.split(". ")[0].rstrip(".") + f" (continued, {i + 1}/{total})."
        text = [rf"\begin{{{env}}}[p]" if sideways else r"\begin{table}[htbp]", r"\centering", LATEX_SIZE,
                rf"\caption{{{title}}}", *body, *(_latex_notes(notes) if last and not tail else []),
                rf"\end{{{env}}}"]
        out.append("\n".join(text))
    if tail:
        out.append("\n".join([r"\begin{table}[htbp]", r"\centering", LATEX_SIZE,
                              rf"\caption{{{caption.split('. ')[0].rstrip('.')} (notes, {total}/{total}).}}", *tail,
                              r"\end{table}"]))
    return "\n\n".join(out)


def _fits(width: float) -> bool:
    return width <= LATEX_TEXT_WIDTH_PT


def _row_table(caption: str, tabular: list[str], notes: Sequence[str]) -> str:
    """A simple row table (header, rows): sideways when wider than the text, its rows over several floats when long."""
    spec_end = tabular.index(r"\midrule")
    head, rows = tabular[:spec_end + 1], [l for l in tabular[spec_end + 1:] if l.endswith(r"\\")]
    cells = [re.split(r"(?<!\\)&", l[:-2]) for l in [head[2][:-2] + r"\\", *rows]]
    widths = [max(_text_pt(c[i]) if i < len(c) else 0 for c in cells) + _PAD_PT for i in range(len(cells[0]))]
    sideways = not _fits(sum(widths))
    per = max(5, int(((LATEX_TEXT_WIDTH_PT - 40 if sideways else LATEX_FLOAT_BUDGET_PT) - 100) / _ROW_PT))
    blocks = [([*head, *rows[i:i + per], r"\bottomrule", r"\end{tabular}"], (len(rows[i:i + per]) + 2) * _ROW_PT)
              for i in range(0, len(rows), per)]
    return latex_floats(caption, blocks, notes, sideways)


def significance_rule(table: AccuracyTable, markdown: bool = False) -> str:
    """The rule behind bold and ≈ in this table, in one sentence (every caption names it)."""
    bold = "**bold**" if markdown else "bold"
    if not table.tested:
        second = "<u>underlined</u>" if markdown else "underlined"
        return (f"Best per column in {bold}, second best {second} (not tested for significance: no per-image values). "
                "↑ higher is better, ↓ lower is better.")
    family = sorted({int(n) for n in table.pairs["family_size"]}) if len(table.pairs) else [0]  # type: ignore[index]
    if family == [0]:
        return "One method per column: nothing to compare or bold. ↑ higher is better, ↓ lower is better."
    return (f"{bold} = best in its column and better than the second best by a paired test on the per-image values "
            f"(exact sign-flip up to {EXACT_MAX_N} images, Wilcoxon signed-rank above), Holm-adjusted across the "
            f"{'/'.join(map(str, family))} comparisons of this table, p < {ALPHA}; ≈ = the best and every method it "
            "does not beat significantly (the images cannot separate them). ↑ higher is better, ↓ lower is better.")


def few_images_note(table: AccuracyTable) -> str:
    """What a small test set cannot establish: where 2 / 2^n >= alpha no difference can be significant."""
    if not table.tested or not len(table.pairs):  # type: ignore[arg-type]
        return ""
    small = table.pairs[table.pairs["n"].map(min_sign_flip_p) >= ALPHA]  # type: ignore[index]
    if not len(small):
        return ""
    parts = ordered_unique(f"{dataset_title(str(d))} ({int(n)} images)" for d, n in zip(small["dataset"], small["n"]))
    n = int(small["n"].max())
    return (f"{', '.join(parts)}: with {n} images the smallest p an exact paired test can give is 2/{2 ** n} = "
            f"{min_sign_flip_p(n):.4f} ≥ {ALPHA}, so no difference there can be significant however large and "
            "consistent it is; ≈ then means not established, not equal. The paired differences table gives each "
            "mean difference with its 95 % interval, which says how large it is on these images; it resamples only "
            f"these {n}, so when every difference has one sign it cannot contain 0: a description, not a test.")


def _accuracy_notes(table: AccuracyTable, markdown: bool) -> list[str]:
    notes = [significance_rule(table, markdown)]
    notes += [line for line in (few_images_note(table),) if line]
    notes += [f"({footnote_mark(i + 1)}) {reason}" for i, reason in enumerate(table.footnotes)]
    notes += table.dropped
    if any(c.published for r in table.rows for c in r.cells):
        notes.append(PUBLISHED_LEGEND if markdown else PUBLISHED_LEGEND_TEX)
    return notes


PUBLISHED_LEGEND = ("(pub P, ±D) = published value and delta ours − published; (ref R, ±D) = measured with the "
                    "official code; † = made under a different protocol (named after †).")
PUBLISHED_LEGEND_TEX = ("Published and reference numbers and our deltas to them are in the published-numbers table "
                        "(published.tex), not in this one.")


# ------------------------------------------------------------------------------------------ accuracy


def _md_cell(cell: Cell) -> str:
    if cell.note is not None:
        return f"{cell.text} ({footnote_mark(cell.note)})"
    if cell.best:
        return f"**{cell.text}**"
    if cell.tied:
        return f"{cell.text} ≈"
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
        ranks = rank_markdown(table)
        if ranks:
            parts.append(ranks)
        paired = paired_markdown(table)
        if paired:
            parts.append(paired)
    extra = [line for line in (cost_only_summary(cases),) if line]
    if not tables:
        parts.append("No method ran with weights, so there are no accuracy numbers (see the cost table).")
    if extra:
        parts.append("\n".join(f"- {n}" for n in extra))
    return "\n\n".join(parts) + "\n"


def _latex_cell(cell: Cell) -> str:
    if cell.note is not None:
        return rf"--\rlap{{\textsuperscript{{{footnote_mark(cell.note)}}}}}"
    text = latex_escape(cell.text)
    if cell.best:
        return rf"\textbf{{{text}}}"
    if cell.tied:
        return rf"{text}\rlap{{$^{{\approx}}$}}"  # the mark takes no width: the digits stay aligned
    if cell.second:
        return rf"\underline{{{text}}}"
    return text


def _column_pt(table: AccuracyTable, index: int) -> float:
    col = table.columns[index]
    texts = [latex_escape(metric_title(col.metric)) + "xx"] + [row.cells[index].text for row in table.rows]
    return max(_text_pt(t) for t in texts) + _PAD_PT


def latex_column_chunks(table: AccuracyTable, label_pt: float) -> list[list[int]]:
    """Column indices in pieces as wide as the text allows (a dataset x scale group never split)."""
    pieces: list[list[int]] = []
    used = label_pt
    start = 0
    for dataset, scale, width in table.groups():
        indices = list(range(start, start + width))
        start += width
        title_pt = _text_pt(f"{dataset_title(dataset)} x{scale}") + _PAD_PT
        group_pt = max(sum(_column_pt(table, i) for i in indices), title_pt)
        if pieces and used + group_pt <= LATEX_TEXT_WIDTH_PT:
            pieces[-1].extend(indices)
            used += group_pt
        else:
            pieces.append(indices)
            used = label_pt + group_pt
    return pieces


def accuracy_latex(tables: Sequence[AccuracyTable], cases: Sequence[CaseRecord] = ()) -> str:
    """One table per protocol (several floats when it does not fit a page); '' (a comment) when no method has numbers."""
    if not tables:
        return "% no accuracy table: no method ran with weights (see the cost table)\n"
    parts = []
    for table in tables:
        labels = [latex_escape(row.label) for row in table.rows]
        spec, label_pt = _label_spec(labels)
        blocks = []
        for indices in latex_column_chunks(table, label_pt):
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
            tabular = [rf"\begin{{tabular}}{{{spec}{'r' * len(columns)}}}", r"\toprule",
                       " & ".join(["Method", *spans]) + r" \\", " ".join(rules),
                       " & ".join(["", *metrics]) + r" \\", r"\midrule"]
            tabular += [" & ".join([label, *(_latex_cell(row.cells[i]) for i in indices)]) + r" \\"
                        for label, row in zip(labels, table.rows)]
            tabular += [r"\bottomrule", r"\end{tabular}"]
            blocks.append((tabular, _rows_pt(labels, extra_rows=3)))
        notes = [latex_escape(n) for n in _accuracy_notes(table, markdown=False)]
        rule = latex_escape(significance_rule(table).split(" ↑")[0])
        caption = f"Accuracy (protocol: {latex_escape(table.protocol)}). {rule}"
        parts.append(latex_floats(caption, blocks, notes[1:]))
        ranks = rank_latex(table)
        if ranks:
            parts.append(ranks)
        paired = paired_latex(table)
        if paired:
            parts.append(paired)
    return LATEX_PREAMBLE + "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------ ranks and pairs


def rank_rows(table: AccuracyTable) -> tuple[list[str], list[list[str]]]:
    """(metric names, rows [label, 'mean rank (columns)' per metric]) of the average-rank summary."""
    metrics = ordered_unique(c.metric for c in table.columns)
    body = []
    for label, per in rank_summary(table):
        body.append([label, *(f"{per[m][0]:.2f} ({per[m][1]})" if m in per else MISSING for m in metrics)])
    return metrics, body


RANK_NOTE = ("Average rank over the dataset x scale columns (1 = best; equal values at display precision share "
             "their average rank), the number of columns in brackets. A rank summary orders methods; it does not "
             "test them: see the bold and ≈ marks and the paired differences.")


def rank_markdown(table: AccuracyTable) -> str:
    if len({(c.dataset, c.scale) for c in table.columns}) < 2 or len(table.rows) < 2:
        return ""
    metrics, body = rank_rows(table)
    return ("#### Average rank — protocol: " + table.protocol + "\n\n"
            + _md_table(["Method", *(f"{metric_title(m)} rank" for m in metrics)], body, ["l"] + ["r"] * len(metrics))
            + "\n\n- " + RANK_NOTE)


def rank_latex(table: AccuracyTable) -> str:
    if len({(c.dataset, c.scale) for c in table.columns}) < 2 or len(table.rows) < 2:
        return ""
    metrics, body = rank_rows(table)
    labels = [latex_escape(r[0]) for r in body]
    spec, _ = _label_spec(labels)
    tabular = [rf"\begin{{tabular}}{{{spec}{'r' * len(metrics)}}}", r"\toprule",
               " & ".join(["Method", *(latex_escape(metric_title(m)) + " rank" for m in metrics)]) + r" \\", r"\midrule",
               *(" & ".join([label, *(latex_escape(c) for c in row[1:])]) + r" \\" for label, row in zip(labels, body)),
               r"\bottomrule", r"\end{tabular}"]
    return latex_floats(f"Average rank (protocol: {latex_escape(table.protocol)}).",
                        [(tabular, _rows_pt(labels, 2))], [latex_escape(RANK_NOTE)])


PAIR_HEADER = ["Case", "Best", "vs", "Δ (best − other)", "95 % interval", "p", "p (Holm)", "n", "test"]


def paired_entries(table: AccuracyTable, everyone: bool = True) -> list[dict[str, object]]:
    """Per column: the best method against every other (or only the second best), with the pairwise statistics."""
    from .model import _pair_lookup

    if not table.tested:
        return []
    out = []
    for index, col in enumerate(table.columns):
        order = sorted((r for r in table.rows if r.cells[index].kind == "value"), key=lambda r: r.cells[index].value,
                       reverse=not lower_better(col.metric))
        if len(order) < 2:
            continue
        lookup = _pair_lookup(table.pairs, table.protocol, col)
        for other in (order[1:] if everyone else order[1:2]):
            pair = lookup.get((order[0].label, other.label))
            if pair is not None:
                out.append({"column": col, "best": order[0].label, "other": other.label, **pair})
    return out


def paired_display(entry: dict[str, object]) -> list[str]:
    col = entry["column"]
    places = decimals(col.metric) + 2  # type: ignore[attr-defined]
    p, padj = entry["p"], entry["p_adjusted"]
    case = f"{dataset_title(col.dataset)} {scale_title(col.scale)} {metric_title(col.metric)}"  # type: ignore[attr-defined]
    return [case, str(entry["best"]), str(entry["other"]), fmt_delta(float(entry["delta"]), places),  # type: ignore[arg-type]
            f"[{float(entry['low']):+.{places}f}, {float(entry['high']):+.{places}f}]",  # type: ignore[arg-type]
            "–" if p != p else f"{p:.3g}", "–" if padj != padj else f"{padj:.3g}", str(entry["n"]),
            str(entry["test"])]


def _pairs_note(table: AccuracyTable) -> str:
    settings = table.pairs.iloc[0] if len(table.pairs) else None  # type: ignore[union-attr]
    how = (f"seed {int(settings['seed'])}, {int(settings['resamples'])} resamples" if settings is not None else "")
    return (f"Δ = mean over images of (best − other), to the metric's decimals plus two; 95 % paired bootstrap "
            f"interval over images ({how}; expanded percentile); p = two-sided paired test named in the last "
            "column; p (Holm) adjusted across the table. Every pair of methods: tables/pairwise.csv.")


def paired_markdown(table: AccuracyTable) -> str:
    entries = paired_entries(table)
    if not entries:
        return ""
    body = [paired_display(e) for e in entries]
    return ("#### Paired differences — protocol: " + table.protocol + "\n\n"
            + _md_table(PAIR_HEADER, body, ["l", "l", "l", "r", "r", "r", "r", "r", "l"])
            + "\n\n- " + _pairs_note(table))


def paired_latex(table: AccuracyTable) -> str:
    """Best vs second best per column (every pair is in pairwise.csv), grouped by case, split over floats."""
    entries = paired_entries(table, everyone=False)
    if not entries:
        return ""
    rows = [paired_display(e) for e in entries]
    tabular = [r"\begin{tabular}{lllrrrrr}", r"\toprule",
               r"Case & Best & vs & $\Delta$ & 95\,\% interval & $p$ & $p$ (Holm) & $n$ \\", r"\midrule"]
    for row in rows:
        minus = [latex_escape(c).replace("-", "$-$") for c in row[3:5]]
        tabular.append(" & ".join([latex_escape(row[0]), latex_escape(row[1]), latex_escape(row[2]), *minus,
                                   latex_escape(row[5]), latex_escape(row[6]), row[7]]) + r" \\")
    tabular += [r"\bottomrule", r"\end{tabular}"]
    tests = ordered_unique(str(e["test"]) for e in entries)
    note = latex_escape(_pairs_note(table).replace("the last column", ", ".join(tests)))
    return _row_table(f"Paired differences, best vs second best per column (protocol: {latex_escape(table.protocol)}).",
                      tabular, [note, latex_escape(few_images_note(table))] if few_images_note(table) else [note])


def _csv_value(value: object) -> object:
    return "" if value is None else (repr(value) if isinstance(value, float) else value)


def pairwise_csv(tables: Sequence[AccuracyTable]) -> str:
    """Every pair of methods of every table (asr_bench.results.stats.PAIR_COLUMNS), full precision."""
    from ..results.stats import PAIR_COLUMNS

    frames = [t.pairs for t in tables if t.tested]
    rows = [[_csv_value(v if not (isinstance(v, float) and v != v) else None) for v in r]
            for f in frames for r in f[PAIR_COLUMNS].itertuples(index=False)]  # type: ignore[index]
    return csv_text(PAIR_COLUMNS, rows)


def time_pairwise_csv(cases: Sequence[CaseRecord]) -> str:
    """Every pair of measured cases compared on their timed calls (asr_bench.results.stats.TIME_COLUMNS)."""
    from ..results import cases_frame
    from ..results.stats import TIME_COLUMNS, time_pairwise

    measured = [c for c in cases if c.status in ("ok", "no-weights") and c.time_ms is not None]
    frame = time_pairwise(cases_frame(measured)) if measured else None
    rows = [] if frame is None else [[_csv_value(v if not (isinstance(v, float) and v != v) else None) for v in r]
                                      for r in frame[TIME_COLUMNS].itertuples(index=False)]
    return csv_text(TIME_COLUMNS, rows)


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
    caption = (r"Ours (protocol: " + latex_escape(ours) + r") vs published (printed in a paper) and reference "
               r"(measured with the official code) numbers; $\Delta$ = ours $-$ theirs, to the printed precision plus "
               r"two digits; $^\dagger$ = theirs was made under another protocol.")
    return LATEX_PREAMBLE + _row_table(caption, tabular, notes) + "\n"


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
    """One line per kind of note, each said once: notes that differ only in a number ('one call takes 36.2 s')
    are one line, the numbers in brackets after each case ('FLOPs of gsasr: Set5 x2 (36.2 s), x3 (11.6 s); ...')."""
    number = re.compile(r"(\d+(?:\.\d+)?) s\b")
    lines = []
    for key, title in FIGURE_NOTES.items():
        by_note: dict[str, dict[str, list[str]]] = {}
        varying: dict[str, bool] = {}
        for r in rows:
            note = r.figure_notes.get(key)
            if not note:
                continue
            generic = number.sub("N s", note)
            found = number.findall(note)
            where = f"{dataset_title(r.dataset)} {scale_title(r.scale)}" + (f" ({found[0]} s)" if found else "")
            by_note.setdefault(generic, {}).setdefault(r.label, []).append(where)
            varying[generic] = varying.get(generic, False) or generic != note and len(
                {n for r2 in rows for n in number.findall(r2.figure_notes.get(key) or "")}) > 1
        for generic, per_label in by_note.items():
            text = generic.replace("N s", "the time in brackets") if varying.get(generic) else None
            if text is None:  # one note, said as it is
                sample = next(r.figure_notes[key] for r in rows if r.figure_notes.get(key)
                              and number.sub("N s", r.figure_notes[key]) == generic)
                text = sample
                per_label = {label: [w.split(" (")[0] for w in where] for label, where in per_label.items()}
            where_text = "; ".join(f"{label}, {', '.join(where)}" for label, where in per_label.items())
            lines.append(f"{title} of {where_text}: {text}")
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
             f"FPS = 1000 / time; time: {TIME_RULE.replace('fastest in bold', f'fastest in {bold}')}",
             f"smallest memory per dataset and scale in {bold} (one reading per case, not tested)"]
    notes += [line for line in (few_repeats_note(cases), frame_rate_note(rows), *frame_rate_reasons(rows)) if line]
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
            elif r.tied_time and not r.reason:
                cells[1] += " ≈"
            if r.best_memory:
                cells[memory] = f"**{cells[memory]}**"
            body.append([_cost_label(r, len(protocols) > 1), *cells])
    return ("### Cost — protocol: " + ", ".join(protocols) + "\n\n"
            + _md_table(header, body, ["l"] + ["r"] * (len(header) - 1)) + "\n\n"
            + "\n".join(f"- {n}" for n in notes) + "\n")


def cost_latex(rows: Sequence[CostRow], cases: Sequence[CaseRecord] = ()) -> str:
    """The cost table: the spread of the timed calls in its own column (aligned, not stacked under the time);
    turned sideways when wider than the text, continued over floats when longer than a page."""
    if not rows:
        return "% no cost table: no case ran\n"
    protocols = ordered_unique(r.protocol for r in rows)
    notes, numbers = cost_notes(rows, cases, markdown=False)
    base = cost_header(rows)
    header = [latex_escape(h) for h in base[:3]] + ["range (ms)", "$n$"] + [latex_escape(h) for h in base[3:]]
    frames, memory = has_frame_rates(rows), memory_column(rows) + 2
    width = len(header)
    labels = [latex_escape(_cost_label(r, len(protocols) > 1)).replace("*", r"$^\ast$") for r in rows]
    spec, label_pt = _label_spec(labels)
    body: list[tuple[list[str], int]] = []  # (lines, body rows) per dataset x scale group
    cells_all = []
    position = 0
    for (dataset, scale, protocol), group in _cost_groups(rows):
        title = latex_escape(f"{dataset_title(dataset)} ") + rf"$\times${latex_escape(scale)}"
        lines = [rf"\multicolumn{{{width}}}{{l}}{{\emph{{{title}}}}} \\", rf"\cmidrule(lr){{1-{width}}}"]
        for r in group:
            values = [latex_escape(c) for c in cost_values(r, frames, has_peak(rows))]
            spread = f"{r.time_min_ms:.1f}--{r.time_max_ms:.1f}" if r.spread else ""
            count = str(r.time_repeats) if r.spread_text and "n=" in r.spread_text else ""
            cells = [values[0], values[1], spread, count, *values[2:]]
            if r.reason == "error":
                cells[1] = rf"--\rlap{{\textsuperscript{{{footnote_mark(numbers[f'error in {r.label}: {r.message}'])}}}}}"
            elif r.best_time and not r.reason:
                cells[1] = rf"\textbf{{{cells[1]}}}"
            elif r.tied_time and not r.reason:
                cells[1] = rf"{cells[1]}\rlap{{$^{{\approx}}$}}"
            if r.best_memory:
                cells[memory] = rf"\textbf{{{cells[memory]}}}"
            cells_all.append(cells)
            lines.append(" & ".join([labels[position], *cells]) + r" \\")
            position += 1
        body.append((lines, len(group) + 2))
    column_pt = [max([_text_pt(h) for h in header[1 + i:2 + i]] + [_text_pt(c[i]) for c in cells_all]) + _PAD_PT
                 for i in range(width - 1)]
    total_pt = label_pt + sum(column_pt)
    sideways = not _fits(total_pt)
    head = [rf"\begin{{tabular}}{{{spec}{'r' * (width - 1)}}}", r"\toprule", " & ".join(["Method", *header[1:]]) + r" \\"]
    budget_rows = int(((LATEX_TEXT_WIDTH_PT - 40 if sideways else LATEX_FLOAT_BUDGET_PT) - 120) / _ROW_PT)
    blocks, chunk, count = [], [], 0
    for lines, n in body:
        if chunk and count + n > budget_rows:
            blocks.append(chunk)
            chunk, count = [], 0
        chunk += [r"\midrule", *lines]
        count += n
    if chunk:
        blocks.append(chunk)
    packed = [([*head, *b, r"\bottomrule", r"\end{tabular}"], (sum(1 for l in b if l.endswith(r"\\")) + 2) * _ROW_PT)
              for b in blocks]
    caption = (f"Cost (protocol: {latex_escape(', '.join(protocols))}). "
               + latex_escape(TIME_RULE[0].upper() + TIME_RULE[1:]) + ".")
    text = latex_floats(caption, packed, [latex_escape(n).replace("*", r"$^\ast$", 1) for n in notes], sideways)
    return LATEX_PREAMBLE + text + "\n"


def cost_csv(rows: Sequence[CostRow]) -> str:
    header = ["protocol", "label", "dataset", "scale", "status", "output_mpix", "time_ms", "time_min_ms",
              "time_max_ms", "time_iqr_ms", "fps", "memory_mb", "memory_kind", "params", "flops",
              "percent_gemm_peak", "device", "precision", "time_repeats", "time_warmup", *FRAME_RATES, *(f"{k}_note" for k in FRAME_RATES),
              *(f"{k}_note" for k in FIGURE_NOTES)]
    body = [[r.protocol, r.label, r.dataset, r.scale,
             r.reason or ("random weights" if r.random_weights else "ok"), *(
        _csv_value(v) for v in (r.output_mpix, r.time_ms, r.time_min_ms, r.time_max_ms, r.time_iqr_ms, r.fps,
                                r.memory_mb, r.memory_kind, r.params, r.flops, r.peak_percent, r.device, r.precision,
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
    return LATEX_PREAMBLE + _row_table(r"Precision and compile: accuracy change and speed-up against fp32 eager.",
                                       tabular, [latex_escape(n) for n in variant_notes(rows, reasons)]) + "\n"


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
        r"\documentclass[11pt,a4paper]{article}",
        r"\usepackage[margin=2.5cm]{geometry}  % text width 16 cm = 455 pt: what the tables are laid out for",
        r"\usepackage{booktabs,array,rotating}",
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
