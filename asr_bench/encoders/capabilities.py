"""What an encoder can be run with: dtypes, the size it pads to, how far an output feature sees, how to tile it.

Defaults are *off* (float32 only, no multiple, unknown receptive field, no advice) until a test proves otherwise:
each registered encoder's flags are checked by its tests (tests/test_encoder_capabilities.py for SRFormer, ATD,
MambaIR, HiT-SRF; test_encoder_hat.py and test_encoder_cnns.py for HAT, RCAN, PLKSR, SMFANet): every listed dtype runs
and stays close to float32/float64, and inputs that are not a multiple of `size_multiple` are padded inside and
cropped back.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Capabilities:
    """- `dtypes`: torch dtype names the forward runs in (CPU-checked).
    - `size_multiple`: the encoder reflect-pads its input to a multiple of this (tiles of it need no padding).
    - `tiling`: advice for large inputs, in words.
    - `receptive_radius`: LR pixels an output feature depends on in each direction; tiles overlapping by this much
      give exactly the whole-image result. None: unbounded (global pooling or attention chains).
    - `tile_overlap`: advised overlap (LR pixels) when tiling to bound memory.
    """

    dtypes: tuple[str, ...] = ("float32",)
    size_multiple: int = 1
    tiling: str = ""
    receptive_radius: int | None = None
    tile_overlap: int = 0

    def torch_dtypes(self) -> list[torch.dtype]:
        return [getattr(torch, name) for name in self.dtypes]


DEFAULT = Capabilities()
