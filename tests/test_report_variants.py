"""The report's stage figure, frame-rate columns and precision comparison, on a run written through the real
store (RunStore) with known numbers; every expectation is hand arithmetic on those stored numbers."""
from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_report_store import make_run

from asr_bench.engine.records import NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord
from asr_bench.engine.store import RunStore
from asr_bench.report import render_report
from asr_bench.report.plots import StageBar, stage_gid

LIIF, RT4K = "LIIF (edsr-baseline)", "RT4KSR"
# (label, method, scale, precision, time_ms, stages, psnr, ssim)
KNOWN = [
    (LIIF, "liif", "2", "fp32", 80.0, {"encoder": 30.0, "decoder": 40.0}, 34.5, 0.9050),
    (LIIF, "liif", "2", "bf16", 50.0, {"encoder": 20.0, "decoder": 26.0}, 34.4875, 0.9012),
    (LIIF, "liif", "3", "fp32", 120.0, {"encoder": 30.0, "decoder": 95.0}, 31.25, 0.8700),  # stages exceed total
    (LIIF, "liif", "3", "bf16", 96.0, {"encoder": 21.0, "decoder": 60.0}, 31.0, 0.8650),
    (RT4K, "rt4ksr", "2", "fp32", 10.0, {}, None, None),
]
FPS = {(LIIF, "fp32"): (12.5, 41.2), (LIIF, "bf16"): (19.5, 63.7), (RT4K, "fp32"): (None, 123.4)}


def _records() -> list[CaseRecord]:
    out, seen = [], set()
    for label, method, scale, precision, time_ms, stages, psnr, ssim in KNOWN:
        suffix = "" if precision == "fp32" else f"|{precision}"
        record = CaseRecord(case_id=f"{label}|set5|{scale}{suffix}", label=label, method=method,
                            encoder="edsr-baseline" if method == "liif" else "", dataset="set5", scale=scale,
                            protocol="gsasr", n_images=5, time_ms=time_ms, time_repeats=7, time_warmup=2,
                            time_min_ms=time_ms * 0.95, time_max_ms=time_ms * 1.1, stages=dict(stages),
                            precision=precision, profile_input=[64, 48], output_mpix=0.01, device="cpu")
        if psnr is None:
            record.status = NO_WEIGHTS
            record.notes = {"psnr": "n/a (no weights)", "ssim": "n/a (no weights)"}
        else:
            record.metrics = {"psnr": psnr, "ssim": ssim}
        if (label, precision) not in seen:  # the engine measures frame rates in a method row's first case
            seen.add((label, precision))
            fps720, fps1080 = FPS[(label, precision)]
            record.fps_720p_4k, record.fps_1080p_4k = fps720, fps1080
            record.cost_notes = {"fps_720p_4k": "n/a (x3 unsupported)" if fps720 is None else "3 timed frame(s), whole frame",
                                 "fps_1080p_4k": "3 timed frame(s), whole frame"}
        out.append(record)
    out.append(CaseRecord(case_id=f"{RT4K}|set5|2|bf16", label=RT4K, method="rt4ksr", encoder="", dataset="set5",
                          scale="2", protocol="gsasr", status=UNSUPPORTED, precision="bf16",
                          notes={"psnr": "n/a (unsupported precision)", "ssim": "n/a (unsupported precision)"}))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], list[CaseRecord]]:
    run_dir = tmp_path_factory.mktemp("variants") / "run"
    store = RunStore(run_dir)
    store.write_run({"config": {"name": "variants", "metrics": ["psnr", "ssim"], "precisions": ["fp32", "bf16"]}})
    records = _records()
    for record in records:
        store.put_case(record)
    store.close()
    return run_dir, render_report(run_dir), records


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _segment_widths(svg: Path) -> dict[str, float]:
    """SVG id -> horizontal extent of the path inside that group (a bar segment is a closed rectangle path)."""
    widths = {}
    for group in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}g"):
        gid = group.get("id", "")
        if not gid.startswith("stage-"):
            continue
        path = group.find("{http://www.w3.org/2000/svg}path")
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.get("d"))]
        xs = numbers[0::2]
        widths[gid] = max(xs) - min(xs)
    return widths


