"""Making the LR side of a dataset from its HR images, in the layouts the catalogue reads.

- `prepare_lr`: an EDSR benchmark-package layout (`HR/` + `LR_bicubic/X<s>/<id>x<s>.png`) from a folder of HR
  images. For each integer scale the HR is cropped top-left to a multiple of s first, as the package did;
  mode "uint8" (default) is MATLAB's uint8 arithmetic, which reproduces the official Set5 files bit for bit.
- `prepare_div2k_720`: GSASR's cost-benchmark set (docs/methods/gsasr.md §7): GT = HR[80:800, 80:800] of
  each DIV2K validation image (`scripts/data_preparation/test_time_img_generate.py` fixes top = left = 80),
  LR per scale by BasicSR's float bicubic imresize, rounded to uint8. Written as `DIV2K_GT720/<id>.png` and
  `DIV2K_LR720/X<s>/<id>.png`.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import MissingFile, UserError
from .catalogue import _image_files
from .images import read_image, write_image
from .imresize import MODES, imresize

GSASR_720_TOP_LEFT = 80
GSASR_720_SIZE = 720
GSASR_720_SCALES = (2, 3, 4, 6, 8, 12)


def _integer_scales(scales: Iterable[float]) -> list[int]:
    out = []
    for s in scales:
        if float(s) != int(float(s)) or int(float(s)) < 2:
            raise UserError(f"prepare makes premade LR for integer scales >= 2 only, got {s}; non-integer scales are "
                            "generated on the fly by the protocol.")
        out.append(int(float(s)))
    return sorted(set(out))


def _hr_files(hr_dir: str | Path) -> dict[str, Path]:
    hr_dir = Path(hr_dir).expanduser()
    if not hr_dir.is_dir():
        raise MissingFile("HR folder", hr_dir, "Give the folder that holds the HR images.")
    files = _image_files(hr_dir)
    if not files:
        raise UserError(f"HR folder {hr_dir} holds no images; give the folder with the .png/.jpg/.bmp files.")
    return files


def prepare_lr(hr_dir: str | Path, scales: Iterable[float], out_dir: str | Path, mode: str = "uint8",
               copy_hr: bool = True) -> list[Path]:
    """Write `<out>/LR_bicubic/X<s>/<id>x<s>.png` (and `<out>/HR/<id>.png` unless copy_hr=False); return the paths.

    HR PNGs are copied byte for byte; other formats are re-encoded as PNG. Existing files are left alone,
    so a rerun only fills in what is missing.
    """
    if mode not in MODES:
        raise UserError(f"prepare mode '{mode}' is unknown; use 'uint8' (MATLAB) or 'float' (BasicSR python).")
    files, out, written = _hr_files(hr_dir), Path(out_dir).expanduser(), []
    scale_list = _integer_scales(scales)
    for image_id, path in files.items():
        hr = None
        if copy_hr:
            target = out / "HR" / f"{image_id}.png"
            if not target.exists():
                if path.suffix.lower() == ".png":
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                else:
                    hr = read_image(path)
                    write_image(target, hr)
                written.append(target)
        for s in scale_list:
            target = out / "LR_bicubic" / f"X{s}" / f"{image_id}x{s}.png"
            if target.exists():
                continue
            hr = read_image(path) if hr is None else hr
            h, w = hr.shape[0] // s * s, hr.shape[1] // s * s
            if min(h, w) == 0:
                raise UserError(f"image {path} is {hr.shape[0]}x{hr.shape[1]} (h x w): too small for scale {s} (its LR "
                                f"would be {hr.shape[0] // s}x{hr.shape[1] // s} px); remove it from {hr_dir} or drop "
                                "that scale.")
            write_image(target, imresize(np.ascontiguousarray(hr[:h, :w]), scale=1 / s, mode=mode))
            written.append(target)
    return written


def prepare_div2k_720(div2k_hr_dir: str | Path, out_dir: str | Path,
                      scales: Iterable[float] = GSASR_720_SCALES) -> list[Path]:
    """GSASR's DIV2K-720 set: `DIV2K_GT720/<id>.png` = HR[80:800, 80:800], `DIV2K_LR720/X<s>/<id>.png`."""
    files, out, written = _hr_files(div2k_hr_dir), Path(out_dir).expanduser(), []
    scale_list = _integer_scales(scales)
    bad = [s for s in scale_list if GSASR_720_SIZE % s]
    if bad:
        raise UserError(f"DIV2K-720 scales must divide 720, got {bad}; GSASR uses {GSASR_720_SCALES}.")
    a, b = GSASR_720_TOP_LEFT, GSASR_720_TOP_LEFT + GSASR_720_SIZE
    for image_id, path in files.items():
        hr = read_image(path)
        if hr.shape[0] < b or hr.shape[1] < b:
            raise UserError(f"{path} is {hr.shape[0]}x{hr.shape[1]}, too small for the crop [{a}:{b}, {a}:{b}]; "
                            "give DIV2K_valid_HR (full-size DIV2K images).")
        gt = np.ascontiguousarray(hr[a:b, a:b])
        target = out / "DIV2K_GT720" / f"{image_id}.png"
        write_image(target, gt)
        written.append(target)
        for s in scale_list:
            target = out / "DIV2K_LR720" / f"X{s}" / f"{image_id}.png"
            write_image(target, imresize(gt, scale=1 / s, mode="float"))
            written.append(target)
    return written
