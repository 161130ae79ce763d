"""LIIF (Chen, Liu, Wang, CVPR 2021, "Learning Continuous Image Representation with Local Implicit Image
Function"): an MLP decodes the RGB of any continuous coordinate from the nearest LR feature (3x3-unfolded),
the relative coordinate and the cell size; four nearest features are blended by the areas of the opposite
rectangles. The network is in `net.py`; facts in docs/methods/liif.md.

Checkpoints: the official `{'model': {'name': 'liif', 'args': ..., 'sd': ...}}` (its `args` set the MLP widths
and the three switches) or a bare `sd`. No SwinIR: the official repo has no SwinIR-LIIF.
"""
from __future__ import annotations

from typing import Any

from asr_bench.blocks import InputRange
from asr_bench.checkpoints import Weights, liif_repo_args
from asr_bench.encoders import build_encoder, model_state_from_official
from asr_bench.methods.spec import MethodSpec, Option, Preset
from asr_bench.weightfiles import WeightFile

from .detect import DETECTOR
from .net import LIIF

ENCODERS = ("edsr-baseline", "edsr", "rdn")
PAPER = ("Chen, Liu, Wang. Learning Continuous Image Representation with Local Implicit Image Function. "
         "CVPR 2021. https://github.com/yinboc/liif")
HALF = InputRange(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))   # the repo's (x - 0.5) / 0.5
SWITCHES = ("local_ensemble", "feat_unfold", "cell_decode")


def release(filename: str, dropbox: str, drive: str, size: int | None = None, sha256: str | None = None,
            notes: str = "") -> WeightFile:
    """A file of the LIIF README's table (Dropbox with dl=1 fetches directly; Drive is the mirror)."""
    return WeightFile(filename, (f"https://www.dropbox.com/s/{dropbox}/{filename}?dl=1",
                                 f"https://drive.google.com/file/d/{drive}/view?usp=sharing"),
                      sha256=sha256, size=size, license="BSD-3-Clause", paper=PAPER, notes=notes)


PRESETS = (
    Preset("liif.edsr-baseline", "edsr-baseline", normalisation=HALF,
           description="official edsr-baseline-liif.pth: EDSR-baseline (no upsampling), MLP 4x256",
           weights=(release("edsr-baseline-liif.pth", "6f402wcn4v83w2v", "1wBHSrgPLOHL_QVhPAIAcDC30KSJLf67x",
                            size=18890445,
                            sha256="1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57",
                            notes="size and sha256 of the file in ../shared/data/weights/liif"),)),
    Preset("liif.edsr", "edsr", normalisation=HALF, description="EDSR (256x32) encoder; no official checkpoint"),
    Preset("liif.rdn", "rdn", {"config": "B"}, normalisation=HALF, description="official rdn-liif.pth: RDN-B, MLP 4x256",
           weights=(release("rdn-liif.pth", "mzha6ll9kb9bwy0", "1xaAx6lBVVw_PJ3YVp02h3k4HuOAXcUkt",
                            notes="256 MB per the README"),)),
)


def build(encoder: str, preset: Preset | None, weights: Weights | None, **options: Any) -> LIIF:
    """LIIF on `encoder`; a checkpoint's own args (MLP widths, switches) come before the defaults."""
    preset = preset or next(p for p in PRESETS if p.encoder == encoder)
    settings: dict[str, Any] = dict(preset.method_kwargs)
    if weights is not None:
        args = liif_repo_args(weights, "liif", preset.encoder)
        settings.update({k: args[k] for k in SWITCHES if k in args})
        hidden = args.get("imnet_spec", {}).get("args", {}).get("hidden_list")
        if hidden is not None:
            settings["hidden_list"] = tuple(hidden)
    settings.update(options)
    return LIIF(build_encoder(preset.encoder, **preset.encoder_kwargs), normalisation=preset.normalisation,
                **settings)


def convert(model: LIIF, weights: Weights) -> dict:
    """Official `encoder.*` (LIIF's EDSR naming, mean-shift keys included) and `imnet.*` -> our names."""
    return model_state_from_official(model, weights.single(), "liif", {"imnet.": "imnet."}, what="LIIF checkpoint")


METHODS = [
    MethodSpec(
        name="liif",
        builder=build,
        convert=convert,
        encoders=ENCODERS,
        presets=PRESETS,
        dtypes=("fp32", "bf16", "fp16"),   # run by tests/test_precision.py
        options={
            "hidden_list": Option("widths of the MLP's hidden layers (official: 256, 256, 256, 256)"),
            "local_ensemble": Option("blend the 4 nearest features by area", (True, False)),
            "feat_unfold": Option("feed the 3x3 neighbourhood of the nearest feature", (True, False)),
            "cell_decode": Option("feed the cell size", (True, False)),
            "query_chunk": Option("pixels decoded per MLP call (bounds memory; official 30000; None = all)"),
        },
        description="LIIF: MLP on unfolded nearest feature + relative coordinate + cell, 4-neighbour area ensemble",
        citation=PAPER,
        detector=DETECTOR,
    ),
]
