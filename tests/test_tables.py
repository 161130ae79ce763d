"""Tables in paper layout: bold = best (checked against an independent choice), n/a reasons, LaTeX structure,
CSV round-trip to the stored numbers, protocol stated, the plain-text summary."""
from __future__ import annotations

import csv
import io
import re
import sys
import types

import numpy as np
import pytest
from test_report_store import LPIPS_NOTE, make_cases

from asr_bench.engine.records import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord
from asr_bench.report import summary_table
from asr_bench.report.model import accuracy_tables, cost_rows
from asr_bench.report.tables import (accuracy_csv, accuracy_latex, accuracy_markdown, cost_csv, cost_latex, cost_markdown,
                                     latex_escape)

# The reference directions, written out here rather than taken from the code under test.
HIGHER_BETTER = {"psnr": True, "ssim": True, "lpips": False, "dists": False}
PLACES = {"psnr": 2, "ssim": 4, "lpips": 4, "dists": 4}
TITLES = {"set5": "Set5", "urban100": "Urban100"}


@pytest.fixture(params=["registry", "fallback"])
def directions(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with asr_bench.metrics.METRICS (when importable) and with the report's fallback table."""
    if request.param == "fallback":
        monkeypatch.setitem(sys.modules, "asr_bench.metrics", types.ModuleType("asr_bench.metrics"))
    return request.param


def _md_cells(markdown: str) -> dict[str, dict[str, str]]:
    """label -> column title -> cell text, from the first Markdown table."""
    lines = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break  # the rank and paired-difference tables follow
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]  # noqa: E731
    header = split(lines[0])
    return {cells[0]: dict(zip(header[1:], cells[1:])) for cells in map(split, lines[2:])}


def _expected_best(cases: list[CaseRecord], dataset: str, scale: str, metric: str) -> set[str]:
    """Labels whose value, at display precision, is the best among the ok cases (independent of the code)."""
    values = {c.label: round(c.metrics[metric], PLACES[metric]) for c in cases
              if c.dataset == dataset and c.scale == scale and c.status == OK and c.metrics.get(metric) is not None}
    if len(values) < 2:
        return set()
    best = max(values.values()) if HIGHER_BETTER[metric] else min(values.values())
    return {label for label, v in values.items() if v == best}


def _column(dataset: str, scale: str, metric: str) -> str:
    return f"{TITLES[dataset]} x{scale} {metric.upper()}{'↑' if HIGHER_BETTER[metric] else '↓'}"


def test_bold_marks_the_best_value_per_column_for_higher_and_lower_better_metrics(directions: str) -> None:
    cases = make_cases()
    # make LPIPS disagree with PSNR so a wrong direction cannot pass: Bicubic gets the lowest LPIPS at set5 x2
    bic = next(c for c in cases if c.label == "Bicubic" and c.dataset == "set5" and c.scale == "2")
    bic.metrics["lpips"] = 0.001
    table = _md_cells(accuracy_markdown(accuracy_tables(cases)))
    checked = 0
    for dataset in ("set5", "urban100"):
        for scale in ("2", "3", "3.5", "4"):
            for metric in HIGHER_BETTER:
                best = _expected_best(cases, dataset, scale, metric)
                bold = {label for label, row in table.items() if row[_column(dataset, scale, metric)].startswith("**")}
                assert bold == best, (dataset, scale, metric)
                checked += bool(best)
    assert checked == 32
    assert table["Bicubic"][_column("set5", "2", "lpips")] == "**0.0010**"
    assert not table["Bicubic"][_column("set5", "2", "psnr")].startswith("**")


def test_ties_at_display_precision_are_all_bold_and_the_next_value_is_underlined() -> None:
    cases = [CaseRecord(f"{n}|set5|4", n, n.lower(), "edsr", "set5", "4", "gsasr", metrics={"psnr": v})
             for n, v in [("A", 32.504), ("B", 32.496), ("C", 32.40), ("D", 31.0)]]
    table = _md_cells(accuracy_markdown(accuracy_tables(cases)))
    assert [table[n]["Set5 x4 PSNR↑"] for n in "ABCD"] == ["**32.50**", "**32.50**", "<u>32.40</u>", "31.00"]
    tex = accuracy_latex(accuracy_tables(cases))
    assert tex.count(r"\textbf{32.50}") == 2 and r"\underline{32.40}" in tex and r"\underline{31.00}" not in tex


