"""`score`: metrics of an existing folder of SR images against GT, like the official scoring scripts.

SR and GT are paired by file stem (SR stem = GT stem + `suffix`, e.g. `baby_x4.png` for `baby.png`).
A GT larger than its SR by less than the scale (an HR that was not mod-cropped) is cropped top-left to the
SR size, as the benchmark loaders crop the GT to s * lr; any other size mismatch is an error.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from ..errors import MissingFile, UserError
from ..jsontext import dumps


def image_files(folder: Path) -> dict[str, Path]:
    from ..data import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise MissingFile("image folder", folder, "Give a folder that holds the images (PNG, JPEG, BMP, TIFF).")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not files:
        raise UserError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); point to the folder with the images.")
    return files


def pair_files(sr_dir: Path, gt_dir: Path, suffix: str = "") -> list[tuple[str, Path, Path]]:
    """(image id, SR path, GT path) for every GT image; a GT without its SR is an error naming it."""
    sr, gt = image_files(sr_dir), image_files(gt_dir)
    pairs, missing = [], []
    for stem, gt_path in gt.items():
        sr_path = sr.get(stem + suffix)
        if sr_path is None:
            missing.append(stem + suffix)
        else:
            pairs.append((stem, sr_path, gt_path))
    if missing:
        hint = " (set --suffix, e.g. --suffix _x4)" if not suffix else ""
        raise UserError(f"{len(missing)} GT image(s) have no SR image in {sr_dir}, e.g. '{missing[0]}'{hint}; "
                        f"SR files found: {', '.join(list(sr)[:3])}.")
    return pairs


def matched_gt(sr: Any, gt: Any, scale: float, name: str) -> Any:
    (h, w), (gh, gw) = sr.shape[-2:], gt.shape[-2:]
    if (gh, gw) == (h, w):
        return gt
    if 0 <= gh - h < math.ceil(scale) and 0 <= gw - w < math.ceil(scale):
        return gt[..., :h, :w]
    raise UserError(f"{name}: SR is {h}x{w} but GT is {gh}x{gw}; at scale {scale:g} they must match "
                    "(or GT exceed SR by less than the scale). Are these the right folders and --scale?")


def score_folders(sr_dir: Path, gt_dir: Path, scale: float, protocol: str = "gsasr",
                  metrics: list[str] | tuple[str, ...] = ("psnr", "ssim"), suffix: str = "",
                  weights_dir: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Per-image values and their means; a metric that is n/a on any image is n/a in the mean, with why."""
    from ..data import read_image, to_tensor
    from ..protocols import get_protocol

    if not (scale > 1 and math.isfinite(scale)):
        raise UserError(f"--scale {scale:g} must be a finite number greater than 1 (it sets the border crop), "
                        "e.g. --scale 4.")
    proto = get_protocol(protocol)
    dataset = dataset or Path(gt_dir).name
    rows, notes = [], {}
    for image_id, sr_path, gt_path in pair_files(Path(sr_dir), Path(gt_dir), suffix):
        sr = to_tensor(read_image(sr_path))
        gt = matched_gt(sr, to_tensor(read_image(gt_path)), scale, image_id)
        values, why = proto.score(sr, gt, scale, list(metrics), dataset, weights_dir)
        for metric, value in values.items():
            if value == math.inf and metric == "psnr":  # an SR equal to its GT: the error is 0, PSNR is +inf
                notes.setdefault(metric, f"inf on image '{image_id}': SR equals GT there (zero error), so PSNR is "
                                         "infinite, and so is the mean (JSON has no inf: written as null there)")
            elif value is not None and not math.isfinite(value):
                values[metric] = None
                notes.setdefault(metric, f"{value} on image '{image_id}' (written as null), so the mean is null too")
        rows.append({"image": image_id, **values})
        notes.update(why)
    mean: dict[str, float | None] = {}
    for metric in metrics:
        values = [row[metric] for row in rows]
        if all(v is not None for v in values):
            mean[metric] = math.inf if math.inf in values else statistics.fmean(values)
        else:
            mean[metric] = None
    return {"protocol": proto.label, "scale": scale, "dataset": dataset, "metrics": list(metrics),
            "images": rows, "mean": mean, "notes": notes}


def to_json(result: dict[str, Any]) -> str:
    """Strict JSON: a non-finite value is null (score_folders notes why)."""
    return dumps(result, indent=2) + "\n"


def to_csv(result: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *result["metrics"]])
    for row in result["images"]:
        writer.writerow([row["image"], *("" if row[m] is None else row[m] for m in result["metrics"])])
    writer.writerow(["mean", *("" if result["mean"][m] is None else result["mean"][m] for m in result["metrics"])])
    return buffer.getvalue()
