"""How RT4KSR checkpoints are recognised: `hfb.*`, `gamma`, `head.0` and the pixel-shuffle conv `upsample.0`,
whose 3 (2 s)^2 output channels give the scale; re-parameterised files (`rep_conv`) ask for the folded build. A
folder of files for distinct scales is one checkpoint holding them all."""
from __future__ import annotations

from typing import Any

from asr_bench.detection import NO_ENCODER, Detection, Detector, choose
from asr_bench.errors import UserError
from asr_bench.shapes import StateDict, has_prefix

from .net import SCALES

CHANNELS = {3 * (2 * s) ** 2: s for s in SCALES}       # output channels of the upsampler conv -> scale


def state(spec: Any, sd: StateDict, facts: Any, where: str, container: str) -> Detection | None:
    if not ({"gamma", "head.0.weight", "upsample.0.weight"} <= set(sd) and has_prefix(sd, "hfb.")):
        return None
    channels = sd["upsample.0.weight"].shape[0]
    if channels not in CHANNELS:
        raise UserError(f"{where}: RT4KSR upsampler has {channels} channels, which is neither "
                        f"{' nor '.join(f'x{s} ({c})' for c, s in CHANNELS.items())}.")
    scale = CHANNELS[channels]
    rep = any(k.endswith("rep_conv.weight") for k in sd)
    form = "re-parameterised" if rep else "training"
    found = choose(spec, NO_ENCODER, where, f"{container}: RT4KSR ({form} form), upsampler {channels} ch = x{scale}",
                   lambda p: tuple((p.method_kwargs or {}).get("scales", ())) == (scale,))
    return Detection(found.method, "none", found.preset, found.reason, {"scale": scale},
                     {"reparameterize": True} if rep else {})


def folder(spec: Any, detections: list[Detection], source: str) -> Detection | None:
    scales = sorted(d.hyperparameters["scale"] for d in detections)
    if len(set(scales)) != len(scales):
        return None
    return Detection(spec.name, "none", None, f"{source}: RT4KSR files for scales {scales}",
                     {"scales": tuple(scales)}, dict(detections[0].options))


DETECTOR = Detector("hfb.*, upsample.0", state=state, folder=folder)
