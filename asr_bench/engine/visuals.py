"""Side-by-side crops for the report: the same HR-space box from GT, a bicubic upscale and every method.

Written for the first image of each (dataset, scale): `visuals/<dataset>/<scale>/<image>/{GT,bicubic,<label_stem>}.png`
(label_stem = slug + a short hash of the label, so no two labels share a file).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..results.schema import label_stem
from .records import slug


def crop_box(hr_hw: tuple[int, int], sr_hw: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right): a side x side box around the centre, clipped to both images."""
    h, w = min(hr_hw[0], sr_hw[0]), min(hr_hw[1], sr_hw[1])
    bh, bw = min(side, h), min(side, w)
    top, left = (h - bh) // 2, (w - bw) // 2
    return top, left, top + bh, left + bw


def visual_dir(run_dir: Path, dataset: str, scale_label: str, image_id: str) -> Path:
    return Path(run_dir) / "visuals" / slug(dataset) / scale_label / slug(image_id)


def save_crops(folder: Path, name: str, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, side: int) -> None:
    """The method's crop, plus GT and bicubic the first time any method writes this folder."""
    from ..data import imresize, to_uint8, write_image

    top, left, bottom, right = crop_box(tuple(hr.shape[-2:]), tuple(sr.shape[-2:]), side)
    cut = lambda x: x[..., top:bottom, left:right]  # noqa: E731
    write_image(folder / f"{label_stem(name)}.png", to_uint8(cut(sr.detach().float().cpu())))
    if not (folder / "GT.png").exists():
        write_image(folder / "GT.png", to_uint8(cut(hr.float().cpu())))
    if not (folder / "bicubic.png").exists():
        up = imresize(lr.float().cpu(), size=tuple(sr.shape[-2:]))
        write_image(folder / "bicubic.png", to_uint8(cut(up)))
