"""IGConv and IGConv+ (Lee, Yun, Ro 2024, "Implicit Grid Convolution for Multi-Scale Image Super-Resolution").

A hyper-network generates, for each integer scale s, the weights of one sub-pixel convolution (3 s^2
outputs) that is followed by a pixel shuffle. IGConv+ adds the 8-orientation kernel ensemble and IGSample,
a learned bilinear resampling of the raw LR image added as a skip. Facts: docs/methods/igconv.md; the blocks
live in `kernels.py`; the spec, presets and checkpoint conversion in `__init__.py`.

Only integer scales exist (the grid is s x s). The released models were trained on x2-x4; a larger s uses
the same scale code as x4 (max_s = 4), so x5..x12 are extrapolation, allowed because the benchmark asks for
them and the official code computes them the same way.
"""
from __future__ import annotations

import torch
from torch import nn

from asr_bench.blocks import DIV2K_MEAN, InputRange, Normalisation, pad_to_multiple
from asr_bench.encoders import export_encoder_state
from asr_bench.upsampler import Upsampler
from asr_bench.stages import stage

from .kernels import IGConvHead, IGSampleSkip


class IGConvSR(Upsampler):
    """encoder -> IGConv head (+ IGSample skip on the raw image for IGConv+), with the preset's normalisation.

    - `normalisation`: EDSR/SwinIR subtract the DIV2K mean (img_range 1) and undo it after the head; RDN uses
      raw [0, 1] in and out. The skip always samples the raw image.
    - `pad_multiple` (from the spec): SwinIR's test code reflect-pads the LR on the bottom/right to a multiple of
      its window and crops the output back to (s h, s w); we do the same so numbers match the official pipeline.
    - `head_key`: the official name of the head in checkpoints (`upsample`, `UPNet` for RDN, `tail` for RCAN,
      `to_rgb` for PLKSR, `to_img` for SMFANet).
    - `mean_convs`: RCAN normalises with learnable 1x1 convs `sub_mean` (on the input) and `add_mean` (on the
      head's output), initialised to -/+ the DIV2K mean and stored in its checkpoints.
    """

    def __init__(self, encoder: nn.Module, *, plus: bool, normalisation: InputRange = InputRange(),
                 geo_ensemble: bool = False, fold_ensemble: bool = False, implicit_dim: int = 256,
                 latent_layers: int = 4, kernel_size: int = 3, max_s: int = 4, head_key: str = "upsample",
                 mean_convs: bool = False) -> None:
        super().__init__()
        self.mean_convs = mean_convs
        if mean_convs:
            self.sub_mean, self.add_mean = mean_shift_conv(-1.0), mean_shift_conv(1.0)
        channels = encoder.out_channels
        self.encoder = encoder
        self.upsample = IGConvHead(channels, kernel_size, implicit_dim, latent_layers, geo_ensemble, max_s,
                                   fold_ensemble=fold_ensemble)
        self.skip = (IGSampleSkip(channels, kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble, max_s)
                     if plus else None)
        self.normalise = Normalisation(normalisation)
        self.head_key = head_key

    # -- forward -------------------------------------------------------------------------------------
    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        h, w = lr.shape[-2:]
        s = int(scale[0])  # the base class has checked size == (s h, s w) for a supported integer s
        out = self.forward_scale(pad_to_multiple(lr, self.pad_multiple), s)
        return out[..., : s * h, : s * w]

    def forward_scale(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """The official `net_g(x, scale)`: raw output at exactly s times the input size."""
        with stage("encoder"):
            feat = self.encoder(self.sub_mean(x) if self.mean_convs else self.normalise(x))
        with stage("upsampler"):
            out = self.upsample(feat, scale)
            out = self.add_mean(out) if self.mean_convs else self.normalise.undo(out)
            if self.skip is not None:
                out = out + self.skip(x, feat, scale)
        return out

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the official key names (what the official code would save)."""
        sd = {}
        if self.mean_convs:
            for name in ("sub_mean", "add_mean"):
                sd.update({f"{name}.{k}": v for k, v in getattr(self, name).state_dict().items()})
        sd.update(export_encoder_state(self.encoder, "igconv"))
        sd.update({f"{self.head_key}.{k}": v for k, v in self.upsample.state_dict().items()})
        if self.skip is not None:
            sd.update({f"skip.{k}": v for k, v in self.skip.state_dict().items()})
        return sd


def mean_shift_conv(sign: float) -> nn.Conv2d:
    """RCAN's MeanShift: a 1x1 conv with identity weight and bias sign * DIV2K mean (rgb_range 1, std 1)."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * torch.tensor(DIV2K_MEAN))
    return conv
