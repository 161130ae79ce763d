"""IGConv and IGConv+ (Lee, Yun, Ro 2024, "Implicit Grid Convolution for Multi-Scale Image Super-Resolution"):
a hyper-network generates, per integer scale, one sub-pixel convolution; IGConv+ adds the 8-orientation kernel
ensemble and the IGSample skip. The network is in `net.py` and `kernels.py`; facts in docs/methods/igconv.md.

Only integer scales exist (the grid is s x s). The released models were trained on x2-x4; x5..x12 use the x4
scale code (max_s = 4), extrapolation the official code computes the same way. Checkpoints are BasicSR
`{'params', 'params_ema'}` files; which key comes first follows each family's official test config.
"""
from __future__ import annotations

from typing import Any

from asr_bench.blocks import DIV2K_MEAN, InputRange
from asr_bench.checkpoints import Weights
from asr_bench.encoders import build_encoder, model_state_from_official
from asr_bench.errors import UserError
from asr_bench.methods.spec import MethodSpec, Option, Preset
from asr_bench.weightfiles import WeightFile

from .detect import detector
from .net import IGConvSR

SCALES = tuple(range(2, 13))
ENCODERS = ("edsr-baseline", "edsr", "rdn", "swinir", "hat", "rcan", "plksr", "smfanet", "srformer", "atd",
            "mambair", "mambair-light", "hit-srf")
PAPER = ("Lee, Yun, Ro. Implicit Grid Convolution for Multi-Scale Image Super-Resolution. "
         "arXiv:2408.09674, 2024. https://github.com/dslisleedh/IGConv")
RELEASE = "https://github.com/dslisleedh/IGConv/releases/tag/v1.0.0"
DIV2K_CENTRED = InputRange(mean=DIV2K_MEAN)
SWINIR_CLASSICAL = {"img_size": 48, "window_size": 8, "embed_dim": 180, "depths": (6,) * 6,
                    "num_heads": (6,) * 6, "mlp_ratio": 2.0}
SRFORMER_ENCODER = {"img_size": 64, "window_size": 22, "embed_dim": 180, "depths": (6,) * 6,
                    "num_heads": (6,) * 6, "mlp_ratio": 2.0}
ATD_ENCODER = {"img_size": 96, "window_size": 16, "embed_dim": 210, "depths": (6,) * 6, "num_heads": (6,) * 6,
               "category_size": 256, "num_tokens": 128, "reducted_dim": 20, "convffn_kernel_size": 5,
               "mlp_ratio": 2.0}
MAMBAIR_ENCODER = {"embed_dim": 180, "depths": (6,) * 6, "d_state": 16, "mlp_ratio": 2.0}
MAMBAIR_LIGHT_ENCODER = {"embed_dim": 60, "depths": (6,) * 4, "d_state": 16, "mlp_ratio": 1.5}
HIT_SRF_ENCODER = {"embed_dim": 60, "depths": (6,) * 4, "num_heads": (6,) * 4, "base_win_size": (8, 8),
                   "hier_win_ratios": (0.5, 1, 2, 4, 6, 8), "mlp_ratio": 2.0}
MAMBA_NOTE = ("no padding; the official test (MambaMSModel) cuts LR images of 200+ pixels per side into "
              "overlapping pieces, which this preset does not")


def released(path: str) -> tuple[WeightFile, ...]:
    """A file of the v1.0.0 release ("PretrainedModels"); its asset names are not listed in the repository."""
    name = path.rsplit("/", 1)[-1]
    return (WeightFile(name, urls=(RELEASE,), license="MIT", paper=PAPER,
                       manual=f"download {name} from {RELEASE} (the test configs expect igconv_pretrained/{path})"),)


