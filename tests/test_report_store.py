"""A realistic synthetic run folder for the report tests (records made through the store's dataclasses).

Not a test module: test_report*.py, test_tables.py and test_published.py import `make_run` from here.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from asr_bench.engine.records import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord, ImageRecord, slug
from asr_bench.results.schema import label_stem

METHODS = [  # label, method, encoder, integer scales only, status override
    ("Bicubic", "bicubic", "", False, None),
    ("LIIF (edsr-baseline)", "liif", "edsr-baseline", False, None),
    ("MetaSR (edsr-baseline)", "metasr", "edsr-baseline", False, None),
    ("GSASR (edsr)", "gsasr", "edsr", False, None),
    ("IGConv+ (edsr)", "igconv+", "edsr", True, None),
    ("RT4KSR", "rt4ksr", "", True, NO_WEIGHTS),
]
DATASETS = ["set5", "urban100"]
SCALES = ["2", "3", "3.5", "4"]
LPIPS_NOTE = "n/a (weights missing: alexnet-owt-7be5be79.pth)"


def _metrics(rng: random.Random, scale: float, quality: float) -> dict[str, float]:
    psnr = 38.5 - 2.9 * (scale - 2) + quality + rng.uniform(-0.05, 0.05)
    return {"psnr": psnr, "ssim": 0.96 - 0.035 * (scale - 2) + quality / 100, "lpips": 0.05 + 0.04 * scale - quality / 50,
            "dists": 0.04 + 0.02 * scale - quality / 100}


def make_cases(seed: int = 0) -> list[CaseRecord]:
    rng = random.Random(seed)
    cases = []
    for dataset in DATASETS:
        for scale in SCALES:
            for q, (label, method, encoder, integer_only, status) in enumerate(METHODS):
                s = float(scale)
                case = CaseRecord(case_id=f"{label}|{dataset}|{scale}", label=label, method=method, encoder=encoder,
                                  dataset=dataset, scale=scale, protocol="gsasr", n_images=5 if dataset == "set5" else 100,
                                  time_repeats=10, time_warmup=3, memory_kind="cuda max_memory_allocated",
                                  device="cuda", params=None if method == "bicubic" else 1_500_000 + 400_000 * q,
                                  output_mpix=(0.065 if dataset == "set5" else 0.9) * s * s / 16)
                if integer_only and not s.is_integer():
                    case.status = UNSUPPORTED
                    cases.append(case)
                    continue
                case.time_ms = 0.4 + q * 3.1 * s + rng.uniform(0, 0.5)
                case.memory_mb = 20 + q * 11 * s * s + rng.uniform(0, 2)
                case.flops = None if method == "bicubic" else 1e9 * (q + 1) * s * s
                if status == NO_WEIGHTS:
                    case.status = NO_WEIGHTS
                elif label.startswith("GSASR") and dataset == "urban100" and scale == "4":
                    case.status = ERROR
                    case.error = "CUDA out of memory: tried to allocate 2.00 GiB (rasterizer tile buffer)"
                    case.time_ms = case.memory_mb = case.flops = None
                else:
                    quality = [0.0, 1.1, 1.15, 1.4, 1.35][q]
                    case.metrics = _metrics(rng, s, quality)
                    if method == "metasr":
                        case.metrics["lpips"] = None
                        case.notes["lpips"] = LPIPS_NOTE
                cases.append(case)
    return cases


def _crop(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([128 + 100 * np.sin(x / 3.0), 128 + 100 * np.cos(y / 4.0), 128 + 60 * np.sin((x + y) / 5.0)], -1)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_visuals(run_dir: Path, cases: list[CaseRecord]) -> None:
    rng = np.random.default_rng(0)
    gt = _crop(rng)
    for dataset, scale, image in [("set5", "4", "butterfly"), ("urban100", "3.5", "img_004")]:
        folder = run_dir / "visuals" / dataset / scale / image
        folder.mkdir(parents=True)
        Image.fromarray(gt).save(folder / "GT.png")
        blurred = np.asarray(Image.fromarray(gt).resize((12, 12), Image.BICUBIC).resize((48, 48), Image.BICUBIC))
        Image.fromarray(blurred).save(folder / "bicubic.png")
        for case in cases:
            if case.dataset == dataset and case.scale == scale and case.status == OK and case.method != "bicubic":
                noisy = np.clip(gt.astype(int) + rng.integers(-25, 25, gt.shape), 0, 255).astype(np.uint8)
                Image.fromarray(noisy).save(folder / f"{label_stem(case.label)}.png")


def make_images(cases: list[CaseRecord]) -> list[ImageRecord]:
    images = []
    for case in cases:
        if case.status != OK:
            continue
        for image in ["baby", "bird", "butterfly", "head", "woman"] if case.dataset == "set5" else ["img_004"]:
            images.append(ImageRecord(case.case_id, image, metrics=dict(case.metrics), notes=dict(case.notes),
                                      lr_size=(64, 64), sr_size=(256, 256)))
    return images


RUN_JSON = {
    "environment": {"torch": "2.13.0", "device": "NVIDIA H100 80GB HBM3", "cuda": "12.8", "python": "3.11.9",
                    "git_commit": "f6f6461", "config_hash": "3b1f0c2a9e", "backends": {"rasterize": "cuda",
                                                                                  "meta_upscale": "cpp"}},
    "config": {"name": "x4-demo", "protocol": "gsasr", "datasets": DATASETS, "scales": [2, 3, 3.5, 4],
               "methods": [{"method": m, "encoder": e, "label": lab} for lab, m, e, _, _ in METHODS],
               "timing": {"warmup": 3, "repeats": 10}},
}


def make_run(run_dir: Path, cases: list[CaseRecord] | None = None, visuals: bool = True) -> list[CaseRecord]:
    """Write run.json, cases.jsonl, images.jsonl (and visuals/) into run_dir; returns the cases."""
    cases = make_cases() if cases is None else cases
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(RUN_JSON, indent=2))
    (run_dir / "cases.jsonl").write_text("".join(json.dumps(c.to_dict()) + "\n" for c in cases))
    (run_dir / "images.jsonl").write_text("".join(json.dumps(i.to_dict()) + "\n" for i in make_images(cases)))
    if visuals:
        write_visuals(run_dir, cases)
    return cases


# ------------------------------------------------------------------------------------------ reading the store

import pytest  # noqa: E402

from asr_bench.errors import UserError  # noqa: E402
from asr_bench.report.reading import read_run  # noqa: E402


def test_read_run_returns_the_records_written(tmp_path: Path) -> None:
    cases = make_run(tmp_path / "run", visuals=False)
    data = read_run(tmp_path / "run")
    assert [c.to_dict() for c in data.cases] == [c.to_dict() for c in cases]
    assert data.run == json.loads(json.dumps(RUN_JSON))
    assert len(data.images) == len(make_images(cases))


def test_truncated_last_line_is_skipped_and_resumed_cases_replace_earlier_ones(tmp_path: Path) -> None:
    cases = make_run(tmp_path / "run", visuals=False)
    newer = CaseRecord.from_dict({**cases[0].to_dict(), "metrics": {"psnr": 99.0}})
    with open(tmp_path / "run" / "cases.jsonl", "a") as handle:
        handle.write(json.dumps(newer.to_dict()) + "\n" + '{"case_id": "half a li')
    data = read_run(tmp_path / "run")
    assert len(data.cases) == len(cases)
    assert data.cases[0].case_id == cases[0].case_id and data.cases[0].metrics == {"psnr": 99.0}


def test_a_damaged_line_inside_the_store_is_a_user_error_naming_it(tmp_path: Path) -> None:
    make_run(tmp_path / "run", visuals=False)
    path = tmp_path / "run" / "cases.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = "{oops"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"cases.jsonl:3"):
        read_run(tmp_path / "run")


def test_a_folder_without_cases_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cases.jsonl"):
        read_run(tmp_path)