def test_stage_segments_are_proportional_to_the_stored_stage_medians_and_other_is_the_rest(run) -> None:
    run_dir, paths, records = run
    assert "plots/stages.svg" in paths and "plots/stages.pdf" in paths
    widths = _segment_widths(paths["plots/stages.svg"])
    expected = {}  # id -> ms, by hand from KNOWN
    for label, _, scale, precision, time_ms, stages, _, _ in KNOWN:
        if not stages:
            continue
        shown = label if precision == "fp32" else f"{label} [{precision}]"
        bar = StageBar(shown, "set5", scale, time_ms, stages, (64, 48))
        for name, ms in stages.items():
            expected[stage_gid(bar, name)] = ms
        expected[stage_gid(bar, "other")] = max(0.0, time_ms - sum(stages.values()))
    assert set(expected) == set(widths)  # one segment per stage and an 'other' per bar; RT4KSR (no stages) absent
    assert expected[stage_gid(StageBar(LIIF, "set5", "2", 0, {}, ()), "other")] == 80.0 - 70.0
    units = [widths[k] / ms for k, ms in expected.items() if ms > 0]
    assert max(units) / min(units) == pytest.approx(1.0, abs=1e-3)  # one ms -> the same length everywhere
    assert widths[stage_gid(StageBar(LIIF, "set5", "3", 0, {}, ()), "other")] == pytest.approx(0.0, abs=1e-6)
    html = paths["report.html"].read_text()
    assert "Where the time goes" in html and "LR 64×48" in html
    assert "stages add up to more than the total" in html and "5.00 ms" in html  # 30 + 95 − 120


def test_no_stage_figure_without_stages(tmp_path: Path, png_only_plots: None) -> None:
    make_run(tmp_path / "run", visuals=False)
    paths = render_report(tmp_path / "run")
    assert not any(p.startswith("plots/stages") for p in paths)
    html = paths["report.html"].read_text()
    assert "Where the time goes" not in html and "720p" not in html and 'id="precision"' not in html
    assert "precision.md" not in paths and "[fp32]" not in html and "[bf16]" not in html


def test_frame_rate_columns_show_the_stored_rates_for_every_row_of_the_method(run) -> None:
    run_dir, paths, records = run
    rows = _csv(paths["cost.csv"])
    for row in rows:
        plain = row["label"].removesuffix(" [bf16]")
        fps720, fps1080 = FPS[(plain, row["precision"])]
        assert row["fps_1080p_4k"] and float(row["fps_1080p_4k"]) == fps1080
        assert (row["fps_720p_4k"] == "") if fps720 is None else float(row["fps_720p_4k"]) == fps720
    md = paths["cost.md"].read_text()
    assert "FPS 720p→4K" in md and "FPS 1080p→4K" in md
    liif_bf16 = [line for line in md.splitlines() if line.startswith(f"| {LIIF} [bf16]")]
    assert len(liif_bf16) == 2 and all("| 19.5 | 63.7 |" in line for line in liif_bf16)
    rt4k = next(line for line in md.splitlines() if line.startswith(f"| {RT4K}*"))
    assert "| n/a | 123.4 |" in rt4k
    assert "FPS 720p→4K n/a: RT4KSR (x3 unsupported)" in md
    assert "not run (unsupported precision): RT4KSR [bf16] at x2" in md
    assert "80.0 (76.0–88.0, n=7)" in md  # median with min–max and repeat count: 0.95 and 1.1 of 80
    html = paths["report.html"].read_text()
    assert "<th>FPS 720p→4K</th>" in html and ">123.4</td>" in html
    # 11 columns with the two rates and the timed calls' range and count (their own aligned columns)
    assert re.search(r"\\begin\{tabular\}\{(l|>\{\\raggedright\\arraybackslash\}p\{\d+pt\})r{10}\}",
                     paths["cost.tex"].read_text())


