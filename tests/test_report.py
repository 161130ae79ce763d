"""render_report: files written, HTML self-contained and escaped, re-render identical, visuals faithful,
plots valid, run metadata shown; and (when Chromium is installed) the page really renders."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_report_store import RUN_JSON, make_cases, make_run

from asr_bench.engine.records import ERROR, slug
from asr_bench.results.schema import label_stem
from asr_bench.report import render_report
from asr_bench.report.visuals import zoom_factor


class _Tags(HTMLParser):
    """Every start tag with its attributes, plus the text of <pre> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.pre: list[str] = []
        self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_pre = tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        self._in_pre = False if tag == "pre" else self._in_pre

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.pre.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    run = tmp_path_factory.mktemp("report") / "run"
    make_run(run)
    return run, render_report(run)


def test_render_writes_tables_plots_and_one_html(rendered: tuple[Path, dict[str, Path]]) -> None:
    run, paths = rendered
    expected = {f"{t}.{e}" for t in ("accuracy", "cost") for e in ("md", "tex", "csv")} | {"report.html"}
    assert expected <= set(paths)
    plots = ("accuracy_vs_scale", "pareto", "time_vs_mpix", "memory_vs_scale")
    assert {p for p in paths if p.startswith("plots/")} == {
        *(f"plots/{n}.{e}" for n in plots for e in ("png", "pdf", "svg")),
        "plots/visual_set5_x4_butterfly.png", "plots/visual_urban100_x3.5_img_004.png"}
    assert "tables.tex" in paths
    for name in plots:  # PDF and SVG for papers, real files of their formats
        assert paths[f"plots/{name}.pdf"].read_bytes().startswith(b"%PDF-")
        assert b"<svg" in paths[f"plots/{name}.svg"].read_bytes()[:2000]
    for name, path in paths.items():
        assert path.exists() and path.stat().st_size > 0
        assert path.parent in (run, run / "tables", run / "plots")
    assert "published.md" not in paths  # only when a published folder is given
    for name in ("accuracy_vs_scale", "time_vs_mpix", "memory_vs_scale"):
        with Image.open(paths[f"plots/{name}.png"]) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_html_is_self_contained(rendered: tuple[Path, dict[str, Path]]) -> None:
    html = rendered[1]["report.html"].read_text()
    tags = _parse(html).tags
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in tags:
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not re.match(r"\s*(https?:)?//", value), (tag, key, value)
            if tag == "img":
                assert attrs["src"].startswith("data:image/png;base64,")
            if tag == "a" and key == "href" and value:
                assert value.startswith("#")
    assert "@import" not in html and "url(" not in html
    images = [a["src"] for t, a in tags if t == "img"]
    # plots + two visual rows (GT, bicubic and the methods that ran) + an error map under every crop but GT's
    assert len(images) == 4 + 6 + 5 + (6 - 1) + (5 - 1)