def presets(method: str, plus: bool) -> tuple[Preset, ...]:
    """One per encoder; only EDSR (IGConv, IGConv+), RDN and SwinIR (IGConv+) have released checkpoints."""
    geo = {"geo_ensemble": plus}
    kind = "IGConvPlus" if plus else "IGConv"
    return (
        Preset(f"{method}.edsr", "edsr", {}, geo, normalisation=DIV2K_CENTRED,
               weights=released(f"EDSR/EDSR_{kind}_DIV2K.pth"),
               description=f"full EDSR (256x32, res_scale 0.1), DIV2K; official EDSR_{kind}_DIV2K.pth (params_ema)"),
        Preset(f"{method}.edsr-baseline", "edsr-baseline", {}, geo, normalisation=DIV2K_CENTRED,
               description="EDSR-baseline (64x16); no official checkpoint (class-default shapes, img_range 1)"),
        Preset(f"{method}.rdn", "rdn", {"config": "B"}, {**geo, "head_key": "UPNet"},
               checkpoint_keys=("params", "params_ema"), weights=released("RDN/RDN_IGConvPlus_DIV2K.pth") if plus else (),
               description="RDN-B, raw [0,1] in/out; " + ("official RDN_IGConvPlus_DIV2K.pth (params)" if plus
                                                         else "no official checkpoint (class-default shapes)")),
        Preset(f"{method}.swinir", "swinir", SWINIR_CLASSICAL, geo, normalisation=DIV2K_CENTRED, multiple=8,
               checkpoint_keys=("params", "params_ema"),
               weights=released("SwinIR/SwinIR_IGConvPlus_DIV2K.pth") if plus else (),
               description="SwinIR classical (180, 6x6, window 8), LR reflect-padded to 8; " + (
                   "official SwinIR_IGConvPlus_DIV2K.pth (params)" if plus else "no official checkpoint")),
        Preset(f"{method}.hat", "hat", {}, geo, normalisation=DIV2K_CENTRED, multiple=16,
               weights=released("HAT/HAT_IGPlus_DF2K_Finetuning.pth") if plus else (),
               description="HAT (180, 6 groups x 6, window 16), LR reflect-padded to 16; " + (
                   "official HAT_IGPlus_DF2K_Finetuning.pth (params_ema, ImageNet-pretrained)" if plus
                   else "no official checkpoint (IGConv+ shapes without the skip)")),
        Preset(f"{method}.rcan", "rcan", {}, {**geo, "head_key": "tail", "max_s": 8, "mean_convs": True},
               checkpoint_keys=("params", "params_ema"),
               weights=released("RCAN/RCAN_IGConvPlus_DIV2K_S8.pth") if plus else (),
               description="RCAN (64, 10x20), trained on x2,3,4,8 (max_s 8), learnable mean-shift convs; " + (
                   "official RCAN_IGConvPlus_DIV2K_S8.pth (params)" if plus
                   else "no official checkpoint (IGConv+ shapes without the skip)")),
        Preset(f"{method}.plksr", "plksr", {}, {**geo, "head_key": "to_rgb"},
               weights=released("PLKSR/PLKSR_IGConvPlus_DF2K.pth") if plus else (),
               description="PLKSR (64, 28 blocks, 17x17), raw [0,1] in/out; " + (
                   "official PLKSR_IGConvPlus_DF2K.pth (params_ema)" if plus
                   else "no official checkpoint (IGConv+ shapes without the skip)")),
        Preset(f"{method}.smfanet", "smfanet", {}, {**geo, "head_key": "to_img"},
               weights=released(f"SMFANet/SMFANet_{kind}_DF2K.pth"),
               description=f"SMFANet+ (48, 12 blocks), raw [0,1] in/out; official SMFANet_{kind}_DF2K.pth (params_ema)"),
        Preset(f"{method}.srformer", "srformer", SRFORMER_ENCODER, geo, normalisation=DIV2K_CENTRED, multiple=22,
               checkpoint_keys=("params", "params_ema"), weights=released(f"SRFormer/SRFormer_{kind}_DF2K.pth"),
               description=f"SRFormer (180, 6x6, window 22) trained on DF2K, LR reflect-padded to 22; official "
                           f"SRFormer_{kind}_DF2K.pth (params)"),
        Preset(f"{method}.atd", "atd", ATD_ENCODER, geo, normalisation=DIV2K_CENTRED, multiple=16,
               weights=released("ATD/ATD_IGPlus_DF2K_LargePatch_Finetuning.pth") if plus else (),
               description="ATD (210, 6x6, window 16) trained on DF2K, large-patch fine-tuned, LR reflect-padded to "
                           "16; " + ("official ATD_IGPlus_DF2K_LargePatch_Finetuning.pth (params_ema)" if plus else
                                     "no official checkpoint (NOTRELEASED: the released encoder with plain IGConv, "
                                     "class-default head)")),
        Preset(f"{method}.mambair", "mambair", MAMBAIR_ENCODER, geo, normalisation=DIV2K_CENTRED,
               checkpoint_keys=("params", "params_ema"), weights=released(f"MambaIR/MambaIR_{kind}_DF2K.pth"),
               description=f"MambaIR (180, 6x6) trained on DF2K; official MambaIR_{kind}_DF2K.pth (params); "
                           f"{MAMBA_NOTE}"),
        Preset(f"{method}.mambair-light", "mambair-light", MAMBAIR_LIGHT_ENCODER, geo, normalisation=DIV2K_CENTRED,
               checkpoint_keys=("params", "params_ema"),
               weights=released(f"MambaIRLight/MambaIR_Light_{kind}_DIV2K.pth"),
               description=f"MambaIR-light (60, 4x6, expansion 1.5) trained on DIV2K; official "
                           f"MambaIR_Light_{kind}_DIV2K.pth (params); {MAMBA_NOTE}"),
        Preset(f"{method}.hit-srf", "hit-srf", HIT_SRF_ENCODER, geo, normalisation=DIV2K_CENTRED,
               checkpoint_keys=("params", "params_ema"), weights=released(f"HiT_SRF/HiT_SRF_{kind}_DF2K.pth"),
               description=f"HiT-SRF (60, 4x6, windows 4..64) trained on DIV2K (the file says DF2K); official "
                           f"HiT_SRF_{kind}_DF2K.pth (params); no LR padding (each block pads to its own window "
                           f"and crops back); the official test (MambaMSModel) cuts LR images of 200+ pixels per "
                           f"side into overlapping pieces, which this preset does not"),
    ) + ((Preset(f"{method}.mambair-s8", "mambair", MAMBAIR_ENCODER, {**geo, "max_s": 8},
                 normalisation=DIV2K_CENTRED, checkpoint_keys=("params", "params_ema"),
                 weights=released("MambaIR/MambaIR_IGConvPlus_DFL_S8.pth"),
                 description=f"MambaIR (180, 6x6) trained on DF2K + LSDIR at x2-x8 (max_s 8); official "
                             f"MambaIR_IGConvPlus_DFL_S8.pth (params); {MAMBA_NOTE}"),) if plus else ())


