"""The interface every method's model implements.

The harness only ever passes RGB in [0, 1]; an `Upsampler` owns its input normalisation, its padding and
its output-size arithmetic, so the engine knows nothing about any particular method.
"""
from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from .errors import UnsupportedScale, UserError
from .sizes import Scale, as_pair, format_scale, output_size, scale_of

ANY_SCALE = "any"


class Upsampler(nn.Module):
    """Base class: subclasses implement `forward_size(lr, size, scale)`.

    What the method supports is declared once, on its `MethodSpec`; `build_model` copies it onto the model:
    - `method`: registry name, used in error messages.
    - `scales`: `"any"` or the supported factors (same on both axes). A model may narrow it (RT4KSR holds
      networks only for the scales its checkpoint has), never widen it.
    - `min_size`: the smallest LR side the network accepts.
    - `pad_multiple`: the network needs LR sides that are multiples of this; the model reflect-pads the
      bottom/right itself (`asr_bench.blocks.pad_to_multiple`) and crops the output.
    - `tiling`: whether the engine may cut the input into tiles (`allowed`), the method tiles itself
      (`internal`), or tiling changes its numbers (`discouraged`).
    - `dtypes`: the precisions a test runs it in (`fp32`, `bf16`, `fp16`).
    - `weights_loaded`: set by `build_model` after a strict load; False for random weights, so the runner
      reports accuracy as `n/a (no weights)` while still measuring time, memory, params and FLOPs.
    """

    method: str = "upsampler"
    scales: str | Collection[float] = ANY_SCALE
    min_size: int = 1
    pad_multiple: int = 1
    tiling: str = "allowed"
    dtypes: tuple[str, ...] = ("fp32",)
    weights_loaded: bool = False
    weights_source: str = "random (not pretrained)"   # set by `build_model`: the file loaded, or why none was

    def extra_repr(self) -> str:
        """The first line of `repr(model)` says whether the weights are real (`weights_loaded`) and from where."""
        return f"weights_loaded={self.weights_loaded}, weights={self.weights_source!r}"

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        """The raw network output for `lr` (B,3,h,w) in [0,1], exactly `size` = (H, W), unclamped.

        `scale` is the nominal (sy, sx) the caller asked for (what the official code feeds its network); with
        only a size it is H/h, W/w.
        """
        raise NotImplementedError

    def forward(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.forward_size(lr, size, scale_of(tuple(lr.shape[-2:]), size))

    def on_weights_loaded(self) -> None:
        """Called by `build_model` after the strict load (e.g. RT4KSR folds its blocks here)."""

    @torch.no_grad()
    def upscale(
        self,
        lr: torch.Tensor,
        scale: Scale | None = None,
        size: tuple[int, int] | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Upscale `lr` by `scale` (H = floor(s*h)), to an exact `size`, or both (a tile: its size at the case's
        scale); clamp to [0,1] unless told not to."""
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"lr must be a (B, 3, h, w) RGB tensor in [0, 1], got shape {tuple(lr.shape)}.")
        lr_hw = tuple(lr.shape[-2:])
        size = self.resolve_size(lr_hw, scale, size)
        nominal = as_pair(scale) if scale is not None else scale_of(lr_hw, size)
        out = self.forward_size(lr, size, nominal)
        return out.clamp(0, 1) if clamp else out

    def resolve_size(
        self, lr_hw: tuple[int, int], scale: Scale | None, size: tuple[int, int] | None
    ) -> tuple[int, int]:
        """The output size asked for, checked against the scales and input sizes this method supports."""
        if scale is None and size is None:
            raise UserError("give scale= or size= (or both) to upscale().")
        if min(lr_hw) < self.min_size:
            raise UserError(f"method '{self.method}' needs an input of at least {self.min_size}x{self.min_size} "
                            f"pixels, got {lr_hw[0]}x{lr_hw[1]}; use a larger image.")
        if size is None:
            size = output_size(lr_hw, scale)
        size = (int(size[0]), int(size[1]))
        if size[0] <= lr_hw[0] or size[1] <= lr_hw[1]:
            raise UserError(f"output size {size} must be larger than the input {tuple(lr_hw)} on both axes.")
        self.check_scale(lr_hw, size, scale)
        return size

    def check_scale(self, lr_hw: tuple[int, int], size: tuple[int, int], scale: Scale | None) -> None:
        """Fixed-scale methods accept only sizes that are exactly s*h x s*w for a supported s."""
        if self.scales == ANY_SCALE:
            return
        exact = any(size == (float(s) * lr_hw[0], float(s) * lr_hw[1]) for s in self.scales)
        fits = exact and (scale is None or supports(self.scales, scale))
        if not fits:
            asked = format_scale(scale) if scale is not None else f"size {size} from {tuple(lr_hw)}"
            raise UnsupportedScale(self.method, asked, supported_label(self.scales))


def supported_label(scales: str | Collection[float]) -> str:
    """'any' or 'x2, x3, x4' for messages and tables."""
    if scales == ANY_SCALE:
        return ANY_SCALE
    return ", ".join(f"x{s:g}" for s in sorted(float(s) for s in scales))


def supports(scales: str | Collection[float], scale: Scale) -> bool:
    """Whether a declared scale set covers `scale` (the runner's `n/a (unsupported scale)` check)."""
    if scales == ANY_SCALE:
        return True
    sy, sx = as_pair(scale)
    return sy == sx and sy in {float(s) for s in scales}
