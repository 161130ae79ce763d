"""Every LaTeX table we emit compiles into a paper as is: pdflatex's log has no overfull box and no "Float too large",
for a quick-run-like store, a LIIF-like store (published and reference numbers) and 12 methods x 8 datasets x 6 scales.
Needs pdflatex (texlive-latex-base/-recommended/-extra; .ci/run installs them); skipped, with the reason, without it."""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_store import make_cases, make_images

from asr_bench.report.model import accuracy_tables, cost_rows, variant_rows
from asr_bench.report.published import load_published
from asr_bench.report.tables import (accuracy_latex, cost_latex, latex_document, published_latex, published_rows,
                                     variant_latex)
from asr_bench.results.schema import CaseRecord, ImageRecord

PUBLISHED = Path(__file__).resolve().parents[1] / "asr_bench" / "published"

pytestmark = pytest.mark.skipif(shutil.which("pdflatex") is None,
                                reason="pdflatex not installed (apt-get install texlive-latex-base "
                                       "texlive-latex-recommended texlive-latex-extra)")


def compile_tables(folder: Path, cases: list[CaseRecord], images: list[ImageRecord], published=()) -> str:
    """Write the run's .tex tables as the report does and compile tables.tex; returns the log."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = accuracy_tables(cases, published, images=images)
    texts = {"accuracy": accuracy_latex(tables, cases), "cost": cost_latex(cost_rows(cases), cases)}
    rows, names = variant_rows(cases)
    if rows:
        texts["precision"] = variant_latex(rows, names)
    if published:
        texts["published"] = published_latex(published_rows(tables))
    for name, text in texts.items():
        (folder / f"{name}.tex").write_text(text)
        assert r"\resizebox" not in text and r"\shortstack" not in text
    (folder / "tables.tex").write_text(latex_document(list(texts)))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    log = (folder / "tables.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    return log


def assert_clean(log: str) -> None:
    bad = [line for line in log.splitlines() if "Overfull" in line or "Float too large" in line]
    assert not bad, bad[:5]


def test_quick_run_like_tables_compile_without_overfull_boxes(tmp_path):
    cases = make_cases()
    assert_clean(compile_tables(tmp_path / "quick", cases, make_images(cases)))


def test_liif_like_tables_with_published_numbers_compile_without_overfull_boxes(tmp_path):
    rng = random.Random(1)
    cases, images = [], []
    for scale, psnr in (("2", 37.99), ("3", 34.40), ("4", 32.24), ("6", 28.9), ("12", 24.1)):
        case_id = f"EDSR-baseline-LIIF|set5|{scale}"
        values = [psnr + rng.gauss(0, 2) for _ in range(5)]
        cases.append(CaseRecord(case_id, "EDSR-baseline-LIIF", "liif", "edsr-baseline", "set5", scale, "liif",
                                n_images=5, metrics={"psnr": sum(values) / 5}, time_ms=40.0, time_repeats=1,
                                time_samples_ms=[40.0], device="cpu"))
        images += [ImageRecord(case_id, f"img{i}", {"psnr": v}) for i, v in enumerate(values)]
    published = load_published(PUBLISHED)
    tex_log = compile_tables(tmp_path / "liif", cases, images, published)
    assert_clean(tex_log)
    assert "published" in (tmp_path / "liif" / "tables.tex").read_text()


def synthetic(methods: int, datasets: int, scales: int, n_images: int = 8) -> tuple[list[CaseRecord], list[ImageRecord]]:
    rng = random.Random(methods * 100 + datasets * 10 + scales)
    cases, images = [], []
    names = ["Bicubic", "EDSR-baseline-LIIF", "LTE (edsr-baseline)", "CiaoSR (rdn)", "SRNO (rdn)", "GSASR (hat-l)",
             "MetaSR (rdn)", "IGConv+ (edsr)", "HIIF (swinir)", "CLIT (rdn)", "OPE-SR (edsr)", "RT4KSR"][:methods]
    for d in range(datasets):
        dataset = ["set5", "set14", "b100", "urban100", "manga109", "div2k-val", "lsdir-val", "div2k-720"][d]
        for s in range(scales):
            scale = ["2", "3", "4", "6", "12", "18"][s]
            for m, label in enumerate(names):
                case_id = f"{label}|{dataset}|{scale}"
                psnr = [30 + m * 0.05 + rng.gauss(0, 1.5) for _ in range(n_images)]
                ssim = [0.9 + m * 0.001 + rng.gauss(0, 0.01) for _ in range(n_images)]
                times = [5.0 + m + rng.random() for _ in range(5)]
                cases.append(CaseRecord(case_id, label, label.split()[0].lower(), "", dataset, scale, "gsasr",
                                        n_images=n_images, metrics={"psnr": sum(psnr) / n_images,
                                                                    "ssim": sum(ssim) / n_images},
                                        time_ms=sorted(times)[2], time_samples_ms=times, time_repeats=5,
                                        time_min_ms=min(times), time_max_ms=max(times), time_warmup=2,
                                        memory_mb=100.0 + m, memory_kind="cpu peak RSS increase", params=10 ** 6 * m,
                                        flops=1e9 * (m + 1), output_mpix=0.25, device="cpu"))
                images += [ImageRecord(case_id, f"img{i}", {"psnr": p, "ssim": q})
                           for i, (p, q) in enumerate(zip(psnr, ssim))]
    return cases, images


@pytest.mark.slow
def test_twelve_methods_eight_datasets_six_scales_compile_without_overfull_boxes_or_too_large_floats(tmp_path):
    cases, images = synthetic(12, 8, 6)
    log = compile_tables(tmp_path / "big", cases, images)
    assert_clean(log)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 1, 6), (12, 1, 1), (3, 8, 1), (12, 2, 3)])
def test_small_and_odd_shapes_compile_without_overfull_boxes(tmp_path, shape):
    cases, images = synthetic(*shape, n_images=6)
    assert_clean(compile_tables(tmp_path / "x".join(map(str, shape)), cases, images))
