"""IGConv and IGConv+ (Lee, Yun, Ro 2024, "Implicit Grid Convolution for Multi-Scale Image Super-Resolution").

A hyper-network generates, for each integer scale s, the weights of one sub-pixel convolution (3 s^2
outputs) that is followed by a pixel shuffle. IGConv+ adds the 8-orientation kernel ensemble and IGSample,
a learned bilinear resampling of the raw LR image added as a skip. Facts: research/igconv.md; the blocks
live in `methods/_igconv_parts.py`.

Only integer scales exist (the grid is s x s). The released models were trained on x2-x4; a larger s uses
the same scale code as x4 (max_s = 4), so x5..x12 are extrapolation, allowed because the benchmark asks for
them and the official code computes them the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.checkpoints import Checkpoint, as_state_dict, load_strict, pick, strip_prefix
from asr_bench.encoders import build_encoder, export_encoder_state, load_encoder_state
from asr_bench.errors import UserError
from asr_bench.registry import MethodSpec, Preset
from asr_bench.upsampler import Upsampler

from ._igconv_parts import IGConvHead, IGSampleSkip

SCALES = tuple(range(2, 13))
ENCODERS = ("edsr-baseline", "edsr", "rdn", "swinir", "srformer", "atd", "mambair", "mambair-light")
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
CITATION = ("Lee, Yun, Ro. Implicit Grid Convolution for Multi-Scale Image Super-Resolution. "
            "arXiv:2408.09674, 2024. https://github.com/dslisleedh/IGConv")
METHOD_OPTIONS = ("geo_ensemble", "fold_ensemble", "max_s", "img_range", "implicit_dim", "latent_layers",
                  "kernel_size", "param_keys")


class IGConvSR(Upsampler):
    """encoder -> IGConv head (+ IGSample skip on the raw image for IGConv+), with the official normalisation.

    - `normalise`: EDSR/SwinIR subtract the DIV2K mean and multiply by `img_range`, and undo it after the head;
      RDN uses raw [0, 1] in and out. The skip always samples the raw image.
    - `pad_multiple`: SwinIR's test code reflect-pads the LR on the bottom/right to a multiple of its window and
      crops the output back to (s h, s w); we do the same so numbers match the official pipeline.
    - `head_key`: the official name of the head in checkpoints (`upsample`, or `UPNet` for RDN).
    """

    scales = SCALES

    def __init__(self, encoder: nn.Module, *, plus: bool, normalise: bool, img_range: float = 1.0,
                 geo_ensemble: bool = False, fold_ensemble: bool = False, implicit_dim: int = 256,
                 latent_layers: int = 4, kernel_size: int = 3, max_s: int = 4, pad_multiple: int = 1,
                 head_key: str = "upsample", param_keys: tuple[str, ...] = ("params_ema", "params")) -> None:
        super().__init__()
        channels = encoder.out_channels
        self.encoder = encoder
        self.upsample = IGConvHead(channels, kernel_size, implicit_dim, latent_layers, geo_ensemble, max_s,
                                   fold_ensemble=fold_ensemble)
        self.skip = (IGSampleSkip(channels, kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble, max_s)
                     if plus else None)
        self.normalise = normalise
        self.img_range = float(img_range)
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.pad_multiple = pad_multiple
        self.head_key = head_key
        self.param_keys = tuple(param_keys)

    # -- forward -------------------------------------------------------------------------------------
    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = lr.shape[-2:]
        scale = size[0] // h  # the base class has checked size == (s h, s w) for an integer s
        x = self.pad(lr)
        out = self.forward_scale(x, scale)
        return out[..., : scale * h, : scale * w]

    def forward_scale(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """The official `net_g(x, scale)`: raw output at exactly s times the input size."""
        inp = x
        if self.normalise:
            x = (x - self.mean) * self.img_range
        feat = self.encoder(x)
        out = self.upsample(feat, scale)
        if self.normalise:
            out = out / self.img_range + self.mean
        if self.skip is not None:
            out = out + self.skip(inp, feat, scale)
        return out

    def pad(self, lr: torch.Tensor) -> torch.Tensor:
        m = self.pad_multiple
        h, w = lr.shape[-2:]
        ph, pw = (m - h % m) % m, (m - w % m) % m
        if ph == 0 and pw == 0:
            return lr
        if ph >= h or pw >= w:
            raise UserError(f"input {h}x{w} is too small for SwinIR's reflect padding to a multiple of {m}; "
                            f"use an input of at least {m}x{m} pixels.")
        return F.pad(lr, (0, pw, 0, ph), mode="reflect")

    # -- official checkpoints ------------------------------------------------------------------------
    def load_official(self, checkpoint: Checkpoint) -> None:
        """Load an official `{'params', 'params_ema'}` checkpoint (or a bare state dict) strictly."""
        sd = unwrap_checkpoint(as_state_dict(checkpoint), self.param_keys)
        head = {k[len(self.head_key) + 1:]: v for k, v in sd.items() if k.startswith(self.head_key + ".")}
        skip = {k[len("skip."):]: v for k, v in sd.items() if k.startswith("skip.")}
        rest = {k: v for k, v in sd.items() if not k.startswith((self.head_key + ".", "skip."))}
        if not head:
            raise UserError(f"checkpoint has no '{self.head_key}.*' keys; is it an IGConv checkpoint for this "
                            "encoder? (RDN names the head 'UPNet', the others 'upsample').")
        if skip and self.skip is None:
            raise UserError("checkpoint has IGSample 'skip.*' keys: it is an IGConv+ checkpoint; "
                            "use the method 'igconv-plus'.")
        load_strict(self.upsample, head, f"IGConv head ('{self.head_key}.*')")
        if self.skip is not None:
            if not skip:
                raise UserError("checkpoint has no IGSample 'skip.*' keys: it is a plain IGConv checkpoint; "
                                "use the method 'igconv'.")
            load_strict(self.skip, skip, "IGSample skip ('skip.*')")
        load_encoder_state(self.encoder, rest, "igconv")
        self.weights_loaded = True

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the official key names (what the official code would save)."""
        sd = dict(export_encoder_state(self.encoder, "igconv"))
        sd.update({f"{self.head_key}.{k}": v for k, v in self.upsample.state_dict().items()})
        if self.skip is not None:
            sd.update({f"skip.{k}": v for k, v in self.skip.state_dict().items()})
        return sd


