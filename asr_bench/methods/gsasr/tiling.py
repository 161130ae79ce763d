"""GSASR's official tiled inference (docs/methods/gsasr.md §5), including its paste quirks.

Tiles of T x T LR pixels overlap by `overlap` LR pixels; each is rendered at ceil(T*s) SR pixels and pasted in
raster order into a zero canvas at a*(ceil(T*s) - ceil(overlap*s)); later tiles overwrite earlier ones, after
skipping `crop` SR rows/columns on their top/left edge. There is no blending.

Each tile's render is told which of its pixels can reach the output (`Region`): the rest are cropped away or lie in
the reflect padding, and the renderer may skip the work that only they need.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
import torch.nn.functional as F

from asr_bench.errors import UserError


def tile_counts(h: int, w: int, tile: int, overlap: int) -> tuple[int, int]:
    return math.ceil((h - overlap) / (tile - overlap)), math.ceil((w - overlap) / (tile - overlap))


def edges_to_skip(a: int, b: int, n_h: int, n_w: int, integer_scale: bool) -> tuple[bool, bool]:
    """Whether tile (a, b) drops its first `crop` rows / columns when pasted.

    The official integer-scale branch crops every edge shared with an earlier tile. Its non-integer branch has
    two quirks that we reproduce: an inner-row tile of the last column keeps its rows, and a last-row tile of an
    inner column keeps its columns.
    """
    rows, cols = a > 0, b > 0
    if integer_scale or not (rows and cols):
        return rows, cols
    last_row, last_col = a == n_h - 1, b == n_w - 1
    if last_col and not last_row:
        return False, True
    if last_row and not last_col:
        return True, False
    return True, True


class Region(NamedTuple):
    """The pixels [row_start, row_stop) x [col_start, col_stop) of a tile's render that are pasted and not cropped
    away (later tiles may still overwrite a few of them: the region is a superset of what survives)."""

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int


TileRenderer = Callable[[torch.Tensor, int, Region], torch.Tensor]


def concurrent_tiles(tiles: list[torch.Tensor], side: int, regions: list[Region], render_tile: TileRenderer,
                     workers: int) -> Iterator[torch.Tensor]:
    """The tiles' renders in order, `workers` tiles at a time, each worker's operations on one CPU thread.

    Why: a 480 px tile's decoder is thousands of small attention operations; spread over the CPU's threads each
    one pays a fork and join, and a thread that another process delays stalls them all (2 threads on a busy
    2-core machine ran 15x slower). Whole tiles side by side keep every thread busy on its own work. The results
    equal the single-threaded ones. The intra-op thread count is process-wide, so it is 1 for the whole block and
    restored after; grad and inference mode are per thread, so each worker takes the caller's.
    """
    threads, grad, inference = torch.get_num_threads(), torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def one(tile_lr: torch.Tensor, region: Region) -> torch.Tensor:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return render_tile(tile_lr, side, region)

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="gsasr-tile") as pool:
            yield from pool.map(one, tiles, regions)
    finally:
        torch.set_num_threads(threads)


def tiled_upscale(lr: torch.Tensor, scale: float, tile: int, overlap: int, crop: int, render_tile: TileRenderer,
                  workers: int = 1, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The official canvas (1, 3, Hc, Wc) for one image; `render_tile(lr_tile, size_sr, region)` ->
    (3, size_sr, size_sr), exact at least inside `region`.

    With `workers` > 1, that many tiles are rendered at a time (`concurrent_tiles`); they are pasted in the same
    order, so the canvas is the same. The caller crops the canvas top-left to the output `size` (None: the whole
    canvas is kept), which bounds the regions.
    """
    h, w = lr.shape[-2:]
    if not 0 < overlap < tile // 2:
        raise UserError(f"tile overlap {overlap} must be > 0 and < tile/2 = {tile // 2} LR px; "
                        "use e.g. tile=480, tile_overlap=8 (the official defaults).")
    n_h, n_w = tile_counts(h, w, tile, overlap)
    pad_h = n_h * (tile - overlap) + overlap - h
    pad_w = n_w * (tile - overlap) + overlap - w
    if pad_h >= h or pad_w >= w:
        raise UserError(f"tile size {tile} is too large for a {h}x{w} input (reflect padding of {pad_h}x{pad_w} "
                        "must be smaller than the image); use a smaller tile or no tiling.")
    padded = F.pad(lr, (0, pad_w, 0, pad_h), mode="reflect")
    tile_sr, overlap_sr = math.ceil(tile * scale), math.ceil(overlap * scale)
    stride_sr = tile_sr - overlap_sr
    canvas = lr.new_zeros(lr.shape[0], 3, (n_h - 1) * stride_sr + tile_sr, (n_w - 1) * stride_sr + tile_sr)
    integer = scale == int(scale)
    places = [(a, b) for a in range(n_h) for b in range(n_w)]
    step = tile - overlap
    tiles = [padded[:, :, a * step:a * step + tile, b * step:b * step + tile] for a, b in places]
    kept_h, kept_w = size if size is not None else canvas.shape[-2:]
    firsts = [tuple(crop if skip else 0 for skip in edges_to_skip(a, b, n_h, n_w, integer)) for a, b in places]
    regions = [Region(r, min(tile_sr, kept_h - a * stride_sr), c, min(tile_sr, kept_w - b * stride_sr))
               for (a, b), (r, c) in zip(places, firsts)]
    if workers > 1 and len(tiles) > 1:
        renders = concurrent_tiles(tiles, tile_sr, regions, render_tile, min(workers, len(tiles)))
    else:  # one at a time, as they are pasted
        renders = (render_tile(tile_lr, tile_sr, region) for tile_lr, region in zip(tiles, regions))
    for (a, b), (r, c), out in zip(places, firsts, renders):
        ys, xs = a * stride_sr, b * stride_sr
        canvas[:, :, ys + r:ys + tile_sr, xs + c:xs + tile_sr] = out[..., r:, c:]
    return canvas
