"""Tables in paper layout: bold = best (checked against an independent choice), n/a reasons, LaTeX structure,
CSV round-trip to the stored numbers, protocol stated, the plain-text summary."""
from __future__ import annotations

import csv
import io
import re
import sys
import types

import pytest
from test_report_store import LPIPS_NOTE, make_cases

from asr_bench.engine.records import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord
from asr_bench.report import summary_table
from asr_bench.report.model import accuracy_tables, cost_rows
from asr_bench.report.tables import accuracy_csv, accuracy_latex, accuracy_markdown, cost_csv, cost_latex, latex_escape

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
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
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


def test_ties_at_display_precision_are_all_bold() -> None:
    cases = [CaseRecord(f"{n}|set5|4", n, n.lower(), "edsr", "set5", "4", "gsasr", metrics={"psnr": v})
             for n, v in [("A", 32.504), ("B", 32.496), ("C", 32.40)]]
    table = _md_cells(accuracy_markdown(accuracy_tables(cases)))
    assert [table[n]["Set5 x4 PSNR↑"] for n in "ABC"] == ["**32.50**", "**32.50**", "32.40"]


def test_metric_directions_come_from_the_metrics_registry_when_it_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("asr_bench.metrics")
    fake.METRICS = {"sharpness": {"lower_better": True}}
    monkeypatch.setitem(sys.modules, "asr_bench.metrics", fake)
    cases = [CaseRecord(f"{n}|set5|4", n, n, "", "set5", "4", "gsasr", metrics={"sharpness": v})
             for n, v in [("A", 1.0), ("B", 2.0)]]
    table = _md_cells(accuracy_markdown(accuracy_tables(cases)))
    assert table["A"]["Set5 x4 sharpness↓"] == "**1.0000**" and table["B"]["Set5 x4 sharpness↓"] == "2.0000"


def test_na_cells_state_their_reason_and_errors_their_message() -> None:
    cases = make_cases()
    md = accuracy_markdown(accuracy_tables(cases))
    table = _md_cells(md)
    assert table["IGConv+ (edsr)"][_column("set5", "3.5", "psnr")] == "n/a (unsupported scale)"
    assert table["RT4KSR"][_column("set5", "4", "ssim")] == "n/a (no weights)"
    assert table["MetaSR (edsr-baseline)"][_column("set5", "4", "lpips")] == LPIPS_NOTE
    assert table["GSASR (edsr)"][_column("urban100", "4", "psnr")] == "error"
    error = next(c for c in cases if c.status == ERROR)
    assert f"error in GSASR (edsr): {error.error}" in md
    tex = accuracy_latex(accuracy_tables(cases))
    assert "n/a (unsupported scale)" in tex and "n/a (no weights)" in tex


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
        spec = re.match(r"\\begin\{tabular\}\{([lcr]+)\}", table).group(1)
        lines = table.splitlines()
        assert [l for l in lines if l in (r"\toprule", r"\midrule", r"\bottomrule")] == [r"\toprule", r"\midrule", r"\bottomrule"]
        rows = [l[:-2] for l in lines if l.endswith(r"\\")]
        assert rows and all(_row_width(r) == len(spec) for r in rows)
    assert latex_escape("my_method & 100% #1") in tex
    if render == "accuracy":
        assert r"\textbf{" in tex and r"\cmidrule(lr){2-5}" in tex


def test_csv_round_trips_to_the_stored_numbers() -> None:
    cases = make_cases()
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(accuracy_csv(accuracy_tables(cases))))}
    compared = 0
    for case in cases:
        for metric in HIGHER_BETTER:
            cell = rows[case.label][f"{TITLES[case.dataset]} x{case.scale} {metric.upper()}"]
            value = case.metrics.get(metric)
            if case.status == OK and value is not None:
                assert float(cell) == value
                compared += 1
            elif case.status == UNSUPPORTED:
                assert cell == "n/a (unsupported scale)"
            elif case.status == NO_WEIGHTS:
                assert cell == "n/a (no weights)"
    assert compared > 100
    cost = list(csv.DictReader(io.StringIO(cost_csv(cost_rows(cases)))))
    assert len(cost) == len(cases)
    by_key = {(r["label"], r["dataset"], r["scale"]): r for r in cost}
    for case in cases:
        row = by_key[(case.label, case.dataset, case.scale)]
        if case.status in (OK, NO_WEIGHTS):
            assert float(row["time_ms"]) == case.time_ms
            assert float(row["fps"]) == pytest.approx(1000.0 / case.time_ms, rel=1e-12)
            assert float(row["memory_mb"]) == case.memory_mb and row["memory_kind"] == case.memory_kind
        else:
            assert row["time_ms"] == ""


def test_cost_marks_fastest_and_leanest_per_dataset_and_scale() -> None:
    cases = make_cases()
    for row in cost_rows(cases):
        group = [c for c in cases if (c.dataset, c.scale) == (row.dataset, row.scale) and c.status in (OK, NO_WEIGHTS)]
        assert row.best_time == (row.time_ms is not None and row.time_ms == min(c.time_ms for c in group))
        assert row.best_memory == (row.memory_mb is not None and row.memory_mb == min(c.memory_mb for c in group))


def test_summary_table_has_one_aligned_line_per_case_and_the_errors() -> None:
    cases = make_cases()
    text = summary_table(cases)
    lines = text.splitlines()
    assert len({len(l) for l in lines[:2]}) == 1  # header and rule line up
    assert len([l for l in lines if l.startswith(("Bicubic ", "LIIF", "MetaSR", "GSASR", "IGConv+", "RT4KSR"))]) == len(cases)
    liif = next(c for c in cases if c.label.startswith("LIIF") and c.dataset == "set5" and c.scale == "4")
    line = next(l for l in lines if l.startswith("LIIF") and " set5 " in l and " x4 " in l)
    assert f"{liif.metrics['psnr']:.2f}" in line and f"{liif.metrics['ssim']:.4f}" in line
    assert "n/a (unsupported scale)" in text and "n/a (no weights)" in text
    assert next(c for c in cases if c.status == ERROR).error in text
    assert summary_table([]) == "(no cases)"


def test_groups_where_nothing_was_scored_still_show_every_metric_with_the_reason() -> None:
    ok = CaseRecord("A|set5|2", "A", "a", "", "set5", "2", "gsasr", metrics={"psnr": 30.0, "ssim": 0.9})
    random_weights = CaseRecord("B|set5|4", "B", "b", "", "set5", "4", "gsasr", status=NO_WEIGHTS)
    (table,) = accuracy_tables([ok, random_weights], metrics=["psnr", "ssim", "lpips"])
    assert [c.title for c in table.columns] == [f"Set5 x{s} {m}" for s in ("2", "4") for m in ("PSNR", "SSIM", "LPIPS")]
    cells = _md_cells(accuracy_markdown([table]))
    assert cells["B"]["Set5 x4 LPIPS↓"] == "n/a (no weights)" and cells["A"]["Set5 x4 PSNR↑"] == "–"
    assert cells["A"]["Set5 x2 LPIPS↓"] == "n/a"  # not measured and no note: plain n/a
