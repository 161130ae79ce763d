"""The interface every method's model implements.

The harness only ever passes RGB in [0, 1]; an `Upsampler` owns its input normalisation, its padding and
its output-size arithmetic, so the engine knows nothing about any particular method.
"""
from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from .errors import UnsupportedScale, UserError
from .sizes import Scale, as_pair, format_scale, output_size

ANY_SCALE = "any"


class Upsampler(nn.Module):
    """Base class: subclasses implement `forward_size(lr, size)` and set the class attributes.

    - `method`: registry name, used in error messages.
    - `scales`: `"any"` or a collection of supported integer/float factors (same on both axes).
    - `weights_loaded`: False for a randomly initialised model, so the runner reports accuracy as
      `n/a (no weights)` while still measuring time, memory, params and FLOPs.
    """

    method: str = "upsampler"
    scales: str | Collection[float] = ANY_SCALE
    weights_loaded: bool = False

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The raw network output for `lr` (B,3,h,w) in [0,1], exactly `size` = (H, W), unclamped."""
        raise NotImplementedError

    def forward(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.forward_size(lr, size)

    @torch.no_grad()
    def upscale(
        self,
        lr: torch.Tensor,
        scale: Scale | None = None,
        size: tuple[int, int] | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Upscale `lr` by `scale` (H = floor(s*h)) or to an exact `size`; clamp to [0,1] unless told not to."""
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"lr must be a (B, 3, h, w) RGB tensor in [0, 1], got shape {tuple(lr.shape)}.")
        size = self.resolve_size(tuple(lr.shape[-2:]), scale, size)
        out = self.forward_size(lr, size)
        return out.clamp(0, 1) if clamp else out

    def resolve_size(
        self, lr_hw: tuple[int, int], scale: Scale | None, size: tuple[int, int] | None
    ) -> tuple[int, int]:
        """The output size asked for, checked against the scales this method supports."""
        if (scale is None) == (size is None):
            raise UserError("give exactly one of scale= or size= to upscale().")
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