def test_rendering_again_from_the_store_gives_the_same_files(rendered: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    run, paths = rendered
    copy = tmp_path / "run"  # same folder name: the page title names the run
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tables", "plots", "report.html"))
    again = render_report(copy)
    for name in paths:
        assert again[name].read_bytes() == paths[name].read_bytes(), name


def test_accuracy_cells_in_html_show_best_second_and_footnoted_reasons_once(rendered: tuple[Path, dict[str, Path]]) -> None:
    html = rendered[1]["report.html"].read_text()
    error = next(c for c in make_cases() if c.status == ERROR).error
    assert html.count(error) == 2  # once under the accuracy table, once in the cost table's error list
    assert re.search(r'<li id="fn1"><span class="label">GSASR \(edsr\)</span>: ' + re.escape(error), html)
    assert 'href="#fn1"' in html
    assert html.count("weights missing: alexnet-owt-7be5be79.pth") == 1
    notes = re.findall(r'<li id="(t1-\d+)"><span class="mk">([a-z])</span>([^<]*)</li>', html)
    assert [text for _, _, text in notes] == ["LPIPS: weights missing: alexnet-owt-7be5be79.pth",
                                             f"error in GSASR (edsr): {error}", "unsupported scale"]
    for anchor, mark, _ in notes:  # every marker in a cell links to its note
        assert f'<sup class="mark"><a href="#{anchor}">{mark}</a></sup>' in html
    assert "n/a (" not in html.split('id="accuracy"')[1].split('id="cost"')[0]
    # the stored images are few (4-6 per case): no difference can be significant, so nothing is bold, the best
    # and the methods it does not beat are marked tied, and the page says why
    assert html.count('class="value best') == 0 and html.count('class="tie"') > 0
    assert "Holm-adjusted" in html and "no difference there can be significant" in html
    assert "1 method ran on random weights: cost only (RT4KSR)" in html
    assert "Protocol: gsasr" in html


def test_run_metadata_and_resolved_config_are_shown(rendered: tuple[Path, dict[str, Path]]) -> None:
    html = rendered[1]["report.html"].read_text()
    env = RUN_JSON["environment"]
    for key in ("torch", "device", "git_commit", "config_hash"):
        assert f'<td class="key">{key}</td><td>{env[key]}</td>' in html
    assert '<td class="key">backends.rasterize</td><td>cuda</td>' in html
    (pre,) = _parse(html).pre
    assert yaml.safe_load(pre) == RUN_JSON["config"]
    assert "<details>\n<summary>Resolved configuration</summary>" in html  # collapsible
    for field, value in [("protocol", "gsasr"), ("border crop", "int(s) pixels, at most 8"),
                         ("output rounding", "round to uint8 levels"), ("colour space (PSNR, SSIM)", "Y (BT.601)")]:
        assert re.search(f'<td class="key">{re.escape(field)}</td><td>[^<]*{re.escape(value)}', html), field


def _decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_visual_rows_are_nearest_neighbour_zooms_of_the_stored_crops_in_method_order(
        rendered: tuple[Path, dict[str, Path]]) -> None:
    run, paths = rendered
    html = paths["report.html"].read_text()
    tags = [a for t, a in _parse(html).tags if t == "img" and "alt" in a][4:]  # skip the four plots
    imgs = [a for a in tags if not a["alt"].startswith("error map")]
    errors = {a["alt"][len("error map of "):]: a for a in tags[:11] if a["alt"].startswith("error map")}  # first row
    cases = make_cases()
    ran = [c.label for c in cases if c.dataset == "set5" and c.scale == "4" and c.status == "ok" and c.method != "bicubic"]
    assert [a["alt"] for a in imgs[:6]] == ["GT", "Bicubic", *ran]
    folder = run / "visuals" / "set5" / "4" / "butterfly"
    for attrs, stem in zip(imgs[:6], ["GT", "bicubic", *(label_stem(label) for label in ran)]):
        source = np.asarray(Image.open(folder / f"{stem}.png").convert("RGB"))
        factor = zoom_factor((source.shape[1], source.shape[0]))
        assert factor == 4  # 48 px crop -> 192 px
        expected = source.repeat(factor, axis=0).repeat(factor, axis=1)
        assert np.array_equal(_decode(attrs["src"]), expected)
        assert attrs["width"] == str(source.shape[1] * factor)
        if stem != "GT":  # |crop - GT| averaged over RGB, x4, clipped, zoomed the same: computed here by hand
            gt_crop = np.asarray(Image.open(folder / "GT.png").convert("RGB")).astype(float)
            diff = np.clip(np.rint(np.abs(source.astype(float) - gt_crop).mean(axis=2) * 4), 0, 255)
            shown = _decode(errors[attrs["alt"]]["src"])[..., 0]
            assert np.array_equal(shown, diff.repeat(factor, axis=0).repeat(factor, axis=1))
    figure = np.asarray(Image.open(paths["plots/visual_set5_x4_butterfly.png"]).convert("RGB"))
    gt = np.asarray(Image.open(folder / "GT.png").convert("RGB")).repeat(4, axis=0).repeat(4, axis=1)
    assert figure.shape[1] == 6 * 192 + 7 * 8  # six tiles and their gaps
    assert np.array_equal(figure[8:8 + 192, 8:8 + 192], gt)  # the paper figure holds the same zoomed crops
    liif = next(c for c in cases if c.label == ran[0] and c.dataset == "set5" and c.scale == "4")
    assert f"PSNR {liif.metrics['psnr']:.2f} / SSIM {liif.metrics['ssim']:.4f}" in html


def test_a_temp_file_left_in_a_crop_folder_is_not_shown_as_a_method(tmp_path: Path, png_only_plots: None) -> None:
    """A run killed inside write_image leaves a hidden `.GT.<random>.tmp.png` beside the crops: not a panel."""
    make_run(tmp_path / "run")
    folder = tmp_path / "run" / "visuals" / "set5" / "4" / "butterfly"
    shutil.copy(folder / "GT.png", folder / ".GT.k2j4x.tmp.png")
    html = render_report(tmp_path / "run")["report.html"].read_text()
    alts = [a["alt"] for t, a in _parse(html).tags if t == "img" and "alt" in a]
    assert "GT" in alts and not [alt for alt in alts if "tmp" in alt or alt.startswith(".")]


def test_a_time_stored_before_setup_was_taken_out_from_an_unwarmed_call_says_it_may_hold_a_compile(
        tmp_path: Path, png_only_plots: None) -> None:
    """Old records have no `time_setup_ms`: with no warm-up and no memory call their first call may have built an
    op, and the table says so; a new record (setup measured, 0 here) and an old warmed-up one say nothing."""
    cases = make_cases()
    measured = [c for c in cases if c.time_ms is not None and c.method != "bicubic"]
    old_cold, new_cold, old_warm = measured[0], measured[1], measured[2]
    for c in (old_cold, new_cold):
        c.time_warmup, c.memory_mb = 0, None
    new_cold.time_setup_ms = 0.0
    assert old_warm.time_warmup > 0 and old_warm.time_setup_ms is None
    make_run(tmp_path / "run", cases, visuals=False)
    render_report(tmp_path / "run")
    table = (tmp_path / "run" / "tables" / "cost.md").read_text()
    flagged = [line for line in table.splitlines() if "may include one-time setup" in line]
    assert old_cold.dataset == "set5"
    assert flagged == [f"- time of {old_cold.label}, Set5 x{old_cold.scale}: "
                       "may include one-time setup (a compiled op built on first use): measured without a warm-up by "
                       "an asr-bench that did not yet take it out; rerun into a new output folder to measure it again"]


def test_text_from_the_store_is_escaped(tmp_path: Path, png_only_plots: None) -> None:
    cases = make_cases()
    cases[0].label = "<script>alert(1)</script>"
    cases[0].case_id = cases[0].label + "|set5|2"
    make_run(tmp_path / "run", cases, visuals=False)
    html = render_report(tmp_path / "run")["report.html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_without_run_json_or_visuals_still_renders(tmp_path: Path, png_only_plots: None) -> None:
    make_run(tmp_path / "run", visuals=False)
    (tmp_path / "run" / "run.json").unlink()
    html = render_report(tmp_path / "run")["report.html"].read_text()
    assert "no run.json" in html and "Visual comparison" not in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium (apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(rendered: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1400,2400", rendered[1]["report.html"].as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1400)
    dark = pixels < 128
    assert dark.mean() > 0.01  # text and tables were drawn, not a blank page
    columns = np.flatnonzero(dark.any(axis=0))
    assert columns.min() > 20 and columns.max() < 1380  # inside the page margins: nothing runs off the right edge


def test_visual_folders_named_by_slug_map_back_to_dataset_labels_and_image_scores(tmp_path: Path) -> None:
    from asr_bench.engine.records import CaseRecord, ImageRecord
    from asr_bench.report.visuals import visual_rows

    case = CaseRecord("My Net|My Photos|2", "My Net", "mynet", "", "My Photos", "2", "gsasr", metrics={"psnr": 30.0})
    image = ImageRecord(case.case_id, "Holiday Pic", metrics={"psnr": 31.25, "ssim": 0.5})
    folder = tmp_path / "visuals" / slug("My Photos") / "2" / slug("Holiday Pic")
    folder.mkdir(parents=True)
    for stem in ("GT", slug("My Net"), "bicubic"):
        Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(folder / f"{stem}.png")
    (row,) = visual_rows(tmp_path, [case], [image])
    assert row.dataset == "My Photos"
    assert [(t.name, t.caption, t.zoom) for t in row.tiles] == [("GT", "", 6), ("bicubic", "", 6),
                                                               ("My Net", "PSNR 31.25 / SSIM 0.5000", 6)]
