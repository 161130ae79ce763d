"""`bicubic`: MATLAB bicubic upscaling, the baseline row of every SR table (no encoder, no weights).

This is the smallest complete plugin, and the model to copy: an `Upsampler` subclass that implements
`forward_size(lr, size)`, a builder, and a `METHODS` list with one `MethodSpec`.
"""
from __future__ import annotations

from typing import Any

import torch

from asr_bench.checkpoints import Checkpoint
from asr_bench.data.imresize import resize_tensor
from asr_bench.errors import UserError
from asr_bench.registry import MethodSpec, Preset
from asr_bench.upsampler import ANY_SCALE, Upsampler


class Bicubic(Upsampler):
    """MATLAB `imresize(lr, [H W], 'bicubic')` in float (no intermediate rounding), any scale and size."""

    scales = ANY_SCALE
    weights_loaded = True  # nothing to load: its accuracy is always meaningful

    def __init__(self) -> None:
        super().__init__()
        # A buffer so that .to(device) / .half() have something to follow and FLOP counters see a module.
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # The kernel scale is out/in per axis, as MATLAB derives it from an output size.
        return resize_tensor(lr, size=size)


def build_bicubic(encoder: str = "none", checkpoint: Checkpoint = None, preset: Preset | None = None,
                  **kwargs: Any) -> Bicubic:
    """The registry builder: bicubic has no encoder and no weights."""
    if checkpoint is not None:
        raise UserError("bicubic has no weights; remove the checkpoint for this method.")
    if kwargs:
        raise UserError(f"bicubic takes no options, got {', '.join(sorted(kwargs))}; remove them.")
    return Bicubic()


METHODS = [
    MethodSpec(
        name="bicubic",
        builder=build_bicubic,
        encoders=("none",),
        scales=ANY_SCALE,
        description="MATLAB bicubic interpolation (imresize, a = -0.5), the classic baseline",
        citation="Keys, Cubic convolution interpolation for digital image processing, IEEE TASSP 1981",
        needs_weights=False,
    )
]
