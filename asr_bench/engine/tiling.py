"""Tiled inference for any method: bounded memory on large images.

The LR is cut into `tile` x `tile` windows that overlap by `overlap` LR pixels. Each window is upscaled on its
own to the part of the output grid it covers: LR row y maps to output row round(y * H / h), so the tiles tile
the exact output size and a fixed-scale method (H = s*h) receives exactly s times its window. Neighbours
split their overlap in the middle and each keeps its own side (no blending), so every output pixel comes from
one call, at least overlap/2 LR pixels away from that window's edge. For a local method at an integer scale
this equals whole-image inference away from the borders; for a non-integer scale the window's sub-pixel grid
can differ from the global one by less than one output pixel.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

Forward = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def engine_tile(model: Any, tile: int | None) -> int | None:
    """The tile the engine uses for this model: none where the method tiles itself (its spec says `internal`,
    e.g. GSASR's official tiling through its `tile` option); a warning where tiling changes its numbers."""
    policy = getattr(model, "tiling", "allowed")
    if tile is None or policy == "allowed":
        return tile
    if policy == "internal":
        warnings.warn(f"method '{model.method}' tiles itself; the engine's tiling.tile={tile} is not applied "
                      "(use the method's own tile option).", stacklevel=2)
        return None
    warnings.warn(f"method '{model.method}' changes its output when tiled (tiling.tile={tile}); "
                  "its numbers are not whole-image numbers.", stacklevel=2)
    return tile


def windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Per window along one axis: (start, stop, keep_from, keep_to) in LR pixels."""
    if tile >= length:
        return [(0, length, 0, length)]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step)) + [length - tile]
    spans = [(a, a + tile) for a in starts]
    cuts = [(spans[i][1] + spans[i + 1][0]) // 2 for i in range(len(spans) - 1)]
    keep_from = [0] + cuts
    keep_to = cuts + [length]
    return [(a, b, f, t) for (a, b), f, t in zip(spans, keep_from, keep_to)]


def tiled_forward(forward: Forward, lr: torch.Tensor, size: tuple[int, int], tile: int, overlap: int) -> torch.Tensor:
    """`forward(lr, size)` computed window by window, stitched into the full (B, C, H, W) output."""
    h, w = lr.shape[-2:]
    big_h, big_w = size
    if tile >= h and tile >= w:
        return forward(lr, size)
    rows = lambda y: round(y * big_h / h)  # noqa: E731 - LR row -> output row
    cols = lambda x: round(x * big_w / w)  # noqa: E731
    out = None
    for y0, y1, ky0, ky1 in windows(h, tile, overlap):
        for x0, x1, kx0, kx1 in windows(w, tile, overlap):
            part = forward(lr[..., y0:y1, x0:x1], (rows(y1) - rows(y0), cols(x1) - cols(x0)))
            if out is None:
                out = part.new_empty((*part.shape[:-2], big_h, big_w))
            oy, ox = rows(y0), cols(x0)
            out[..., rows(ky0):rows(ky1), cols(kx0):cols(kx1)] = \
                part[..., rows(ky0) - oy:rows(ky1) - oy, cols(kx0) - ox:cols(kx1) - ox]
    assert out is not None
    return out
