"""`bicubic`: MATLAB bicubic interpolation, the floor of every SR table. The smallest complete plugin."""
from __future__ import annotations

from asr_bench.checkpoints import Weights
from asr_bench.errors import UserError
from asr_bench.methods.spec import MethodSpec, Preset

from .net import Bicubic


def build(encoder: str, preset: Preset | None, weights: Weights | None) -> Bicubic:
    """Bicubic has no encoder and no weights."""
    if weights is not None:
        raise UserError("bicubic has no weights; remove the checkpoint for this method.")
    return Bicubic()


METHODS = [
    MethodSpec(
        name="bicubic",
        builder=build,
        encoders=("none",),
        dtypes=("fp32", "bf16", "fp16"),   # run by tests/test_precision.py
        needs_weights=False,
        description="MATLAB bicubic interpolation (imresize, a = -0.5), the classic baseline",
        citation="Keys, Cubic convolution interpolation for digital image processing, IEEE TASSP 1981",
    )
]
