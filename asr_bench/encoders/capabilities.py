"""What an encoder can be run with: dtypes, the size it pads to, and how to tile it in bounded memory.

Defaults are *off* (float32 only, no multiple, no advice) until a test proves otherwise: each registered
encoder's flags are checked by tests/test_encoder_capabilities.py (every listed dtype runs and stays close to
float32; inputs that are not a multiple of `size_multiple` are padded inside and cropped back).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Capabilities:
    """`dtypes`: torch dtype names the forward runs in (CPU-checked); `size_multiple`: the encoder reflect-pads
    its input to a multiple of this (tiles of that multiple need no padding); `tiling`: advice for large inputs."""

    dtypes: tuple[str, ...] = ("float32",)
    size_multiple: int = 1
    tiling: str = ""

    def torch_dtypes(self) -> list[torch.dtype]:
        return [getattr(torch, name) for name in self.dtypes]


DEFAULT = Capabilities()
