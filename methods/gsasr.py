"""GSASR (Chen et al., "Generalized and Efficient 2D Gaussian Splatting for Arbitrary-scale Super-Resolution").

An encoder gives 64-channel LR features; the Fea2GS decoder turns every LR pixel into 16 2-D Gaussians; a
rasterizer sums them (colour * opacity * unnormalised Gaussian, inside a +-dmax NDC box) at the output size.
The LR is reflect-padded bottom/right to the preset's denominator, rendered at floor(s * padded) and cropped
top-left to floor(s * LR), as the official inference does (research/gsasr.md §1). Official checkpoints are two
files, encoder.pth and decoder.pth, each `{'params_ema': state_dict}`:

    build_model("gsasr", "edsr-baseline", checkpoint={"encoder": "EDSR/encoder.pth", "decoder": "EDSR/decoder.pth"})

A folder holding both files may be given instead of the dict.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.checkpoints import Checkpoint, as_state_dict, load_strict
from asr_bench.errors import MissingFile, UserError
from asr_bench.registry import MethodSpec, Preset
from asr_bench.sizes import Scale, as_pair
from asr_bench.upsampler import Upsampler

from ._gsasr_decoder import Fea2GS
from ._gsasr_render import render
from ._gsasr_tiling import tiled_upscale

PAPER = {"channel": 180, "rope": False}
ENHANCED = {"channel": 192, "rope": True}

PRESETS = {
    p.name: p
    for p in (
        Preset("edsr-baseline-paper", "edsr-baseline", {"global_skip": False},
               {"decoder": PAPER, "denominator": 12},
               "paper model, HF mutou0308/GSASR GSASR_paper/EDSR"),
        Preset("rdn-paper", "rdn", {}, {"decoder": PAPER, "denominator": 12},
               "paper model, HF GSASR_paper/RDN"),
        Preset("swinir-paper", "swinir", {"out_features": 64}, {"decoder": PAPER, "denominator": 24},
               "paper model, HF GSASR_paper/SWIN (denominator lcm(8, 12) = 24)"),
        Preset("edsr-baseline-enhanced", "edsr-baseline", {"global_skip": False},
               {"decoder": ENHANCED, "denominator": 12, "amp": True},
               "enhanced model (RoPE), HF GSASR_enhenced_ultra/EDSR_DIV2K or EDSR_DF2K"),
        Preset("rdn-enhanced", "rdn", {}, {"decoder": {**ENHANCED, "num_crossattn_blocks": 2}, "denominator": 12,
                                           "amp": True},
               "enhanced model (RoPE), HF GSASR_enhenced_ultra/RDN_DIV2K or RDN_DF2K"),
        Preset("swinir-enhanced", "swinir", {"out_features": 64},
               {"decoder": {**ENHANCED, "num_crossattn_blocks": 2, "num_crossattn_layers": 4, "window_size": 16},
                "denominator": 16, "amp": True},
               "enhanced model (RoPE, window 16), HF GSASR_enhenced_ultra/SWIN_DIV2K or SWIN_DF2K"),
        Preset("hatl-ultra", "hat", {"large": True, "rope": True, "embed_dim": 192, "squeeze_factor": 32,
                                     "out_features": 64},
               {"decoder": {**ENHANCED, "num_crossattn_blocks": 4, "num_crossattn_layers": 4,
                            "num_selfattn_blocks": 8, "num_selfattn_layers": 6, "window_size": 16},
                "denominator": 16, "amp": True},
               "ultra model: HAT-L with RoPE (192 dims, 12 groups, window 16) trained on SA-1B, "
               "HF GSASR_enhenced_ultra/HATL_SA1B (denominator lcm(16, 16) = 16)"),
    )
}
ENCODERS = ("edsr-baseline", "rdn", "swinir", "hat")


class GSASR(Upsampler):
    """Encoder + Fea2GS + rasterizer; `forward_size` renders any (H, W), integer or not, square or not."""

    method = "gsasr"
    scales = "any"

    def __init__(self, encoder: nn.Module, decoder: Fea2GS, denominator: int, dmax: float = 0.1,
                 amp: bool = False, tile: int | None = None, tile_overlap: int = 8, tile_crop: int = 4,
                 backend: str = "auto") -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.denominator, self.dmax, self.amp, self.backend = denominator, dmax, amp, backend
        self.tile, self.tile_overlap, self.tile_crop = tile, tile_overlap, tile_crop
        if tile is not None and tile % denominator:
            raise UserError(f"GSASR tile size {tile} must be a multiple of the denominator {denominator}; "
                            f"use e.g. tile={denominator * max(1, round(tile / denominator))}.")
        self._scale_hint: tuple[float, float] | None = None

    # ------------------------------------------------------------------ public entry points
    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, scale: Scale | None = None, size: tuple[int, int] | None = None,
                clamp: bool = True) -> torch.Tensor:
        """As Upsampler.upscale; a given `scale` is also what the network and the renderer see (official)."""
        self._scale_hint = as_pair(scale) if scale is not None else None
        try:
            return super().upscale(lr, scale=scale, size=size, clamp=clamp)
        finally:
            self._scale_hint = None

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = lr.shape[-2:]
        sy, sx = self._scale_hint or scale_for_size((h, w), size)
        # Tiles only when the padded LR exceeds the tile on both axes, as the official evaluation does.
        d = self.denominator
        if self.tile is not None and sy == sx and min(-(-h // d) * d, -(-w // d) * d) > self.tile:
            return self.forward_tiled(lr, sy, size)
        return self.forward_full(lr, (sy, sx), size)

    # ------------------------------------------------------------------ pipeline
    def gaussians(self, lr: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
        """Raw decoder output (B, 16*h*w, 9) for an LR already padded to the denominator."""
        net_scale = scale[0] if scale[0] == scale[1] else math.sqrt(scale[0] * scale[1])
        scales = torch.full((lr.shape[0],), net_scale, dtype=torch.float32, device=lr.device)
        amp = self.amp and lr.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            if lr.device.type == "cpu":  # oneDNN's CPU convolutions are faster in NHWC; same values to rounding
                lr = lr.contiguous(memory_format=torch.channels_last)
            return self.decoder(self.encoder(lr), scales).float()

    def forward_full(self, lr: torch.Tensor, scale: tuple[float, float], size: tuple[int, int]) -> torch.Tensor:
        """Pad to the denominator, render at floor(s * padded), crop top-left to `size`."""
        padded = pad_to_multiple(lr, self.denominator)
        hp, wp = padded.shape[-2:]
        # floor(s * padded) as the official; never smaller than the size asked for (float error at size=).
        render_h = max(math.floor(scale[0] * hp), size[0])
        render_w = max(math.floor(scale[1] * wp), size[1])
        gs = self.gaussians(padded, scale)
        out = [render(g, render_h, render_w, scale, self.dmax, self.backend) for g in gs]
        return torch.stack(out)[:, :, : size[0], : size[1]]

    def forward_tiled(self, lr: torch.Tensor, scale: float, size: tuple[int, int]) -> torch.Tensor:
        """Official tiled inference (§5), one image at a time."""
        def render_tile(tile: torch.Tensor, side: int) -> torch.Tensor:
            gs = self.gaussians(tile, (scale, scale))
            return torch.stack([render(g, side, side, (scale, scale), self.dmax, self.backend) for g in gs])

        canvas = tiled_upscale(lr, scale, self.tile, self.tile_overlap, self.tile_crop, render_tile)
        return canvas[:, :, : size[0], : size[1]]


def scale_for_size(lr_hw: tuple[int, int], size: tuple[int, int], max_decimals: int = 6) -> tuple[float, float]:
    """The scale a size was made from: the shortest decimal s with floor(s*h) = H (and floor(s*w) = W).

    The official pipeline feeds s itself to the network and the renderer and renders floor(s * padded), so a
    harness that passes only `size = floor(3.5*h)` must get 3.5 back, not H/h. One s for both axes when one
    exists, else one per axis.
    """
    def interval(n: int, big: int) -> tuple[float, float]:
        return big / n, (big + 1) / n

    def shortest(lo: float, hi: float) -> float | None:
        for d in range(max_decimals + 1):
            candidate = math.ceil(lo * 10 ** d - 1e-9) / 10 ** d
            if lo - 1e-12 <= candidate < hi:
                return candidate
        return None

    (ly, hy), (lx, hx) = interval(lr_hw[0], size[0]), interval(lr_hw[1], size[1])
    both = shortest(max(ly, lx), min(hy, hx)) if max(ly, lx) < min(hy, hx) else None
    if both is not None:
        return both, both
    return shortest(ly, hy) or size[0] / lr_hw[0], shortest(lx, hx) or size[1] / lr_hw[1]


def pad_to_multiple(x: torch.Tensor, d: int) -> torch.Tensor:
    """Reflect-pad bottom/right to a multiple of d (replicate where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % d, (-w) % d
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# ---------------------------------------------------------------------- checkpoints
def _part(checkpoint: Checkpoint, part: str) -> Mapping[str, torch.Tensor]:
    """One part's state dict from {'encoder': ..., 'decoder': ...} or a folder with encoder.pth / decoder.pth."""
    if isinstance(checkpoint, (str, Path)):
        folder = Path(checkpoint).expanduser()
        if not folder.is_dir():
            raise UserError(f"GSASR checkpoint {folder} is a single file; GSASR ships two. Pass a folder with "
                            "encoder.pth and decoder.pth, or checkpoint={'encoder': ..., 'decoder': ...}.")
        path = folder / f"{part}.pth"
        if not path.is_file():
            raise MissingFile(f"GSASR {part} checkpoint", path,
                              "Download encoder.pth and decoder.pth from HF mutou0308/GSASR into that folder.")
        item: Any = path
    elif isinstance(checkpoint, Mapping) and part in checkpoint:
        item = checkpoint[part]
    else:
        raise UserError("a GSASR checkpoint is {'encoder': path_or_dict, 'decoder': path_or_dict} or a folder "
                        f"holding encoder.pth and decoder.pth; got {type(checkpoint).__name__} without '{part}'.")
    sd = as_state_dict(item)
    for key in ("params_ema", "params"):
        if key in sd and isinstance(sd[key], Mapping):
            return sd[key]
    return sd


def load_decoder(decoder: Fea2GS, sd: Mapping[str, torch.Tensor], preset: str) -> None:
    """Strict load; a paper/enhanced mix-up gets a message naming the preset family to use instead."""
    enhanced_file = any(k.endswith("rope_freqs") for k in sd)
    if enhanced_file != decoder.rope:
        family = "enhanced" if enhanced_file else "paper"
        raise UserError(f"GSASR decoder checkpoint is a {family} model but preset '{preset}' is not; "
                        f"use one of: {', '.join(n for n in PRESETS if n.endswith(family))}.")
    load_strict(decoder, sd, f"GSASR decoder ({preset})")


def build_gsasr(encoder: str, checkpoint: Checkpoint = None, preset: Preset | None = None,
                dmax: float = 0.1, tile: int | None = None, tile_overlap: int = 8, tile_crop: int = 4,
                amp: bool | None = None, backend: str = "auto", **decoder_overrides: Any) -> GSASR:
    """The registry builder: the preset fixes encoder args, decoder shape and denominator."""
    from asr_bench.encoders import build_encoder, load_encoder_state

    if preset is None:
        raise UserError(f"GSASR has no preset for encoder '{encoder}'; use one of: {', '.join(sorted(PRESETS))}.")
    enc = build_encoder(preset.encoder, **preset.encoder_kwargs)
    dec = Fea2GS(inchannel=getattr(enc, "out_channels", 64),
                 **{**preset.method_kwargs["decoder"], **decoder_overrides})
    model = GSASR(enc, dec, preset.method_kwargs["denominator"], dmax=dmax,
                  amp=preset.method_kwargs.get("amp", False) if amp is None else amp,
                  tile=tile, tile_overlap=tile_overlap, tile_crop=tile_crop, backend=backend)
    if checkpoint is not None:
        load_encoder_state(enc, _part(checkpoint, "encoder"), scheme="gsasr")
        load_decoder(dec, _part(checkpoint, "decoder"), preset.name)
        model.weights_loaded = True
    return model


METHODS = [
    MethodSpec(
        name="gsasr",
        builder=build_gsasr,
        encoders=ENCODERS,
        scales="any",
        presets=PRESETS,
        description="2-D Gaussian splatting decoder (Fea2GS) + exact CUDA-equivalent rasterizer",
        citation="Chen et al., Generalized and Efficient 2D Gaussian Splatting for Arbitrary-scale "
                 "Super-Resolution, ICCV 2025 (arXiv 2501.06838)",
    )
]
