"""Evaluation protocols: everything that changes a number, named, so that every table can say which it used.

| protocol | LR when no premade file                | HR / output size            | output      | PSNR colour, border            |
|----------|----------------------------------------|-----------------------------|-------------|--------------------------------|
| gsasr    | BasicSR float imresize of HR, rounded  | floor(s * lr)               | uint8 levels| BasicSR Y; int(s), capped at 8 |
| liif     | x2-x4: MATLAB (= the premade files);   | round(floor(H/s+1e-9) * s)  | float       | Y/256 (DIV2K: RGB); s (DIV2K:  |
|          | else PIL bicubic (LIIF's resize_fn)    |                             |             | s + 6)                         |
| metasr   | MATLAB uint8                           | floor(s * lr)               | uint8 levels| Y/256; ceil(s) (DIV2K: +6)     |
| rt4ksr   | MATLAB uint8                           | floor(s * lr)               | uint8 levels| BasicSR Y; 0                   |
| ntire    | MATLAB uint8                           | floor(s * lr)               | uint8 levels| RGB; 4                         |

Premade LR files (the dataset's `LR_bicubic/X<s>` etc.) are used wherever they exist, for every protocol.
SSIM is always BasicSR's, on the protocol's colour space (Y unless RGB) and border; LPIPS/DISTS and piq's
metrics (ms-ssim, fsim, vif, gmsd, haarpsi) on RGB [0,1] with the same border. Sources: docs/methods/gsasr.md §7,
docs/methods/liif.md §5, docs/methods/metasr.md §2.4, docs/methods/rt4ksr.md §4.

Choices where the official code is silent (written down here and tested):
- border for a non-integer scale: liif -> ceil(s) (Meta-SR's rule, the only official code with one);
  gsasr -> int(s) as its script; an asymmetric (sy, sx) uses max(sy, sx).
- gsasr generated LR for non-integer s: resize the uncropped HR by 1/s (ceil size), crop the LR to
  floor(H/s) x floor(W/s), HR to floor(lr * s) (GSASR's generate_bicubic_float_scale script).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.catalogue import Dataset
from .data.fingerprint import image_sha256
from .data.images import quantize, read_image, to_tensor, write_image
from .data.imresize import imresize
from .errors import UnknownName, UserError
from .metrics import (METRICS, PIQ_METRICS, ImageTooSmall, PackageMissing, WeightsMissing, dists, lpips,
                      piq_metric, psnr, psnr_shave, ssim)
from .sizes import Scale, format_scale

LR_RECIPES = ("basicsr-float", "matlab-uint8", "liif")
# Bump a recipe's version whenever its output changes: cached LR files of the old version are then not reused.
LR_RECIPE_VERSIONS = {"basicsr-float": 1, "matlab-uint8": 1, "liif": 1}
PSNR_STYLES = ("basicsr", "shave256")
OVERRIDABLE = ("crop", "y_channel", "quantize", "lr")
SSIM_WINDOW = 11  # BasicSR's gaussian window, valid convolution: smaller images have no SSIM


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol; `get_protocol(name, **overrides)` makes variants (label says which)."""

    name: str
    description: str
    lr_recipe: str                 # how LR is generated when the dataset has no premade file
    psnr_style: str                # "basicsr" (peak 255, BasicSR Y) or "shave256" (EDSR/LIIF: Y/256, peak 1)
    crop_rule: str                 # "int-cap8" | "scale" | "ceil" | "zero" | "four"
    quantize: bool                 # round the output to uint8 levels before scoring
    y_channel: bool = True
    div2k_rgb_extra: int | None = None   # EDSR-style: DIV2K scored on RGB with border s + this
    crop: int | None = None        # override: a fixed border
    even_lr: bool = False          # RT4KSR's loader crops the LR to even h, w (and the HR to LR * s)
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def label(self) -> str:
        if not self.overrides:
            return self.name
        return f"{self.name} ({', '.join(f'{k}={_fmt(v)}' for k, v in self.overrides)})"

    # ----- LR / HR pairs -------------------------------------------------------------------------------
    def lr_hr(
        self, dataset: Dataset, image_id: str, scale: Scale, cache_dir: Path | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR (1,3,h,w), HR target (1,3,H,W)), floats in [0,1], made exactly as the protocol says."""
        lr, hr = self._lr_hr_arrays(dataset, image_id, _pair(scale), cache_dir)
        self._check_scorable(dataset, image_id, hr.shape[:2], scale)
        return to_tensor(lr), to_tensor(hr)

    def _lr_hr_arrays(self, dataset: Dataset, image_id: str, scale: tuple[float, float],
                      cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
        sy, sx = scale
        hr = dataset.hr(image_id)
        self._check_lr_size(dataset, image_id, hr.shape[:2], scale)
        lr_path = dataset.premade_lr_path(image_id, scale) if self._uses_premade((sy, sx)) else None
        if lr_path is not None:
            lr = self._even(_premade_of_size(lr_path, hr.shape[:2], int(sy)))
            return lr, self._crop_hr_to_lr(hr, lr.shape[:2], (sy, sx))
        cache = self._cache_path(dataset, image_id, scale, cache_dir)
        hr_crop = self._generation_hr(hr, (sy, sx))
        if cache is not None and cache.is_file():
            lr = read_image(cache)
        else:
            lr = self._generate_lr(hr, hr_crop, (sy, sx))
            if cache is not None:
                write_image(cache, lr)
        lr = self._even(lr)
        return lr, self._crop_hr_to_lr(hr_crop, lr.shape[:2], (sy, sx))

    def _check_lr_size(self, dataset: Dataset, image_id: str, hr_hw: tuple[int, int],
                       scale: tuple[float, float]) -> None:
        """An HR smaller than the scale has no LR (0 pixels): say so instead of dividing by zero later."""
        h, w = (math.floor(n / s + 1e-9) for n, s in zip(hr_hw, scale))
        least = 2 if self.even_lr else 1
        if min(h, w) < least:
            raise UserError(f"image {_where(dataset, image_id)} is {hr_hw[0]}x{hr_hw[1]} (h x w): too small for scale "
                            f"{format_scale(scale)} (its LR would be {h}x{w} px); remove it from the dataset or "
                            "drop that scale.")

    def _check_scorable(self, dataset: Dataset, image_id: str, hr_hw: tuple[int, int], scale: Scale) -> None:
        """The border the metrics exclude must leave pixels to score."""
        border = self.border(scale, dataset.name)
        if min(hr_hw) <= 2 * border:
            raise UserError(f"image {_where(dataset, image_id)}: its {hr_hw[0]}x{hr_hw[1]} target at scale "
                            f"{format_scale(scale)} is all border (protocol {self.label} excludes {border} px per "
                            "side), so nothing is left to score; remove it from the dataset or drop that scale.")

    def _even(self, lr: np.ndarray) -> np.ndarray:
        """Top-left crop to even sides where the protocol's loader does it (RT4KSR benchmark.py)."""
        if not self.even_lr:
            return lr
        return lr[: lr.shape[0] // 2 * 2, : lr.shape[1] // 2 * 2]

    def _uses_premade(self, scale: tuple[float, float]) -> bool:
        """Premade files everywhere, except LIIF's x6+, which it always makes on the fly with PIL."""
        return self.lr_recipe != "liif" or _liif_matlab_scale(scale)

    def _crop_hr_to_lr(self, hr: np.ndarray, lr_hw: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
        """Top-left crop of HR to the size the output will have (floor, or LIIF's round)."""
        h, w = self.output_size(lr_hw, hr.shape[:2], scale)
        if h > hr.shape[0] or w > hr.shape[1]:
            raise UserError(f"premade LR {lr_hw} at scale {format_scale(scale)} needs an HR of at least {h}x{w}, "
                            f"the HR is {hr.shape[0]}x{hr.shape[1]}; the LR files do not belong to this HR folder.")
        return hr[:h, :w]

    def _generation_hr(self, hr: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
        """The HR the LR is generated from: mod-cropped for integer scales (all recipes), LIIF's crop for liif."""
        H, W = hr.shape[:2]
        sy, sx = scale
        if self.lr_recipe == "liif" and not _liif_matlab_scale(scale):
            h_lr, w_lr = math.floor(H / sy + 1e-9), math.floor(W / sx + 1e-9)
            return hr[:round(h_lr * sy), :round(w_lr * sx)]
        if _is_int(sy) and _is_int(sx):
            return hr[:H // int(sy) * int(sy), :W // int(sx) * int(sx)]
        return hr  # non-integer: the uncropped HR is resized, the LR cropped after (GSASR's script)

    def _generate_lr(self, hr: np.ndarray, hr_crop: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
        sy, sx = scale
        H, W = hr.shape[:2]
        if self.lr_recipe == "liif" and not _liif_matlab_scale(scale):
            h_lr, w_lr = math.floor(H / sy + 1e-9), math.floor(W / sx + 1e-9)
            return pil_bicubic(hr_crop, (h_lr, w_lr))
        source = hr_crop
        if self.lr_recipe == "basicsr-float":
            lr = imresize(source, scale=(1 / sy, 1 / sx), mode="float")
        else:  # MATLAB uint8 (also LIIF's x2-x4, which reproduces the benchmark files bit for bit)
            lr = imresize(source, scale=(1 / sy, 1 / sx), mode="uint8")
        h_lr, w_lr = math.floor(H / sy + 1e-9), math.floor(W / sx + 1e-9)
        return np.ascontiguousarray(lr[:h_lr, :w_lr])

    def _cache_path(self, dataset: Dataset, image_id: str, scale: Scale, cache_dir: Path | None) -> Path | None:
        """`<cache>/lr/<recipe>-v<version>/<scale>/<sha256 of the HR file>.png`: keyed by what the LR is made
        from (the HR's bytes, the recipe, the scale), never by a name, so a replaced image or another data root
        with the same catalogue name gets its own LR."""
        if cache_dir is None:
            return None
        digest = image_sha256(dataset, image_id, index_dir=cache_dir)
        recipe = f"{self.lr_recipe}-v{LR_RECIPE_VERSIONS[self.lr_recipe]}"
        return Path(cache_dir) / "lr" / recipe / format_scale(scale) / f"{digest}.png"

    # ----- sizes and output ---------------------------------------------------------------------------
    def output_size(self, lr_hw: Sequence[int], hr_hw: Sequence[int], scale: Scale) -> tuple[int, int]:
        """The size the method must produce: floor(s * lr), or LIIF's round(lr * s) (= its cropped HR)."""
        sy, sx = _pair(scale)
        if self.lr_recipe == "liif":
            return round(lr_hw[0] * sy), round(lr_hw[1] * sx)
        return math.floor(lr_hw[0] * sy + 1e-9), math.floor(lr_hw[1] * sx + 1e-9)

    def finalize(self, sr: torch.Tensor) -> torch.Tensor:
        """Clamp to [0,1]; round to the 256 uint8 levels when the protocol saves/scores 8-bit images."""
        sr = sr.clamp(0, 1)
        return quantize(sr) if self.quantize else sr

    # ----- scoring ------------------------------------------------------------------------------------
    def border(self, scale: Scale, dataset: str = "") -> int:
        """The border excluded from every metric, for this scale and dataset."""
        if self.crop is not None:
            return int(self.crop)
        s = max(_pair(scale))
        extra = self.div2k_rgb_extra if (self.div2k_rgb_extra is not None and _is_div2k(dataset)) else 0
        if self.crop_rule == "int-cap8":
            return int(s) if s <= 8 else 8
        if self.crop_rule == "scale":
            return (int(s) if _is_int(s) else math.ceil(s)) + extra
        if self.crop_rule == "ceil":
            return math.ceil(s) + extra
        if self.crop_rule == "four":
            return 4
        return 0

    def colour_is_y(self, dataset: str = "") -> bool:
        if dict(self.overrides).get("y_channel") is not None:
            return bool(self.y_channel)
        if self.div2k_rgb_extra is not None and _is_div2k(dataset):
            return False
        return self.y_channel

    def score(
        self,
        sr: torch.Tensor,
        hr: torch.Tensor,
        scale: Scale,
        metrics: Sequence[str],
        dataset: str = "",
        weights_dir: str | None = None,
    ) -> tuple[dict[str, float | None], dict[str, str]]:
        """Per-image metric values (None + a note when a metric's weights or optional package are absent)."""
        border, use_y = self.border(scale, dataset), self.colour_is_y(dataset)
        if sr.shape != hr.shape:
            raise UserError(f"output size {tuple(sr.shape[-2:])} differs from the target {tuple(hr.shape[-2:])}; "
                            "the method must produce protocol.output_size().")
        values: dict[str, float | None] = {}
        notes: dict[str, str] = {}
        for name in metrics:
            if name not in METRICS:
                raise UnknownName("metric", name, METRICS)
            if name == "ssim" and min(hr.shape[-2:]) - 2 * border < SSIM_WINDOW:
                values[name], notes[name] = None, f"n/a (image smaller than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window)"
                continue
            try:
                values[name] = self._metric(name, sr, hr, border, use_y, weights_dir)
            except WeightsMissing as missing:
                values[name], notes[name] = None, f"n/a (weights missing: {missing.filename})"
            except (PackageMissing, ImageTooSmall) as missing:
                values[name], notes[name] = None, f"n/a ({missing})"
        return values, notes

    def _metric(self, name: str, sr: torch.Tensor, hr: torch.Tensor, border: int, use_y: bool,
                weights_dir: str | None) -> float:
        if name == "psnr":
            if self.psnr_style == "shave256":
                return psnr_shave(sr, hr, border, y_channel=use_y)
            return psnr(sr, hr, crop=border, y_channel=use_y)
        if name == "ssim":
            return ssim(sr, hr, crop=border, y_channel=use_y)
        sr_c, hr_c = _crop(sr, border), _crop(hr, border)
        if name == "lpips":
            return lpips(sr_c, hr_c, weights_dir)
        if name in PIQ_METRICS:
            return piq_metric(name, sr_c, hr_c)
        return dists(sr_c, hr_c, weights_dir)


def _where(dataset: Dataset, image_id: str) -> str:
    path = dataset.hr_path(image_id)
    return str(path) if path is not None else f"'{image_id}' of dataset {dataset.name}"


def _premade_of_size(path: Path, hr_hw: tuple[int, int], s: int) -> np.ndarray:
    """The premade LR file, which must be floor(HR / s) (made from the HR cropped to a multiple of s): a file
    of another size (X4 files under X2, another dataset's files) would be scored against a crop of the HR."""
    lr = read_image(path)
    expected = (hr_hw[0] // s, hr_hw[1] // s)
    if lr.shape[:2] != expected:
        raise UserError(f"premade LR {path} is {lr.shape[0]}x{lr.shape[1]} (h x w) but at scale {s} the HR "
                        f"({hr_hw[0]}x{hr_hw[1]}) needs {expected[0]}x{expected[1]}; the file belongs to another "
                        "scale or image: replace it (e.g. `prepare --hr <HR folder> --out <dataset folder>`) or "
                        "remove it to generate the LR.")
    return lr


def _crop(image: torch.Tensor, border: int) -> torch.Tensor:
    return image[..., border:-border, border:-border] if border else image


def pil_bicubic(hr: np.ndarray, lr_hw: tuple[int, int]) -> np.ndarray:
    """LIIF's resize_fn: PIL bicubic (antialiased, support scaled by the factor) on uint8, to (h, w)."""
    image = Image.fromarray(hr).resize((lr_hw[1], lr_hw[0]), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()


PROTOCOLS: dict[str, Protocol] = {
    "gsasr": Protocol("gsasr", "GSASR / BasicSR: Y (BT.601), border int(s) (max 8), uint8 output; generated LR "
                      "by BasicSR's float imresize", "basicsr-float", "basicsr", "int-cap8", True),
    "liif": Protocol("liif", "LIIF / EDSR: Y/256 (DIV2K: RGB, border s+6), border s, float output; x6+ LR by PIL "
                     "bicubic", "liif", "shave256", "scale", False, div2k_rgb_extra=6),
    "metasr": Protocol("metasr", "Meta-SR repo: Y/256, border ceil(s) (DIV2K: RGB, +6), uint8 output",
                       "matlab-uint8", "shave256", "ceil", True, div2k_rgb_extra=6),
    "rt4ksr": Protocol("rt4ksr", "RT4KSR repo: BasicSR Y, no border, uint8 output, LR cropped to even sides",
                       "matlab-uint8", "basicsr", "zero", True, even_lr=True),
    "ntire": Protocol("ntire", "NTIRE challenges: RGB, border 4, uint8 output", "matlab-uint8", "basicsr", "four",
                      True, y_channel=False),
}


def list_protocols() -> list[str]:
    return list(PROTOCOLS)


def get_protocol(name: str, **overrides: object) -> Protocol:
    """A protocol by name; overrides: crop (int >= 0), y_channel (bool), quantize (bool), and lr (how LR is
    generated where no premade file exists: 'basicsr-float', 'matlab-uint8' or 'liif')."""
    if name not in PROTOCOLS:
        raise UnknownName("protocol", name, PROTOCOLS)
    base = PROTOCOLS[name]
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in OVERRIDABLE:
            raise UserError(f"protocol option '{key}' is unknown; allowed: {', '.join(OVERRIDABLE)} "
                            f"(e.g. protocol: {{name: {name}, crop: 4}}).")
        changes[key] = _check_override(key, value)
    if not changes:
        return base
    fields_ = {"lr": "lr_recipe"}
    kwargs = {fields_.get(k, k): v for k, v in changes.items()}
    return replace(base, **kwargs, overrides=tuple(sorted(changes.items())))


def _check_override(key: str, value: object) -> object:
    if key == "crop":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"protocol crop must be an integer >= 0, got {value!r}; e.g. crop: 4.")
        return value
    if key in ("y_channel", "quantize"):
        if not isinstance(value, bool):
            raise UserError(f"protocol {key} must be true or false, got {value!r}.")
        return value
    if value not in LR_RECIPES:
        raise UserError(f"protocol lr must be one of {', '.join(LR_RECIPES)}, got {value!r}.")
    return value


def _fmt(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _pair(scale: Scale) -> tuple[float, float]:
    if isinstance(scale, (tuple, list)):
        return float(scale[0]), float(scale[1])
    return float(scale), float(scale)


def _is_int(s: float) -> bool:
    return float(s) == int(float(s))


def _liif_matlab_scale(scale: tuple[float, float]) -> bool:
    """LIIF's x2-x4 use the MATLAB-made LR files; every other scale is made on the fly by PIL."""
    return scale[0] == scale[1] and scale[0] in (2.0, 3.0, 4.0)


def _is_div2k(dataset: str) -> bool:
    return str(dataset).lower().startswith("div2k")


__all__ = ["PROTOCOLS", "Protocol", "get_protocol", "list_protocols", "pil_bicubic"]