def test_precision_table_has_the_stored_deltas_and_speedups(run) -> None:
    run_dir, paths, records = run
    rows = {(r["label"], r["scale"]): r for r in _csv(paths["precision.csv"])}
    assert set(rows) == {(LIIF, "2"), (LIIF, "3")}  # RT4KSR bf16 did not run; fp32 rows are the reference
    by = {(k[0], k[2], k[3]): k for k in KNOWN}
    for scale in ("2", "3"):
        ref, mine = by[(LIIF, scale, "fp32")], by[(LIIF, scale, "bf16")]
        row = rows[(LIIF, scale)]
        assert row["variant"] == "bf16"
        assert float(row["delta_psnr"]) == pytest.approx(mine[6] - ref[6], abs=1e-12)
        assert float(row["delta_ssim"]) == pytest.approx(mine[7] - ref[7], abs=1e-12)
        assert float(row["speedup"]) == pytest.approx(ref[4] / mine[4], rel=1e-12)
    assert float(rows[(LIIF, "2")]["delta_psnr"]) == pytest.approx(-0.0125)  # 34.4875 − 34.5
    assert float(rows[(LIIF, "2")]["speedup"]) == pytest.approx(1.6)         # 80 / 50
    md = paths["precision.md"].read_text()
    line = next(l for l in md.splitlines() if l.startswith(f"| {LIIF} | Set5 x2"))
    assert "| bf16 | 50.0 | 80.0 | 1.60× | -0.0125 | -0.003800 |" in line
    html = paths["report.html"].read_text()
    section = html.split('id="precision"')[1].split("</section>")[0]
    assert "1.60×" in section and "1.25×" in section and "-0.2500" in section  # x3: 120/96, 31.0 − 31.25
    # the accuracy table keeps fp32 and bf16 apart (they share label, dataset and scale)
    accuracy = {r["label"]: r for r in _csv(paths["accuracy.csv"])}
    assert float(accuracy[LIIF]["Set5 x2 PSNR"]) == 34.5
    assert float(accuracy[f"{LIIF} [bf16]"]["Set5 x2 PSNR"]) == 34.4875


def test_each_variant_has_its_own_crop_and_a_bicubic_method_replaces_the_fixed_bicubic_tile(tmp_path: Path,
                                                                                          png_only_plots: None) -> None:
    from PIL import Image

    from asr_bench.engine.records import ImageRecord
    from asr_bench.results.schema import label_stem

    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.write_run({"config": {"metrics": ["psnr", "ssim"]}})
    bicubic = CaseRecord(case_id="bicubic|set5|2", label="bicubic", method="bicubic", encoder="", dataset="set5",
                         scale="2", protocol="gsasr", metrics={"psnr": 30.0, "ssim": 0.9}, time_ms=1.0)
    records = [bicubic, *(r for r in _records() if r.scale == "2" and r.label == LIIF)]
    psnr = {bicubic.case_id: 30.0, f"{LIIF}|set5|2": 36.11, f"{LIIF}|set5|2|bf16": 36.07}  # per-image, distinct
    for record in records:
        store.put_case(record)
        store.add_image(ImageRecord(record.case_id, "baby", metrics={"psnr": psnr[record.case_id], "ssim": 0.95}),
                        record.case_id)
    store.close()
    folder = run_dir / "visuals" / "set5" / "2" / "baby"
    folder.mkdir(parents=True)
    crops = ["GT", "bicubic", label_stem("bicubic"), label_stem(LIIF), label_stem(f"{LIIF} [bf16]")]
    for i, stem in enumerate(crops):  # how the engine names them: the variant label for bf16
        Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(folder / f"{stem}.png")
    html = render_report(run_dir)["report.html"].read_text()
    names = re.findall(r'<div class="name">([^<]*)</div>', html)
    assert names == ["GT", "bicubic", LIIF, f"{LIIF} [bf16]"]  # one bicubic tile: the method's
    captions = re.findall(r'<div class="metric">([^<]*)</div>', html)
    assert captions[1:] == ["PSNR 30.00 / SSIM 0.9500", "PSNR 36.11 / SSIM 0.9500", "PSNR 36.07 / SSIM 0.9500"]


def test_a_compiled_case_is_compared_with_fp32_eager_and_the_summary_names_variants() -> None:
    from dataclasses import replace

    from asr_bench.report.model import variant_rows
    from asr_bench.report.tables import summary_table

    eager = next(r for r in _records() if r.case_id == f"{LIIF}|set5|2")
    compiled = replace(eager, case_id=f"{LIIF}|set5|2|compiled", compiled=True, time_ms=64.0,
                       metrics={"psnr": 34.5, "ssim": 0.9050})
    rows, names = variant_rows([eager, compiled])
    assert names == ["psnr", "ssim"] and len(rows) == 1
    assert rows[0].variant == "compiled" and rows[0].speedup == pytest.approx(80.0 / 64.0)
    assert rows[0].deltas == {"psnr": 0.0, "ssim": 0.0}
    lines = summary_table([eager, compiled]).splitlines()
    assert any(line.startswith(f"{LIIF} [compiled]"[:23]) for line in lines)  # labels are clipped to 24 columns
    assert variant_rows([eager]) == ([], [])  # one setting: no comparison
