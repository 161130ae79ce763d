"""Meta-SR (Hu et al., CVPR 2019, "Meta-SR: A Magnification-Arbitrary Network for Super-Resolution"): a small
MLP predicts each output pixel's 3x3 filter from its sub-pixel phase and the scale (the meta-upscale op).
The network and its two variants are in `net.py`; facts in docs/methods/metasr.md.

Checkpoints: LIIF-repo files `{'model': {'name': 'metasr', 'args', 'sd'}}` (variant `liif`), or the official
Meta-RDN bare state dict (`P2W.meta_block.*`, variant `official`), which selects preset metasr.meta-rdn itself.
"""
from __future__ import annotations

from typing import Any

from asr_bench.checkpoints import LIIF_CONTAINER, Weights, liif_repo_args
from asr_bench.encoders import build_encoder, model_state_from_official
from asr_bench.errors import UserError
from asr_bench.methods.spec import MethodSpec, Option, Preset
from asr_bench.weightfiles import WeightFile

from .detect import DETECTOR, META_RDN_KEY
from .net import INPUT_RANGES, VARIANTS, MetaSR

ENCODERS = ("edsr-baseline", "edsr", "rdn")
PAPER = ("Hu, Mu, Zhang, Wang, Tan, Sun. Meta-SR: A Magnification-Arbitrary Network for Super-Resolution. "
         "CVPR 2019. https://github.com/XuecaiHu/Meta-SR-Pytorch ; LIIF-repo re-implementation: "
         "https://github.com/yinboc/liif (models/misc.py)")
META_RDN = WeightFile(
    "model_1000.pt",
    urls=("https://drive.google.com/open?id=1tGjz_pzgvo1T2N4f_ZjuqmxQHdpeDiSB",
          "https://pan.baidu.com/s/14L4Aut-F4JoSRfkJh6vr4Q"),
    manual="download model_1000.pt from the Google Drive or BaiduYun (fetch code btc5) link of the "
           "Meta-SR-Pytorch README",
    license="none stated in the repository", paper=PAPER,
    notes="a bare Meta-RDN state dict (PyTorch 0.4 era)")
LIIF_REPO, OFFICIAL = INPUT_RANGES["liif"], INPUT_RANGES["official"]

PRESETS = (
    Preset("metasr.edsr-baseline", "edsr-baseline", {}, {"variant": "liif"}, normalisation=LIIF_REPO,
           description="LIIF-repo MetaSR on EDSR-baseline (no released checkpoint)"),
    Preset("metasr.rdn", "rdn", {"config": "B"}, {"variant": "liif"}, normalisation=LIIF_REPO,
           description="LIIF-repo MetaSR on RDN-B (no released checkpoint)"),
    Preset("metasr.edsr", "edsr", {}, {"variant": "liif"}, normalisation=LIIF_REPO,
           description="LIIF-repo MetaSR on EDSR (256x32)"),
    Preset("metasr.meta-rdn", "rdn", {"config": "B"}, {"variant": "official"}, normalisation=OFFICIAL,
           weights=(META_RDN,),
           description="official Meta-RDN (XuecaiHu/Meta-SR-Pytorch model_1000.pt): 0..255, learned mean shift"),
)


def build(encoder: str, preset: Preset | None, weights: Weights | None, **options: Any) -> MetaSR:
    """Meta-SR on `encoder`; an official Meta-RDN state dict selects the official variant by itself."""
    if weights is not None and META_RDN_KEY in weights.single():
        if encoder != "rdn":
            raise UserError(f"checkpoint is an official Meta-RDN (RDN encoder), not '{encoder}'; pass encoder='rdn'.")
        preset = PRESETS[-1]
    preset = preset or next(p for p in PRESETS if p.encoder == encoder)
    settings = {**preset.method_kwargs, **options}
    if weights is not None and settings["variant"] == "liif":
        liif_repo_args(weights, "metasr", preset.encoder)
    return MetaSR(build_encoder(preset.encoder, **preset.encoder_kwargs), normalisation=preset.normalisation,
                  **settings)


def convert(model: MetaSR, weights: Weights) -> dict:
    """LIIF-repo `encoder.*` + `imnet.*`, or Meta-RDN's bare RDN keys + `P2W.meta_block.*` + learned mean shifts."""
    sd = weights.single()
    if model.variant == "liif":
        return model_state_from_official(model, sd, "liif", {"imnet.": "imnet."}, what="Meta-SR (LIIF repo) checkpoint")
    if weights.meta.get("container") == LIIF_CONTAINER or META_RDN_KEY not in sd:
        raise UserError(f"checkpoint is not an official Meta-RDN state dict (no '{META_RDN_KEY}'); "
                        "use preset metasr.rdn / metasr.edsr-baseline for LIIF-repo MetaSR files.")
    parts = {"P2W.meta_block.": "imnet.layers.", "sub_mean.": "sub_mean.", "add_mean.": "add_mean."}
    return model_state_from_official(model, sd, "metasr", parts, encoder_prefix="", what="Meta-RDN checkpoint")


METHODS = [
    MethodSpec(
        name="metasr",
        builder=build,
        convert=convert,
        encoders=ENCODERS,
        presets=PRESETS,
        dtypes=("fp32", "bf16", "fp16"),   # run by tests/test_precision.py
        options={
            "variant": Option("liif (the LIIF repo's re-implementation) or official (Meta-RDN)", VARIANTS),
            "backend": Option("meta-upscale backend", ("auto", "cuda", "cpp", "torch")),
        },
        description="Meta-SR: per-pixel 3x3 filters predicted from the sub-pixel phase and scale (meta-upscale op)",
        citation=PAPER,
        detector=DETECTOR,
    ),
]
