"""`save_images: true`: every SR output written as a PNG, as BasicSR's `save_img` does during validation.

Kept apart from the runner so the one place that saves outputs is one call: `<run>/images/<dataset>/x<scale>/
<label stem>/<image>.png` (uint8, the same rounding as the protocol's quantisation: clamp, x255, round).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..results.schema import label_stem
from .records import slug


def output_path(run_dir: Path, dataset: str, scale_label: str, label: str, image_id: str) -> Path:
    """The label's folder is its `label_stem` (slug + a short hash): bounded, and two labels that slug alike
    ('A b', 'a_b') do not write into one folder."""
    return Path(run_dir) / "images" / slug(dataset) / f"x{scale_label}" / label_stem(label) / f"{image_id}.png"


def save_output(run_dir: Path, dataset: str, scale_label: str, label: str, image_id: str, sr: torch.Tensor) -> Path:
    """Write one SR output (float [0,1], (1,3,H,W)) as PNG; returns the path."""
    from ..data import to_uint8, write_image

    path = output_path(run_dir, dataset, scale_label, label, image_id)
    write_image(path, to_uint8(sr.detach().float().cpu()))
    return path