def test_metric_directions_come_from_the_metrics_registry_when_it_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("asr_bench.metrics")
    fake.METRICS = {"sharpness": {"lower_better": True}}
    monkeypatch.setitem(sys.modules, "asr_bench.metrics", fake)
    cases = [CaseRecord(f"{n}|set5|4", n, n, "", "set5", "4", "gsasr", metrics={"sharpness": v})
             for n, v in [("A", 1.0), ("B", 2.0)]]
    table = _md_cells(accuracy_markdown(accuracy_tables(cases)))
    assert table["A"]["Set5 x4 sharpness↓"] == "**1.0000**" and table["B"]["Set5 x4 sharpness↓"] == "2.0000"


def test_na_reasons_are_footnotes_said_once_and_cost_only_methods_leave_the_accuracy_table() -> None:
    cases = make_cases()
    md = accuracy_markdown(accuracy_tables(cases), cases)
    table = _md_cells(md)
    assert "RT4KSR" not in table  # random weights: cost table only
    assert "1 method ran on random weights: cost only (RT4KSR)" in md
    marks = {}
    for label, column, reason in [("IGConv+ (edsr)", _column("set5", "3.5", "psnr"), "unsupported scale"),
                                  ("MetaSR (edsr-baseline)", _column("set5", "4", "lpips"),
                                   "LPIPS: weights missing: alexnet-owt-7be5be79.pth"),
                                  ("GSASR (edsr)", _column("urban100", "4", "psnr"),
                                   f"error in GSASR (edsr): {next(c for c in cases if c.status == ERROR).error}")]:
        cell = table[label][column]
        assert re.fullmatch(r"– \(([a-z])\)", cell), cell
        marks[reason] = cell[-2]
        assert md.count(reason) == 1 and f"- ({marks[reason]}) {reason}" in md  # said once, below the table
    assert len(set(marks.values())) == 3
    assert "n/a (" not in md  # no reason repeated inside cells
    tex = accuracy_latex(accuracy_tables(cases), cases)
    assert r"--\rlap{\textsuperscript{" in tex and tex.count("unsupported scale") == 1


def test_a_metric_no_method_has_is_dropped_with_its_reason_once() -> None:
    note = "n/a (weights missing: alexnet-owt-7be5be79.pth)"
    cases = [CaseRecord(f"{n}|set5|2", n, n.lower(), "", "set5", "2", "gsasr", metrics={"psnr": v, "lpips": None},
                        notes={"lpips": note}) for n, v in [("A", 30.0), ("B", 31.0)]]
    (table,) = accuracy_tables(cases, metrics=["psnr", "lpips"])
    assert [c.metric for c in table.columns] == ["psnr"]
    assert table.dropped == ["LPIPS not shown: n/a for every method (weights missing: alexnet-owt-7be5be79.pth)"]
    for text in (accuracy_markdown([table]), accuracy_latex([table])):
        assert text.count("alexnet-owt-7be5be79.pth") == 1


def test_no_empty_tables() -> None:
    random_only = [CaseRecord("R|set5|2", "R", "r", "", "set5", "2", "gsasr", status=NO_WEIGHTS, time_ms=1.0)]
    assert accuracy_tables(random_only) == []
    assert r"\begin{table}" not in accuracy_latex([], random_only)
    unsupported = [CaseRecord("U|set5|2", "U", "u", "", "set5", "2", "gsasr", status=UNSUPPORTED)]
    assert cost_rows(unsupported) == [] and r"\begin{table}" not in cost_latex([], unsupported)


def test_rows_keep_run_order_and_scales_sort_numerically() -> None:
    cases = [CaseRecord(f"{n}|set5|{s}", n, n, "", "set5", s, "gsasr", metrics={"psnr": 30.0})
             for s in ("10", "2", "3.5") for n in ("Zed", "Alpha")]
    (table,) = accuracy_tables(cases)
    assert [r.label for r in table.rows] == ["Zed", "Alpha"]
    assert [c.scale for c in table.columns] == ["2", "3.5", "10"]


