"""MATLAB bicubic upscaling as an `Upsampler`: the baseline row of every SR table (no encoder, no weights)."""
from __future__ import annotations

import torch

from asr_bench.data.imresize import resize_tensor
from asr_bench.upsampler import Upsampler


class Bicubic(Upsampler):
    """MATLAB `imresize(lr, [H W], 'bicubic')` in float (no intermediate rounding), any scale and size."""

    def __init__(self) -> None:
        super().__init__()
        # A buffer so that .to(device) / .half() have something to follow and FLOP counters see a module.
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        # The kernel scale is out/in per axis, as MATLAB derives it from an output size.
        return resize_tensor(lr, size=size)
