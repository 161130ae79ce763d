"""Side-by-side crops for the report: the same HR-space box from GT, a bicubic upscale and every method.

Written for the first image of each (dataset, scale): `visuals/<dataset>/<scale>/<image>/{GT,bicubic,<label_stem>}.png`
(label_stem = slug + a short hash of the label, so no two labels share a file), plus `thumb.png` (the whole HR
image, small) and `box.json` (where the crop sits in it), so the report can draw the crop's box on a thumbnail
like a paper figure.

Every method's crop is written by its own case, possibly in its own process, so the box must not depend on
any method's output: it is the window where the HR has the most detail (gradient energy of luma), which is
where methods differ most in practice, or `visuals.crop_at` when the config names a corner.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import atomic
from ..results.schema import label_stem
from .records import slug

THUMB_PX = 240  # longer side of the thumbnail


def crop_box(hr_hw: tuple[int, int], sr_hw: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right): a side x side box around the centre, clipped to both images."""
    h, w = min(hr_hw[0], sr_hw[0]), min(hr_hw[1], sr_hw[1])
    bh, bw = min(side, h), min(side, w)
    top, left = (h - bh) // 2, (w - bw) // 2
    return top, left, top + bh, left + bw


def placed_box(hr_hw: tuple[int, int], sr_hw: tuple[int, int], side: int,
               corner: tuple[int, int]) -> tuple[int, int, int, int]:
    """A side x side box with its top-left at `corner`, moved inside both images where it would stick out."""
    h, w = min(hr_hw[0], sr_hw[0]), min(hr_hw[1], sr_hw[1])
    bh, bw = min(side, h), min(side, w)
    top, left = min(max(0, corner[0]), h - bh), min(max(0, corner[1]), w - bw)
    return top, left, top + bh, left + bw


def detail_box(hr: torch.Tensor, sr_hw: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """The side x side window (inside both images) with the largest sum of squared luma gradients of the HR."""
    h, w = min(hr.shape[-2], sr_hw[0]), min(hr.shape[-1], sr_hw[1])
    bh, bw = min(side, h), min(side, w)
    rgb = hr.detach().double().reshape(-1, *hr.shape[-3:])[0, :, :h, :w]
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) if rgb.shape[0] == 3 else rgb[0]
    energy = torch.zeros_like(luma)
    energy[:, 1:] += (luma[:, 1:] - luma[:, :-1]) ** 2
    energy[1:, :] += (luma[1:, :] - luma[:-1, :]) ** 2
    sums = F.avg_pool2d(energy[None, None], (bh, bw), stride=1)[0, 0]  # mean over every window position
    index = int(torch.argmax(sums))
    top, left = divmod(index, sums.shape[1])
    return top, left, top + bh, left + bw


def visual_dir(run_dir: Path, dataset: str, scale_label: str, image_id: str) -> Path:
    return Path(run_dir) / "visuals" / slug(dataset) / scale_label / slug(image_id)


def save_crops(folder: Path, name: str, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, side: int,
               crop_at: tuple[int, int] | None = None) -> None:
    """The method's crop, plus GT, bicubic, the thumbnail and the box the first time any method writes this folder."""
    from ..data import imresize, to_uint8, write_image

    box_file = folder / "box.json"
    if box_file.exists():  # the first case fixed the box: every method's crop is of the same region
        top, left, bottom, right = json.loads(box_file.read_text())["box"]
    else:
        sr_hw = tuple(sr.shape[-2:])
        top, left, bottom, right = (placed_box(tuple(hr.shape[-2:]), sr_hw, side, crop_at) if crop_at is not None
                                    else detail_box(hr, sr_hw, side))
    cut = lambda x: x[..., top:bottom, left:right]  # noqa: E731
    write_image(folder / f"{label_stem(name)}.png", to_uint8(cut(sr.detach().float().cpu())))
    if not (folder / "GT.png").exists():
        write_image(folder / "GT.png", to_uint8(cut(hr.float().cpu())))
    if not (folder / "bicubic.png").exists():
        up = imresize(lr.float().cpu(), size=tuple(sr.shape[-2:]))
        write_image(folder / "bicubic.png", to_uint8(cut(up)))
    if not box_file.exists():
        hr_h, hr_w = hr.shape[-2:]
        factor = THUMB_PX / max(hr_h, hr_w)
        if factor < 1:
            thumb_hw = (max(1, round(hr_h * factor)), max(1, round(hr_w * factor)))
            thumb = imresize(hr.float().cpu(), size=thumb_hw)
        else:
            thumb = hr.float().cpu()
        write_image(folder / "thumb.png", to_uint8(thumb))
        box = {"box": [top, left, bottom, right], "hr_size": [int(hr_h), int(hr_w)],
               "chosen": "crop_at" if crop_at is not None else "most detail"}
        atomic.write_text(box_file, json.dumps(box))
