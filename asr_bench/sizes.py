"""Output sizes and scale checks shared by every method.

`scale` may be a float (one factor for both axes) or a (sy, sx) pair; the output size is
floor(s * h) x floor(s * w) unless a size is given explicitly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import UserError

Scale = float | tuple[float, float]


def as_pair(scale: Scale) -> tuple[float, float]:
    """(sy, sx) from a scalar or a pair, validated: every factor must be > 1."""
    try:
        pair = tuple(float(s) for s in scale) if isinstance(scale, Sequence) and not isinstance(scale, str) \
            else (float(scale), float(scale))
    except (TypeError, ValueError):  # [2, x], a mapping, None ...
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(s) for s in pair):
        raise UserError(f"scale {scale!r} is not a number or an (sy, sx) pair; use e.g. scale=4 or scale=(3.5, 2.25).")
    if min(pair) <= 1:
        raise UserError(f"scale {scale!r} must be greater than 1 (this suite benchmarks upscaling); use e.g. 2, 3.5 or 4.")
    return pair  # type: ignore[return-value]


def output_size(lr_hw: tuple[int, int], scale: Scale) -> tuple[int, int]:
    """floor(s * h), floor(s * w), robust to float error (3 * 1.1 must not give 3.2999 -> 3)."""
    sy, sx = as_pair(scale)
    h, w = lr_hw
    return math.floor(sy * h + 1e-9), math.floor(sx * w + 1e-9)


def scale_of(lr_hw: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """The effective (sy, sx) of an explicit output size."""
    return size[0] / lr_hw[0], size[1] / lr_hw[1]


def format_scale(scale: Scale) -> str:
    """'4', '3.5' or '3x2.5': the label used in tables, file names and cache folders."""
    sy, sx = as_pair(scale)
    fmt = lambda s: f"{s:g}"  # noqa: E731
    return fmt(sy) if sy == sx else f"{fmt(sy)}x{fmt(sx)}"
