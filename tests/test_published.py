"""Published numbers: CSV format, robust matching (names, scale spelling, protocol) and deltas = ours - published."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from test_report_store import make_cases, make_run

from asr_bench.engine.records import CaseRecord
from asr_bench.errors import UserError
from asr_bench.report import render_report
from asr_bench.report.model import accuracy_tables
from asr_bench.report.published import COLUMNS, load_published, match_published, norm_scale, read_published_csv
from asr_bench.report.html import _cell_view
from asr_bench.report.tables import accuracy_markdown, published_display, published_rows

REPO = Path(__file__).resolve().parent.parent
HEADER = ",".join(COLUMNS)


def _case(**overrides: object) -> CaseRecord:
    base = dict(case_id="x", label="My LIIF run", method="liif", encoder="edsr-baseline", dataset="set5", scale="4",
                protocol="liif", metrics={"psnr": 32.4375, "ssim": 0.9})
    return CaseRecord(**{**base, **overrides})


def _write(tmp_path: Path, body: str, name: str = "paper.csv", header: str = HEADER) -> Path:
    folder = tmp_path / "published"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(header + "\n" + body)
    return folder


@pytest.mark.parametrize("scale", ["4", "4.0", "x4", "X4", "×4", "4x4"])
def test_scale_spellings_match(scale: str) -> None:
    assert norm_scale(scale) == "4"


def test_method_and_encoder_spellings_match() -> None:
    from asr_bench.report.published import norm_encoder, norm_name

    assert norm_name("IGConv+") == norm_name("igconv-plus") == norm_name("IGConv_plus")
    assert norm_name("EDSR_baseline") == norm_name("edsr baseline") == "edsr-baseline"
    assert norm_encoder("none") == norm_encoder("") == norm_encoder(" - ") == ""


def test_asymmetric_and_fractional_scales_normalise_like_format_scale() -> None:
    assert norm_scale("3.50") == "3.5" and norm_scale("3x2.50") == "3x2.5" and norm_scale("x12") == "12"


def test_match_is_on_method_and_encoder_fields_not_the_label_and_delta_is_ours_minus_published(tmp_path: Path) -> None:
    folder = _write(tmp_path, "LIIF,EDSR_baseline,Set5,x4.0,liif,PSNR,32.50,LIIF Table 2\n"
                              "liif,rdn,set5,4,liif,psnr,32.99,other encoder\n"
                              "liif,edsr-baseline,set5,3,liif,psnr,34.0,other scale\n"
                              "liif,edsr-baseline,set14,4,liif,psnr,28.0,other dataset\n")
    rows = load_published(folder)
    case = _case()
    (match,) = match_published(case, "psnr", case.metrics["psnr"], rows)
    assert match.row.source == "LIIF Table 2" and match.same_protocol
    assert match.delta == pytest.approx(32.4375 - 32.50, abs=1e-12)
    assert match_published(case, "ssim", 0.9, rows) == []


def test_a_number_under_another_protocol_is_shown_flagged_and_after_same_protocol_ones(tmp_path: Path) -> None:
    folder = _write(tmp_path, "liif,edsr-baseline,set5,4,gsasr,psnr,32.60,GSASR paper\n"
                              "liif,edsr-baseline,set5,4,LIIF,psnr,32.50,LIIF paper\n")
    matches = match_published(_case(), "psnr", 32.4375, load_published(folder))
    assert [(m.row.source, m.same_protocol) for m in matches] == [("LIIF paper", True), ("GSASR paper", False)]
    md = accuracy_markdown(accuracy_tables([_case()], load_published(folder)))
    assert "32.44 (pub 32.50, -0.0625; pub 32.60†gsasr, -0.1625)" in md  # deltas: printed places + 2


def test_bicubic_without_encoder_matches_an_empty_or_none_encoder(tmp_path: Path) -> None:
    folder = _write(tmp_path, "Bicubic,,Set5,2,liif,psnr,33.66,LIIF\nbicubic,none,set5,3,liif,psnr,30.39,LIIF\n")
    rows = load_published(folder)
    for scale, published in [("2", 33.66), ("3", 30.39)]:
        case = _case(method="bicubic", encoder="", scale=scale, metrics={"psnr": 30.0})
        (match,) = match_published(case, "psnr", 30.0, rows)
        assert match.row.value == published


def test_render_writes_the_comparison_table_with_deltas(tmp_path: Path, png_only_plots: None) -> None:
    cases = make_run(tmp_path / "run", visuals=False)
    folder = _write(tmp_path, "liif,edsr-baseline,set5,2,gsasr,psnr,38.17,LIIF paper\n"
                              "gsasr,edsr,urban100,4,gsasr,psnr,27.01,GSASR README\n"      # errored case: no match
                              "rt4ksr,,set5,2,gsasr,psnr,37.0,RT4KSR\n")                    # no weights: no match
    paths = render_report(tmp_path / "run", folder)
    rows = list(csv.DictReader(io.StringIO(paths["published.csv"].read_text())))
    ours = next(c for c in cases if c.method == "liif" and c.dataset == "set5" and c.scale == "2").metrics["psnr"]
    assert len(rows) == 1
    assert float(rows[0]["ours"]) == ours and float(rows[0]["published"]) == 38.17
    assert float(rows[0]["delta"]) == pytest.approx(ours - 38.17, abs=1e-12)
    assert f"{ours - 38.17:+.4f}" in paths["published.md"].read_text()
    assert f"Δ {ours - 38.17:+.4f}" in paths["report.html"].read_text()


def test_deltas_keep_the_printed_precision_plus_two_a_zero_is_neutral_and_reference_rows_are_their_own_kind(
        tmp_path: Path) -> None:
    folder = _write(tmp_path, "liif,edsr-baseline,set5,4,LIIF,psnr,32.2375,official code,reference\n"
                              "liif,edsr-baseline,set5,4,LIIF,psnr,32.31,LIIF paper,\n",
                    header="method,encoder,dataset,scale,protocol,metric,value,source,kind")
    rows = load_published(folder)
    assert [(r.kind, r.places) for r in rows] == [("reference", 4), ("published", 2)]
    case = _case()
    case.metrics["psnr"] = 32.2375  # equal to the reference to its last printed digit
    md = accuracy_markdown(accuracy_tables([case], rows))
    assert "(ref 32.2375, ±0.000000; pub 32.31, -0.0725)" in md  # 4 + 2 and 2 + 2 places, no '-0.00'
    view = _cell_view(accuracy_tables([case], rows)[0].rows[0].cells[0], "psnr", 1)
    assert [(p["kind"], p["sign"]) for p in view["published"]] == [("ref", "same"), ("pub", "worse")]
    entries = published_rows(accuracy_tables([case], rows))
    assert [e["kind"] for e in entries] == ["reference", "published"]
    assert published_display(entries[0])[4:8] == ["32.237500", "32.2375", "±0.000000", "reference"]


def test_an_unknown_kind_is_a_user_error(tmp_path: Path) -> None:
    folder = _write(tmp_path, "liif,edsr-baseline,set5,4,LIIF,psnr,32.2,x,measured\n",
                    header="method,encoder,dataset,scale,protocol,metric,value,source,kind")
    with pytest.raises(UserError, match="kind 'measured' is not one of published, reference"):
        load_published(folder)


def test_published_rows_lists_every_matched_cell() -> None:
    cases = make_cases()
    from asr_bench.report.published import PublishedRow
    pub = [PublishedRow("gsasr", "edsr", "set5", s, "gsasr", "ssim", 0.9, "src") for s in ("2", "3", "4")]
    entries = published_rows(accuracy_tables(cases, pub))
    assert [(e["scale"], e["metric"]) for e in entries] == [("2", "ssim"), ("3", "ssim"), ("4", "ssim")]


@pytest.mark.parametrize("body, message", [
    ("liif,edsr,set5,4,liif,psnr,abc,src\n", r"paper.csv:2: value 'abc' is not a number"),
    ("liif,edsr,set5,4,liif,psnr,nan,src\n", "not finite"),
    (",edsr,set5,4,liif,psnr,1.0,src\n", "empty method"),
])
def test_malformed_rows_are_user_errors_naming_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_published(_write(tmp_path, body))


def test_missing_columns_and_missing_folder_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("method,dataset,value\nliif,set5,1\n")
    with pytest.raises(UserError, match="missing column"):
        read_published_csv(tmp_path / "bad.csv")
    with pytest.raises(UserError, match="not found"):
        load_published(tmp_path / "nowhere")


def test_comment_lines_are_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "a.csv").write_text("# from the paper's Table 2\n" + HEADER + "\nliif,edsr,set5,4,liif,psnr,1.5,src\n")
    assert [r.value for r in load_published(folder)] == [1.5]


def test_committed_published_csvs_parse() -> None:
    """Guards the files method owners add under asr_bench/published/."""
    folder = REPO / "asr_bench" / "published"
    if not any(folder.glob("*.csv")):
        pytest.skip("no published CSVs committed yet")
    rows = load_published(folder)
    assert rows and all(r.metric and r.dataset and r.scale for r in rows)
