"""Meta-SR (Hu et al., CVPR 2019, "Meta-SR: A Magnification-Arbitrary Network for Super-Resolution"): a small
MLP predicts, from each output pixel's sub-pixel position and the scale, the 3x3 filter that maps the LR
features around it to RGB (the "meta-upscale"), run here on `asr_bench.ops.meta_upscale`.

Two variants with different arithmetic and checkpoints (research/metasr.md; they are not interchangeable):

- `liif` (presets metasr.edsr-baseline, metasr.edsr, metasr.rdn): the re-implementation in the LIIF repo
  (`models/misc.py`), the "MetaSR" every paper compares against. Position input [rel_row, rel_col, 1/s_v]
  from LIIF's coordinate arithmetic; (x - 0.5) / 0.5 in, * 0.5 + 0.5 out; any (H, W). Checkpoint
  `{'model': {'name': 'metasr', 'args', 'sd'}}` with `encoder.*` and `imnet.layers.{0,2}`.
- `official` (preset metasr.meta-rdn): XuecaiHu/Meta-SR-Pytorch (branch 0.4.0) Meta-RDN. Position input
  [1/s, f_row, f_col] with f = frac(float32(i) * float32(1/s)), data at 0..255 with its learned MeanShift
  convs; a bare state dict (`sub_mean`, `add_mean`, RDN keys, `P2W.meta_block.{0,2}`). The official code has
  one isotropic s and out = int(s * h); for an asymmetric size we use s_v = H/h and s_h = W/w per axis and feed
  1/s_v (the same choice as the LIIF repo), an extension the official code does not have.

The phases are the official float32 values (so weights equal the official per-pixel ones); the op runs the
weight MLP once per distinct (row phase, column phase), never per pixel.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from asr_bench.checkpoints import Checkpoint, as_state_dict, load_strict
from asr_bench.errors import UserError
from asr_bench.ops.meta_upscale import AxisMap, meta_upscale
from asr_bench.registry import MethodSpec, Preset
from asr_bench.sizes import Scale, as_pair
from asr_bench.upsampler import Upsampler

from .liif import MLP, check_container, liif_container, load_prefixed, make_coord, nearest_index

ENCODERS = ("edsr-baseline", "edsr", "rdn")
VARIANTS = ("liif", "official")
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
CITATION = ("Hu, Mu, Zhang, Wang, Tan, Sun. Meta-SR: A Magnification-Arbitrary Network for Super-Resolution. "
            "CVPR 2019. https://github.com/XuecaiHu/Meta-SR-Pytorch ; LIIF-repo re-implementation: "
            "https://github.com/yinboc/liif (models/misc.py)")
METHOD_OPTIONS = ("variant", "backend")


def liif_axis(n_lr: int, n_out: int, device: torch.device) -> AxisMap:
    """LIIF-repo MetaSR on one axis: LR line of each output line's top-left corner and its offset in [0, 1)."""
    coord = make_coord(n_out, device)
    cell = torch.ones(1, device=device) * (2 / n_out)
    coord_ = coord - cell / 2
    coord_q = (coord_ + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
    index = nearest_index(coord_q, n_lr)
    feat_coord = make_coord(n_lr, device)
    feat_coord -= (2 / n_lr) / 2
    rel = coord_ - feat_coord[index]
    rel *= n_lr / 2
    return AxisMap(index, rel)


def official_scale(lr_hw: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """The scale an official run used for this output size: the shortest decimal s with int(s*h), int(s*w) = size.

    The harness passes sizes only, but the official phases use float32(1/s) of the *asked* scale (2.3, not
    16/7); its test scales are short decimals (1.1, 1.2, ... 4.0). Sizes no single s explains (asymmetric)
    give the per-axis ratios.
    """
    (h, w), (big_h, big_w) = lr_hw, size
    low, high = max(big_h / h, big_w / w), min((big_h + 1) / h, (big_w + 1) / w)
    for digits in range(7):
        candidate = math.ceil(low * 10**digits) / 10**digits
        if candidate < high and int(candidate * h) == big_h and int(candidate * w) == big_w:
            return candidate, candidate
    return big_h / h, big_w / w


def official_axis(n_out: int, scale: float, device: torch.device) -> AxisMap:
    """Official Meta-SR on one axis: floor / frac of float32(i) * float32(1/s) (trainer.input_matrix_wpn)."""
    projected = torch.arange(0, n_out, 1, device=device).float().mul(1.0 / scale)
    index = torch.floor(projected)
    return AxisMap(index.long(), projected - index)


class MetaSR(Upsampler):
    """encoder -> meta-upscale (3x3 filters from a 3 -> 256 -> 9*C*3 MLP), in one of the two variants."""

    def __init__(self, encoder: nn.Module, variant: str = "liif", backend: str = "auto") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise UserError(f"unknown Meta-SR variant '{variant}'; use one of {', '.join(VARIANTS)}.")
        self.encoder = encoder
        self.variant = variant
        self.backend = backend
        self.imnet = MLP(3, encoder.out_channels * 9 * 3, [256])
        if variant == "official":
            self.sub_mean, self.add_mean = mean_shift(-1), mean_shift(+1)
        self._scale_hint: Scale | None = None

    def upscale(self, lr: torch.Tensor, scale: Scale | None = None, size: tuple[int, int] | None = None,
                clamp: bool = True) -> torch.Tensor:
        """As Upsampler.upscale; the official variant also needs the float scale itself (its phases use 1/s)."""
        self._scale_hint = scale
        try:
            return super().upscale(lr, scale=scale, size=size, clamp=clamp)
        finally:
            self._scale_hint = None

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.variant == "liif":
            return self._forward_liif(lr, size)
        return self._forward_official(lr, size)

    def _forward_liif(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        feat = self.encoder((lr - 0.5) / 0.5)
        h, w = feat.shape[-2:]
        rows, cols = liif_axis(h, size[0], feat.device), liif_axis(w, size[1], feat.device)
        inv_scale = torch.ones(1, device=feat.device) * (2 / size[0]) * (h / 2)   # cell_v * (h / 2) = 1/s_v
        out = meta_upscale(feat, rows, cols, self._weight_fn(lambda r, c: (r, c, inv_scale), feat.shape[1]),
                           backend=self.backend)
        return out * 0.5 + 0.5

    def _forward_official(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = lr.shape[-2:]
        if self._scale_hint is not None:
            scale_v, scale_h = as_pair(self._scale_hint)
        else:
            scale_v, scale_h = official_scale((h, w), size)
        feat = self.encoder(self.sub_mean(lr * 255))
        rows, cols = official_axis(size[0], scale_v, feat.device), official_axis(size[1], scale_h, feat.device)
        inv_scale = torch.zeros(1, device=feat.device)
        inv_scale[0] = 1.0 / scale_v
        out = meta_upscale(feat, rows, cols, self._weight_fn(lambda r, c: (inv_scale, r, c), feat.shape[1]),
                           backend=self.backend)
        return self.add_mean(out) / 255

    def _weight_fn(self, order, channels: int):
        """Filters for every (row phase, column phase) pair: the MLP on the position input in `order`."""
        def weight_fn(row_phases: torch.Tensor, col_phases: torch.Tensor) -> torch.Tensor:
            py, px = row_phases.numel(), col_phases.numel()
            columns = order(row_phases.view(py, 1).expand(py, px), col_phases.view(1, px).expand(py, px))
            position = torch.stack([c.expand(py, px) for c in columns], dim=-1)
            position = position.to(self.imnet.layers[0].weight.dtype)   # phases are float32; fp16/bf16 runs
            return self.imnet(position.view(py * px, 3)).view(py, px, channels * 9, 3)

        return weight_fn

    # ------------------------------------------------------------------------------------- checkpoints

    def load_official(self, checkpoint: Checkpoint) -> None:
        """Strictly load a LIIF-repo `metasr` checkpoint or an official Meta-RDN state dict (per variant)."""
        if self.variant == "liif":
            _, sd = liif_container(checkpoint)
            load_prefixed(self, sd, "liif", "Meta-SR (LIIF repo) checkpoint", {"imnet.": "imnet"})
        else:
            sd = official_state(as_state_dict(checkpoint))
            load_prefixed(self, sd, "metasr", "Meta-RDN checkpoint",
                          {"sub_mean.": "sub_mean", "add_mean.": "add_mean", "imnet.": "imnet"})
        self.weights_loaded = True

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the official names of its variant."""
        from asr_bench.encoders import export_encoder_state

        mlp = {k: v.detach().clone() for k, v in self.imnet.state_dict().items()}
        if self.variant == "liif":
            sd = {f"encoder.{k}": v for k, v in export_encoder_state(self.encoder, "liif").items()}
            return {**sd, **{f"imnet.{k}": v for k, v in mlp.items()}}
        shifts = {f"{name}.{k}": v.detach().clone() for name in ("sub_mean", "add_mean")
                  for k, v in getattr(self, name).state_dict().items()}
        return {**shifts, **export_encoder_state(self.encoder, "metasr"),
                **{f"P2W.meta_block.{k[len('layers.'):]}": v for k, v in mlp.items()}}


def mean_shift(sign: int) -> nn.Conv2d:
    """Meta-RDN's MeanShift at rgb_range 255: a learned 1x1 conv starting at identity and -/+ 255 * mean."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * 255 * torch.tensor(DIV2K_MEAN))
    return conv


def official_state(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A bare Meta-RDN state dict re-keyed for loading: RDN keys under 'encoder.', P2W.meta_block -> imnet.layers."""
    if "model" in sd or "P2W.meta_block.0.weight" not in sd:
        raise UserError("checkpoint is not an official Meta-RDN state dict (no 'P2W.meta_block.0.weight'); "
                        "use preset metasr.rdn / metasr.edsr-baseline for LIIF-repo MetaSR files.")
    out = {}
    for key, value in sd.items():
        if key.startswith("P2W.meta_block."):
            out["imnet.layers." + key[len("P2W.meta_block."):]] = value
        elif key.startswith(("sub_mean.", "add_mean.")):
            out[key] = value
        else:
            out["encoder." + key] = value
    return out


def is_official_meta_rdn(checkpoint: Checkpoint) -> bool:
    data = as_state_dict(checkpoint)
    return isinstance(data, Mapping) and "P2W.meta_block.0.weight" in data


PRESETS = {
    "metasr.edsr-baseline": Preset("metasr.edsr-baseline", "edsr-baseline", {}, {"variant": "liif"},
                                   "LIIF-repo MetaSR on EDSR-baseline (no released checkpoint)"),
    "metasr.rdn": Preset("metasr.rdn", "rdn", {"config": "B"}, {"variant": "liif"},
                         "LIIF-repo MetaSR on RDN-B (no released checkpoint)"),
    "metasr.edsr": Preset("metasr.edsr", "edsr", {}, {"variant": "liif"}, "LIIF-repo MetaSR on EDSR (256x32)"),
    "metasr.meta-rdn": Preset("metasr.meta-rdn", "rdn", {"config": "B"}, {"variant": "official"},
                              "official Meta-RDN (XuecaiHu/Meta-SR-Pytorch model_1000.pt): 0..255, learned mean shift"),
}


def build(encoder: str, checkpoint: Checkpoint = None, preset: Preset | None = None, **kwargs: Any) -> MetaSR:
    """Meta-SR on `encoder`; an official Meta-RDN state dict selects the official variant by itself."""
    from asr_bench.encoders import build_encoder

    unknown = sorted(set(kwargs) - set(METHOD_OPTIONS))
    if unknown:
        raise UserError(f"unknown option(s) {unknown} for metasr; allowed: {', '.join(METHOD_OPTIONS)}.")
    if checkpoint is not None:
        checkpoint = as_state_dict(checkpoint)
        if is_official_meta_rdn(checkpoint):
            if encoder != "rdn":
                raise UserError(f"checkpoint is an official Meta-RDN (RDN encoder), not '{encoder}'; pass encoder='rdn'.")
            preset = PRESETS["metasr.meta-rdn"]
    preset = preset or PRESETS[f"metasr.{encoder}"]
    options = {**preset.method_kwargs, **kwargs}
    if checkpoint is not None and options["variant"] == "liif":
        check_container(liif_container(checkpoint)[0], "metasr", preset.encoder)
    model = MetaSR(build_encoder(preset.encoder, **preset.encoder_kwargs), **options)
    if checkpoint is not None:
        model.load_official(checkpoint)
    return model


METHODS = [
    MethodSpec(
        name="metasr",
        builder=build,
        encoders=ENCODERS,
        presets=PRESETS,
        description="Meta-SR: per-pixel 3x3 filters predicted from the sub-pixel phase and scale (meta-upscale op)",
        citation=CITATION,
    ),
]