def builder(plus: bool):
    def build(encoder: str, preset: Preset | None, weights: Weights | None, **options: Any) -> IGConvSR:
        preset = preset or next(p for p in presets("igconv-plus" if plus else "igconv", plus) if p.encoder == encoder)
        return IGConvSR(build_encoder(preset.encoder, **preset.encoder_kwargs), plus=plus,
                        normalisation=preset.normalisation, **{**preset.method_kwargs, **options})

    return build


def convert(model: IGConvSR, weights: Weights) -> dict:
    """Official head (`upsample.*` / RDN's `UPNet.*`), IGSample `skip.*` and the bare encoder keys -> our names."""
    sd = weights.single()
    head = model.head_key + "."
    if not any(k.startswith(head) for k in sd):
        raise UserError(f"checkpoint has no '{head}*' keys; is it an IGConv checkpoint for this encoder? "
                        "(RDN names the head 'UPNet', the others 'upsample').")
    has_skip = any(k.startswith("skip.") for k in sd)
    if has_skip != (model.skip is not None):
        raise UserError("checkpoint has IGSample 'skip.*' keys: it is an IGConv+ checkpoint; use the method "
                        "'igconv-plus'." if has_skip else "checkpoint has no IGSample 'skip.*' keys: it is a plain "
                        "IGConv checkpoint; use the method 'igconv'.")
    parts = {head: "upsample.", "skip.": "skip."}
    if model.mean_convs:  # RCAN's learnable mean shifts keep their official names
        parts.update({"sub_mean.": "sub_mean.", "add_mean.": "add_mean."})
    return model_state_from_official(model, sd, "igconv", parts, encoder_prefix="", what="IGConv checkpoint")


OPTIONS = {
    "geo_ensemble": Option("the 8-orientation kernel ensemble (IGConv+ default on)", (True, False)),
    "fold_ensemble": Option("average the 8 kernels before the conv (faster, not bit-equal)", (True, False)),
    "max_s": Option("largest scale code the hyper-network was trained on (official 4)"),
    "implicit_dim": Option("hyper-network width (official 256)"),
    "latent_layers": Option("hyper-network depth (official 4)"),
    "kernel_size": Option("generated conv kernel size (official 3)"),
}


def method(name: str, plus: bool, description: str) -> MethodSpec:
    """IGConv and IGConv+ share encoders, scales and builder; `plus` picks the ensemble/skip variant."""
    return MethodSpec(name=name, builder=builder(plus), convert=convert, encoders=ENCODERS, scales=SCALES,
                      presets=presets(name, plus), options=OPTIONS, dtypes=("fp32", "bf16", "fp16"),
                      description=description, citation=PAPER, detector=detector(plus, presets("igconv-plus", True)))


METHODS = [
    method("igconv", plus=False,
           description="IGConv: hyper-network generated sub-pixel conv per integer scale (no ensemble, no skip)"),
    method("igconv-plus", plus=True,
           description="IGConv+: IGConv with the 8-orientation kernel ensemble and the IGSample skip"),
]