def test_every_table_states_its_protocol_and_two_protocols_make_two_tables() -> None:
    cases = make_cases()[:6] + [CaseRecord("X|set5|2", "X", "liif", "edsr", "set5", "2", "liif (crop=4)",
                                           metrics={"psnr": 1.0})]
    tables = accuracy_tables(cases)
    assert [t.protocol for t in tables] == ["gsasr", "liif (crop=4)"]
    md, tex = accuracy_markdown(tables), accuracy_latex(tables)
    assert "protocol: gsasr" in md and "protocol: liif (crop=4)" in md
    assert tex.count(r"\caption{Accuracy (protocol:") == 2
    rows = list(csv.DictReader(io.StringIO(accuracy_csv(tables))))
    assert {r["protocol"] for r in rows} == {"gsasr", "liif (crop=4)"}
    assert "protocol: gsasr, liif (crop=4)" in cost_latex(cost_rows(cases))


def _strip_escaped(tex: str) -> str:
    return re.sub(r"\\[{}_&%$#]", "", tex)


def _row_width(row: str) -> int:
    cells = re.split(r"(?<!\\)&", row)
    spans = [int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", cell)) else 1 for cell in cells]
    return sum(spans)


@pytest.mark.parametrize("render", ["accuracy", "cost"])
def test_latex_is_structurally_sound(render: str) -> None:
    cases = make_cases()
    cases[0].label = cases[0].label + " my_method & 100% #1"  # characters LaTeX must see escaped
    tex = accuracy_latex(accuracy_tables(cases)) if render == "accuracy" else cost_latex(cost_rows(cases))
    body = _strip_escaped("\n".join(l for l in tex.splitlines() if not l.startswith("%")))
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert "_" not in re.sub(r"\$[^$]*\$", "", body), "unescaped underscore outside math"
    for table in re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, flags=re.S):
        spec = re.match(r"\\begin\{tabular\}\{((?:[lcr]|>\{\\raggedright\\arraybackslash\}p\{\d+pt\})+)\}", table).group(1)
        spec = re.sub(r">\{[^}]*\}p\{\d+pt\}", "p", spec)  # a wrapping method column counts as one
        lines = table.splitlines()
        rules = [l for l in lines if l in (r"\toprule", r"\midrule", r"\bottomrule")]
        assert rules[0] == r"\toprule" and rules[-1] == r"\bottomrule" and r"\midrule" in rules[1:-1]
        rows = [l[:-2] for l in lines if l.endswith(r"\\")]
        assert rows and all(_row_width(r) == len(spec) for r in rows)
    assert latex_escape("my_method & 100% #1") in tex
    assert r"\resizebox" not in tex and r"\shortstack" not in tex  # one font size; aligned cells
    if render == "accuracy":
        assert r"\textbf{" in tex and r"\cmidrule(lr){2-5}" in tex
    else:  # a group title row per dataset x scale, ruled off
        assert r"\multicolumn{9}{l}{\emph{Set5 $\times$2}} \\" in tex and r"\cmidrule(lr){1-9}" in tex


def test_csv_round_trips_to_the_stored_numbers() -> None:
    cases = make_cases()
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(accuracy_csv(accuracy_tables(cases))))}
    assert "RT4KSR" not in rows
    compared = 0
    for case in cases:
        if case.label not in rows:
            continue
        for metric in HIGHER_BETTER:
            title = f"{TITLES[case.dataset]} x{case.scale} {metric.upper()}"
            cell = rows[case.label][title]
            value = case.metrics.get(metric)
            if case.status == OK and value is not None:
                assert float(cell) == value
                compared += 1
            else:  # empty, and the row's notes column says why
                assert cell == "" and title in rows[case.label]["notes"]
    assert compared > 100
    assert "unsupported scale" in rows["IGConv+ (edsr)"]["notes"]
    cost = list(csv.DictReader(io.StringIO(cost_csv(cost_rows(cases)))))
    assert len(cost) == sum(c.status != UNSUPPORTED for c in cases)  # nothing ran for an unsupported scale
    by_key = {(r["label"], r["dataset"], r["scale"]): r for r in cost}
    for case in cases:
        if case.status == UNSUPPORTED:
            continue
        row = by_key[(case.label, case.dataset, case.scale)]
        if case.status in (OK, NO_WEIGHTS):
            assert float(row["time_ms"]) == case.time_ms
            assert float(row["fps"]) == pytest.approx(1000.0 / case.time_ms, rel=1e-12)
            assert float(row["memory_mb"]) == case.memory_mb and row["memory_kind"] == case.memory_kind
            assert row["status"] == ("random weights" if case.status == NO_WEIGHTS else "ok")
        else:
            assert row["time_ms"] == ""