def unwrap_checkpoint(container: Mapping[str, Any], param_keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The state dict inside a BasicSR checkpoint (`params_ema` / `params`, `module.` stripped) or a bare one."""
    if any(k in container for k in ("params", "params_ema")):
        sd = pick(container, *param_keys, what="IGConv checkpoint")
    elif all(isinstance(v, torch.Tensor) for v in container.values()):
        sd = container
    else:
        raise UserError(f"checkpoint has neither 'params' nor 'params_ema' (it has {sorted(container)[:8]}); "
                        "is it an IGConv (BasicSR) checkpoint?")
    return strip_prefix(sd, "module.")


# -- presets: one per official family; NOTRELEASED = class-default shapes without a checkpoint ----------
_EDSR = {"normalise": True, "img_range": 1.0, "head_key": "upsample", "param_keys": ("params_ema", "params")}
_RDN = {"normalise": False, "head_key": "UPNet", "param_keys": ("params", "params_ema")}
_SWINIR = {"normalise": True, "img_range": 1.0, "head_key": "upsample", "pad_multiple": 8,
           "param_keys": ("params", "params_ema")}
_SWINIR_ENCODER = {"img_size": 48, "window_size": 8, "embed_dim": 180, "depths": (6,) * 6,
                   "num_heads": (6,) * 6, "mlp_ratio": 2.0}

_SRFORMER = {"normalise": True, "img_range": 1.0, "head_key": "upsample", "pad_multiple": 22,
             "param_keys": ("params", "params_ema")}
_SRFORMER_ENCODER = {"img_size": 64, "window_size": 22, "embed_dim": 180, "depths": (6,) * 6,
                     "num_heads": (6,) * 6, "mlp_ratio": 2.0}
_ATD = {"normalise": True, "img_range": 1.0, "head_key": "upsample", "pad_multiple": 16,
        "param_keys": ("params_ema", "params")}
_ATD_ENCODER = {"img_size": 96, "window_size": 16, "embed_dim": 210, "depths": (6,) * 6, "num_heads": (6,) * 6,
                "category_size": 256, "num_tokens": 128, "reducted_dim": 20, "convffn_kernel_size": 5,
                "mlp_ratio": 2.0}
_MAMBAIR = {"normalise": True, "img_range": 1.0, "head_key": "upsample", "param_keys": ("params", "params_ema")}
_MAMBAIR_ENCODER = {"embed_dim": 180, "depths": (6,) * 6, "d_state": 16, "mlp_ratio": 2.0}
_MAMBAIR_LIGHT_ENCODER = {"embed_dim": 60, "depths": (6,) * 4, "d_state": 16, "mlp_ratio": 1.5}
_MAMBA_NOTE = ("no padding; the official test (MambaMSModel) cuts LR images of 200+ pixels per side into "
               "overlapping pieces, which this preset does not")


def _presets(method: str, plus: bool) -> dict[str, Preset]:
    geo = {"geo_ensemble": plus}
    rows = [
        ("edsr", {}, _EDSR, "full EDSR (256x32, res_scale 0.1) trained on DIV2K; official "
         f"EDSR/EDSR_{'IGConvPlus' if plus else 'IGConv'}_DIV2K.pth (params_ema)"),
        ("edsr-baseline", {}, _EDSR, "EDSR-baseline (64x16); no official checkpoint (class-default shapes, "
         "img_range 1 as in every released config)"),
        ("rdn", {"config": "B"}, _RDN, "RDN-B, raw [0,1] in/out; official RDN/RDN_IGConvPlus_DIV2K.pth (params)"
         if plus else "RDN-B, raw [0,1] in/out; no official checkpoint (class-default shapes)"),
        ("swinir", _SWINIR_ENCODER, _SWINIR, "SwinIR classical (180, 6x6, window 8), LR reflect-padded to 8; "
         "official SwinIR/SwinIR_IGConvPlus_DIV2K.pth (params)" if plus
         else "SwinIR classical; no official checkpoint (derived shapes)"),
        ("srformer", _SRFORMER_ENCODER, _SRFORMER, "SRFormer (180, 6x6, window 22) trained on DF2K, LR reflect-padded "
         f"to 22; official SRFormer/SRFormer_{'IGConvPlus' if plus else 'IGConv'}_DF2K.pth (params)"),
        ("atd", _ATD_ENCODER, _ATD, "ATD (210, 6x6, window 16) trained on DF2K, large-patch fine-tuned, LR "
         "reflect-padded to 16; official ATD/ATD_IGPlus_DF2K_LargePatch_Finetuning.pth (params_ema)" if plus
         else "ATD (210, 6x6, window 16); no official checkpoint (NOTRELEASED: the released encoder with plain "
         "IGConv, class-default head)"),
        ("mambair", _MAMBAIR_ENCODER, _MAMBAIR, "MambaIR (180, 6x6) trained on DF2K; official MambaIR/MambaIR_"
         f"{'IGConvPlus' if plus else 'IGConv'}_DF2K.pth (params); {_MAMBA_NOTE}"),
        ("mambair-light", _MAMBAIR_LIGHT_ENCODER, _MAMBAIR, "MambaIR-light (60, 4x6, expansion 1.5) trained on "
         f"DIV2K; official MambaIRLight/MambaIR_Light_{'IGConvPlus' if plus else 'IGConv'}_DIV2K.pth (params); "
         f"{_MAMBA_NOTE}"),
    ]
    presets = {f"{method}.{enc}": Preset(f"{method}.{enc}", enc, dict(enc_kw), {**method_kw, **geo}, text)
               for enc, enc_kw, method_kw, text in rows}
    if plus:  # trained on DF2K + LSDIR ("DFL") at x2..x8 with max_s 8
        presets[f"{method}.mambair-s8"] = Preset(
            f"{method}.mambair-s8", "mambair", dict(_MAMBAIR_ENCODER), {**_MAMBAIR, **geo, "max_s": 8},
            f"MambaIR (180, 6x6) trained on DFL at x2-x8 (max_s 8); official MambaIR/MambaIR_IGConvPlus_DFL_S8.pth "
            f"(params); {_MAMBA_NOTE}")
    return presets


def _builder(plus: bool):
    def build(encoder: str, checkpoint: Checkpoint = None, preset: Preset | None = None, **kwargs: Any) -> IGConvSR:
        unknown = sorted(set(kwargs) - set(METHOD_OPTIONS))
        if unknown:
            raise UserError(f"unknown option(s) {unknown} for {'igconv-plus' if plus else 'igconv'}; "
                            f"allowed: {', '.join(METHOD_OPTIONS)}.")
        if preset is None:
            raise UserError(f"no IGConv preset for encoder '{encoder}'; use one of {', '.join(ENCODERS)}.")
        enc_kwargs = dict(preset.encoder_kwargs)
        enc = build_encoder(preset.encoder, **enc_kwargs)
        options = {**preset.method_kwargs, **kwargs}
        if "param_keys" in options:
            options["param_keys"] = tuple(options["param_keys"])
        model = IGConvSR(enc, plus=plus, **options)
        if checkpoint is not None:
            model.load_official(checkpoint)
        return model

    return build


def _method(name: str, plus: bool, description: str) -> MethodSpec:
    """IGConv and IGConv+ share encoders, scales and builder; `plus` picks the ensemble/skip variant."""
    return MethodSpec(
        name=name,
        builder=_builder(plus=plus),
        encoders=ENCODERS,
        scales=SCALES,
        presets=_presets(name, plus=plus),
        description=description,
        citation=CITATION,
    )


METHODS = [
    _method("igconv", plus=False,
            description="IGConv: hyper-network generated sub-pixel conv per integer scale (no ensemble, no skip)"),
    _method("igconv-plus", plus=True,
            description="IGConv+: IGConv with the 8-orientation kernel ensemble and the IGSample skip"),
]
