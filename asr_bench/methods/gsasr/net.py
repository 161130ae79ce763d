"""GSASR (Chen et al., "Generalized and Efficient 2D Gaussian Splatting for Arbitrary-scale Super-Resolution"):
the network; the spec, presets and checkpoint conversion are in `__init__.py`.

An encoder gives 64-channel LR features; the Fea2GS decoder turns every LR pixel into 16 2-D Gaussians; a
rasterizer sums them (colour * opacity * unnormalised Gaussian, inside a +-dmax NDC box) at the output size.
The LR is reflect-padded bottom/right to the preset's denominator, rendered at floor(s * padded) and cropped
top-left to floor(s * LR), as the official inference does (docs/methods/gsasr.md §1). Official checkpoints are two
files, encoder.pth and decoder.pth, each `{'params_ema': state_dict}`:

    build_model("gsasr", "edsr-baseline", checkpoint={"encoder": "EDSR/encoder.pth", "decoder": "EDSR/decoder.pth"})

A folder holding both files may be given instead of the dict.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from asr_bench.blocks import pad_to_multiple
from asr_bench.errors import UserError
from asr_bench.ops.backends import resolve_backend
from asr_bench.upsampler import Upsampler
from asr_bench.stages import stage

from .compiled import DecoderCompiler
from .decoder import Fea2GS
from .render import reaches, render
from .tiling import Region, tiled_upscale


class GSASR(Upsampler):
    """Encoder + Fea2GS + rasterizer; `forward_size` renders any (H, W), integer or not, square or not."""

    def __init__(self, encoder: nn.Module, decoder: Fea2GS, denominator: int, dmax: float = 0.1,
                 amp: bool = False, tile: int | None = None, tile_overlap: int = 8, tile_crop: int = 4,
                 backend: str = "auto", compile: bool | str = "auto",  # noqa: A002 - the option's name
                 tile_workers: int = 1) -> None:
        super().__init__()
        if not (isinstance(tile_workers, int) and not isinstance(tile_workers, bool) and tile_workers >= 1):
            raise UserError(f"GSASR option tile_workers={tile_workers!r} must be a whole number >= 1 (1: tiles one "
                            "after another on all threads; 2 or more: that many tiles at a time, one thread each).")
        self.tile_workers = tile_workers
        self.compiler = DecoderCompiler(compile)  # eager unless compile=True or measured faster (compiled.py)
        self.encoder, self.decoder = encoder, decoder
        self.pad_multiple, self.dmax, self.amp, self.backend = denominator, dmax, amp, backend
        self.tile, self.tile_overlap, self.tile_crop = tile, tile_overlap, tile_crop
        if tile is not None and tile % denominator:
            raise UserError(f"GSASR tile size {tile} must be a multiple of the denominator {denominator}; "
                            f"use e.g. tile={denominator * max(1, round(tile / denominator))}.")

    @property
    def denominator(self) -> int:
        """The official name of the LR multiple the preset pads to (the spec's `multiple`)."""
        return self.pad_multiple

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        """`scale` is what the network and the renderer see, as officially (3.5, not floor(3.5 h) / h)."""
        h, w = lr.shape[-2:]
        sy, sx = scale
        # Tiles only when the padded LR exceeds the tile on both axes, as the official evaluation does.
        d = self.denominator
        if self.tile is not None and sy == sx and min(-(-h // d) * d, -(-w // d) * d) > self.tile:
            return self.forward_tiled(lr, sy, size)
        return self.forward_full(lr, (sy, sx), size)

    # ------------------------------------------------------------------ pipeline
    def gaussians(self, lr: torch.Tensor, scale: tuple[float, float],
                  keep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Raw decoder output (B, 16*h*w, 9) for an LR already padded to the denominator; with `keep`, only the
        kept Gaussians' columns are computed (Fea2GS.forward)."""
        net_scale = scale[0] if scale[0] == scale[1] else math.sqrt(scale[0] * scale[1])
        scales = torch.full((lr.shape[0],), net_scale, dtype=torch.float32, device=lr.device)
        amp = self.amp and lr.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            if lr.device.type == "cpu":  # oneDNN's CPU convolutions are faster in NHWC; same values to rounding
                lr = lr.contiguous(memory_format=torch.channels_last)
            with stage("encoder"):
                feat = self.encoder(lr)
            with stage("decoder"):
                return self.compiler(self.decoder, feat, scales, keep).float()

    def forward_full(self, lr: torch.Tensor, scale: tuple[float, float], size: tuple[int, int]) -> torch.Tensor:
        """Pad to the denominator, render at floor(s * padded), crop top-left to `size`."""
        padded = pad_to_multiple(lr, self.denominator)
        hp, wp = padded.shape[-2:]
        # floor(s * padded) as the official; never smaller than the size asked for (float error at size=).
        render_h = max(math.floor(scale[0] * hp), size[0])
        render_w = max(math.floor(scale[1] * wp), size[1])
        gs = self.gaussians(padded, scale)
        with stage("render"):
            out = [render(g, render_h, render_w, scale, self.dmax, self.backend) for g in gs]
        return torch.stack(out)[:, :, : size[0], : size[1]]

    def forward_tiled(self, lr: torch.Tensor, scale: float, size: tuple[int, int]) -> torch.Tensor:
        """Official tiled inference (§5), one image at a time."""
        def render_tile(tile: torch.Tensor, side: int, region: Region) -> torch.Tensor:
            """The tile's render, exact inside `region`: Gaussians that cannot reach it are neither decoded in full
            nor rendered (they would add exactly nothing there)."""
            def keep(means: torch.Tensor) -> torch.Tensor:
                return reaches(means, side, side, self.dmax, region[:2], region[2:])

            gs = self.gaussians(tile, (scale, scale), keep)
            with stage("render"):
                return torch.stack([render(g[keep(g[:, 7:9])], side, side, (scale, scale), self.dmax, self.backend)
                                    for g in gs])

        workers = self.tile_workers if lr.device.type == "cpu" else 1  # a GPU runs one tile at a time
        if workers > 1:  # the compiled rasterizer is built and self-tested here, once, not by two workers at once
            resolve_backend("rasterize", self.backend, lr.device)
        canvas = tiled_upscale(lr, scale, self.tile, self.tile_overlap, self.tile_crop, render_tile, workers, size)
        return canvas[:, :, : size[0], : size[1]]