def test_cost_marks_leanest_per_dataset_and_scale_and_fastest_only_when_significant() -> None:
    cases = make_cases()  # stored without their timed calls: nothing can be tested, so no time is bold
    for row in cost_rows(cases):
        group = [c for c in cases if (c.dataset, c.scale) == (row.dataset, row.scale) and c.status in (OK, NO_WEIGHTS)]
        assert not row.best_time
        assert row.best_memory == (row.memory_mb is not None and row.memory_mb == min(c.memory_mb for c in group))
    timed = [CaseRecord(f"{n}|set5|4", n, n.lower(), "", "set5", "4", "gsasr", time_ms=float(np.median(t)),
                        time_samples_ms=t, time_repeats=len(t), metrics={"psnr": 30.0})
             for n, t in [("Fast", [10.0, 10.2, 9.9, 10.1, 10.3]), ("Slow", [12.0, 12.4, 11.9, 12.2, 12.1]),
                          ("Noisy", [1.7, 547.0, 9.0, 30.0, 11.0])]]
    rows = {r.label: r for r in cost_rows(timed)}
    # Fast's median (10.1) is the smallest, but Noisy's calls (1.7-547 ms) overlap it: tied, not bold
    assert not rows["Fast"].best_time and rows["Fast"].tied_time and rows["Noisy"].tied_time
    assert not rows["Slow"].tied_time  # all five of Slow's calls are slower than all of Fast's: p = 2/252, x3 Holm
    rows = {r.label: r for r in cost_rows(timed[:2])}
    assert rows["Fast"].best_time and not rows["Slow"].best_time
    md, tex = cost_markdown(list(rows.values())), cost_latex(list(rows.values()))
    assert "**10.1 (" in md and r"\textbf{10.1}" in tex and "Mann-Whitney" in md


def test_summary_table_has_one_aligned_line_per_case_fits_100_columns_and_lists_the_errors() -> None:
    cases = make_cases()
    for case in cases:  # a long label and a long error must not widen the table past 100 columns
        if case.label == "MetaSR (edsr-baseline)":
            case.label = "MetaSR (edsr-baseline, my very own retrained checkpoint from last week)"
    text = summary_table(cases)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0] == "protocol: gsasr"
    assert len({len(l) for l in lines[1:3]}) == 1  # header and rule line up
    assert len([l for l in lines if l.startswith(("Bicubic ", "LIIF", "MetaSR", "GSASR", "IGConv+", "RT4KSR"))]) == len(cases)
    liif = next(c for c in cases if c.label.startswith("LIIF") and c.dataset == "set5" and c.scale == "4")
    line = next(l for l in lines if l.startswith("LIIF") and " set5 " in l and " x4 " in l)
    assert f"{liif.metrics['psnr']:.2f}" in line and f"{liif.metrics['ssim']:.4f}" in line
    assert "unsupported scale" in text and "random weights" in text
    assert next(c for c in cases if c.status == ERROR).error[:40] in text
    assert summary_table([]) == "(no cases)"


def test_groups_and_metrics_without_any_number_are_dropped_with_a_note() -> None:
    ok = CaseRecord("A|set5|2", "A", "a", "", "set5", "2", "gsasr", metrics={"psnr": 30.0, "ssim": 0.9})
    random_weights = CaseRecord("B|set5|4", "B", "b", "", "set5", "4", "gsasr", status=NO_WEIGHTS)
    (table,) = accuracy_tables([ok, random_weights], metrics=["psnr", "ssim", "lpips"])
    assert [c.title for c in table.columns] == ["Set5 x2 PSNR", "Set5 x2 SSIM"]
    assert [r.label for r in table.rows] == ["A"]
    assert table.dropped == ["LPIPS not shown: n/a for every method",
                             "Set5 x4 not shown: no method with weights has a number there (see the cost table)"]
