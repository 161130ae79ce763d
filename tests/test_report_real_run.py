"""A real run end to end (bicubic + the official RT4KSR weights on ../shared/data Set5 x2/x3/x4, LPIPS asked for
with no LPIPS weights): tables.tex compiles with pdflatex without one overfull box, and the report says the
LPIPS reason once. Slow (a few minutes on a shared CPU): `pytest -m slow tests/test_report_real_run.py`."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from asr_bench.config import parse_config
from asr_bench.engine.runner import run_benchmark

pytestmark = pytest.mark.slow
RT4KSR_PARAMS = {"2": 152_233, "3": 165_253}  # docs/methods/rt4ksr.md §2.1 / ../shared/data/README.md


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import shared_path

    set5 = shared_path("benchmark", "Set5")
    weights = shared_path("weights", "rt4ksr")
    tmp = tmp_path_factory.mktemp("real")
    (tmp / "no-lpips-weights").mkdir()
    config = parse_config({
        "name": "real", "methods": ["bicubic", {"method": "rt4ksr", "checkpoint": str(weights)}],
        "datasets": ["set5"], "scales": [2, 3, 4], "metrics": ["psnr", "ssim", "lpips"], "device": "cpu",
        "profiling": {"warmup": 0, "repeats": 1, "memory": False, "flops": False},
        "data_root": str(set5.parent), "weights_dir": str(tmp / "no-lpips-weights"), "output": str(tmp / "run"),
        "cache_dir": str(tmp / "cache")})
    run_benchmark(config, progress=False)
    return tmp / "run"


def test_the_run_is_what_the_tables_show(real_run: Path) -> None:
    import asr_bench.results as results

    cases = results.load(real_run).cases.set_index("case_id")
    assert cases.loc["rt4ksr|set5|4", "status"] == "unsupported"
    for scale, params in RT4KSR_PARAMS.items():  # the network that ran at that scale, not both added
        assert cases.loc[f"rt4ksr|set5|{scale}", "params"] == params
    md = (real_run / "tables" / "accuracy.md").read_text()
    assert "LPIPS not shown: n/a for every method (weights missing: " in md
    assert "| rt4ksr |" in md and "– (a)" in md and "- (a) unsupported scale" in md


def test_five_images_give_intervals_and_ties_never_bold(real_run: Path) -> None:
    """Set5 has 5 images: the exact sign-flip p is at least 2/32, so nothing is bold; the pairs have intervals."""
    import asr_bench.results as results

    pairs = results.load(real_run).pairwise(["psnr"])
    assert len(pairs) == 2 and set(pairs["n"]) == {5} and set(pairs["test"]) == {"sign-flip"}
    assert (pairs["p"] >= 2 / 32 - 1e-12).all() and not pairs["significant"].any()
    assert (pairs["low"] <= pairs["delta"]).all() and (pairs["delta"] <= pairs["high"]).all()
    md = (real_run / "tables" / "accuracy.md").read_text()
    assert "**" not in md.split("\n\n")[1] and " ≈ |" in md and "2/32 = 0.0625" in md
    assert "#### Paired differences" in md and "Paired differences" in (real_run / "report.html").read_text()


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="needs pdflatex (apt-get install texlive-latex-recommended; .ci/run installs it)")
def test_tables_tex_compiles_without_an_overfull_box(real_run: Path) -> None:
    tables = real_run / "tables"
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tables,
                          capture_output=True, text=True, timeout=300)
    log = (tables / "tables.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert (tables / "tables.pdf").stat().st_size > 1000
    assert "Overfull" not in log, re.findall(r"Overfull.*", log)
    assert r"\input{accuracy}" in (tables / "tables.tex").read_text()


def test_the_report_says_the_lpips_reason_once(real_run: Path) -> None:
    html = (real_run / "report.html").read_text()
    assert len(re.findall(r"weights missing: alexnet-owt-7be5be79\.pth", html)) == 1
    assert html.count("unsupported scale") >= 1 and "n/a (" not in html.split('id="accuracy"')[1].split('id="cost"')[0]
