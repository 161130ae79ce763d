"""Tables that say what is significant: bold only when the best beats the second by the paired test, ties marked,
ranks averaged by hand, deltas vs published neutral below half the last printed digit, each figure note once."""
from __future__ import annotations

import numpy as np
import pytest

from asr_bench.report.model import CostRow, accuracy_tables, delta_sign, rank_summary
from asr_bench.report.tables import accuracy_latex, accuracy_markdown, figure_note_lines
from asr_bench.results.schema import CaseRecord, ImageRecord


def _store(per_method: dict[str, np.ndarray], scale: str = "4", dataset: str = "urban100"):
    cases, images = [], []
    for label, values in per_method.items():
        case_id = f"{label}|{dataset}|{scale}"
        cases.append(CaseRecord(case_id, label, label.lower(), "", dataset, scale, "gsasr",
                                n_images=len(values), metrics={"psnr": float(np.mean(values))}))
        images += [ImageRecord(case_id, f"img{i:02d}", {"psnr": float(v)}) for i, v in enumerate(values)]
    return cases, images


def test_bold_only_when_the_best_beats_the_second_significantly():
    base = np.random.default_rng(0).uniform(24, 32, size=20)
    cases, images = _store({"A": base + 0.05, "B": base, "C": base - 1.0})
    (table,) = accuracy_tables(cases, images=images)
    cells = {row.label: row.cells[0] for row in table.rows}
    assert cells["A"].best and not cells["A"].tied and not cells["B"].tied
    md = accuracy_markdown([table])
    assert "**" + cells["A"].text + "**" in md and "Holm-adjusted" in md


def test_a_best_that_does_not_beat_the_second_is_tied_with_it_and_not_bold():
    rng = np.random.default_rng(1)
    base = rng.uniform(24, 32, size=20)
    cases, images = _store({"A": base + rng.normal(0.02, 0.3, 20), "B": base, "C": base - 1.0})
    (table,) = accuracy_tables(cases, images=images)
    cells = {row.label: row.cells[0] for row in table.rows}
    assert not any(c.best for c in cells.values())
    assert cells["A"].tied and cells["B"].tied and not cells["C"].tied  # C is beaten clearly
    tex = accuracy_latex([table])
    assert r"\textbf" not in tex.split(r"\begin{tabular}")[1].split(r"\end{tabular}")[0]
    assert tex.count(r"\rlap{$^{\approx}$}") >= 2 and "p $<$ 0.05" in tex


def test_five_images_tie_everything_and_the_table_says_why():
    cases, images = _store({"A": np.arange(5) + 35.0, "B": np.arange(5) + 30.0}, dataset="set5")
    (table,) = accuracy_tables(cases, images=images)
    assert all(row.cells[0].tied for row in table.rows)
    md = accuracy_markdown([table])
    assert "2/32 = 0.0625" in md and "no difference there can be significant" in md
    assert "| Set5 x4 PSNR | A | B | +5.0000 |" in md  # the paired difference and its interval are shown


def test_average_rank_by_hand():
    # column 1: A 30, B 31, C 29 -> ranks B1 A2 C3; column 2: A 30, B 30, C 31 -> C1, A and B share 2.5
    cases = [CaseRecord(f"{n}|set5|{s}", n, n, "", "set5", s, "gsasr", metrics={"psnr": v})
             for s, values in (("2", (30.0, 31.0, 29.0)), ("3", (30.0, 30.0, 31.0))) for n, v in zip("ABC", values)]
    (table,) = accuracy_tables(cases)
    ranks = {label: per["psnr"] for label, per in rank_summary(table)}
    assert ranks == {"A": ((2 + 2.5) / 2, 2), "B": ((1 + 2.5) / 2, 2), "C": ((3 + 1) / 2, 2)}


@pytest.mark.parametrize("delta, places, expected", [
    (-0.000047, 2, "same"),     # float rounding against a 2-decimal number: neutral, not red
    (-0.004, 2, "same"),        # below half of 0.01
    (-0.006, 2, "worse"), (0.006, 2, "better"),
    (-0.000047, 4, "same"), (-0.00006, 4, "worse"),
])
def test_deltas_against_published_numbers_are_coloured_by_the_printed_precision(delta, places, expected):
    assert delta_sign(delta, places, "psnr") == expected
    assert delta_sign(-delta, places, "lpips") == expected  # lower is better: the sign flips


def test_a_figure_note_that_differs_only_in_a_number_is_said_once():
    def row(label, scale, seconds):
        return CostRow(label, "set5", scale, "gsasr", "", 0.1, 10.0, None, "", None, None, "cpu", "fp32", 1, 0,
                       figure_notes={"flops": f"not counted: one call takes {seconds} s (set profiling.flops: always "
                                              "to count it)"})
    lines = figure_note_lines([row("gsasr", "2", 36.2), row("gsasr", "3", 11.6), row("liif", "2", 8.5)])
    assert len(lines) == 1
    assert "gsasr, Set5 x2 (36.2 s), Set5 x3 (11.6 s); liif, Set5 x2 (8.5 s)" in lines[0]
    assert lines[0].count("set profiling.flops") == 1
