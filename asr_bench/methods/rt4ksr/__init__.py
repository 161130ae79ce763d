"""RT4KSR (Zamfir, Conde, Timofte, CVPRW 2023): the fixed-scale real-time reference, x2 and x3, in training or
re-parameterised form. The network, the fold and the frame-rate workloads are in `net.py`; facts in
docs/methods/rt4ksr.md.

The checkpoint may be one official file (its scale is read from the upsampler's shape), the folder holding
both (then scales 2 and 3), or omitted (random weights for both scales, for timing).
"""
from __future__ import annotations

from collections.abc import Sequence

from asr_bench.checkpoints import Weights
from asr_bench.errors import UserError
from asr_bench.methods.spec import MethodSpec, Option, Preset
from asr_bench.weightfiles import WeightFile

from .detect import DETECTOR
from .net import (RT4KSR, SCALES, RT4KSRNet, fold_network, frame_rate_workloads, is_reparameterised,
                  measure_frame_rates, scale_of_state)

PAPER = "Zamfir, Conde, Timofte. Towards Real-Time 4K Image Super-Resolution. CVPRW 2023."
REPO = "https://github.com/eduardzamfir/RT4KSR/raw/main/code/checkpoints/"


def checkpoint_file(scale: int, size: int, sha256: str) -> WeightFile:
    """The training-form files in the official git repo (docs/methods/rt4ksr.md §3; the hashes are of those files)."""
    name = f"rt4ksr_x{scale}.pth"
    return WeightFile(name, urls=(REPO + name,), sha256=sha256, size=size, license="Apache-2.0", paper=PAPER,
                      notes="{'state_dict': module.*} with optimizer/scheduler; training form")


X2 = checkpoint_file(2, 1699164, "9ec7500092848a480e058a9c703e4b2254bc0cc97928c076bba272177752124f")
X3 = checkpoint_file(3, 1855452, "13229f15a7f3897096ab0ee92b7c3d3c64fd59b4e558fea3248147cec225e65e")
PRESETS = (
    Preset("rt4ksr.all", "none", method_kwargs={"scales": SCALES}, weights=(X2, X3), aliases=("rt4ksr",),
           description="every scale the weights provide (a folder with rt4ksr_x2/x3.pth)"),
    Preset("rt4ksr.x2", "none", method_kwargs={"scales": (2,)}, weights=(X2,), description="rt4ksr_x2.pth, 1080p->4K"),
    Preset("rt4ksr.x3", "none", method_kwargs={"scales": (3,)}, weights=(X3,), description="rt4ksr_x3.pth, 720p->4K"),
)


def build(encoder: str, preset: Preset | None, weights: Weights | None, scales: Sequence[int] | None = None,
          reparameterize: bool = False) -> RT4KSR:
    """One network per wanted scale the weights have (all wanted ones, random, without weights)."""
    wanted = tuple(scales) if scales is not None else tuple((preset or PRESETS[0]).method_kwargs["scales"])
    bad = [s for s in wanted if s not in SCALES]
    if bad:
        raise UserError(f"rt4ksr exists only for scales 2 and 3 (asked for {bad}); use scales=(2,) or (3,).")
    if weights is None:
        model = RT4KSR([RT4KSRNet(s) for s in wanted], reparameterize)
        if reparameterize:
            model.fold()
        return model
    nets = []
    for sd in weights.parts.values():
        if is_reparameterised(sd) and not reparameterize:
            raise UserError("this RT4KSR checkpoint is already re-parameterised; build with reparameterize=True.")
        if scale_of_state(sd) in wanted:
            nets.append(RT4KSRNet(scale_of_state(sd), rep=is_reparameterised(sd)))
    if not nets:
        raise UserError(f"the RT4KSR checkpoint {weights.source} has no weights for scale(s) {list(wanted)}; "
                        "pick the matching preset (rt4ksr.x2 / rt4ksr.x3) or file.")
    return RT4KSR(nets, reparameterize)


def convert(model: RT4KSR, weights: Weights) -> dict:
    """Each file's keys under its scale's network (`nets.x2.*`); files of scales the model does not hold are
    left out (preset rt4ksr.x2 on the folder)."""
    return {f"nets.x{scale_of_state(sd)}.{k}": v for sd in weights.parts.values()
            if f"x{scale_of_state(sd)}" in model.nets for k, v in sd.items()}


METHODS = [
    MethodSpec(
        name="rt4ksr",
        builder=build,
        convert=convert,
        encoders=("none",),
        scales=SCALES,
        dtypes=("fp32", "bf16", "fp16"),   # run by tests/test_precision.py
        multiple=2,
        presets=PRESETS,
        options={
            "scales": Option("the scales to hold, among 2 and 3 (default: the preset's)"),
            "reparameterize": Option("fold each residual block into one 3x3 conv (same outputs, faster)",
                                     (True, False)),
        },
        description="RT4KSR: real-time fixed-scale SR (x2, x3), 24 ch, 4 re-parameterisable blocks",
        citation=PAPER,
        detector=DETECTOR,
    )
]

__all__ = ["METHODS", "PRESETS", "RT4KSR", "fold_network", "frame_rate_workloads", "measure_frame_rates"]
