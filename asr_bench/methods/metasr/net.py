"""Meta-SR (Hu et al., CVPR 2019, "Meta-SR: A Magnification-Arbitrary Network for Super-Resolution"): a small
MLP predicts, from each output pixel's sub-pixel position and the scale, the 3x3 filter that maps the LR
features around it to RGB (the "meta-upscale"), run here on `asr_bench.ops.meta_upscale`.

Two variants with different arithmetic and checkpoints (docs/methods/metasr.md; they are not interchangeable):

- `liif` (presets metasr.edsr-baseline, metasr.edsr, metasr.rdn): the re-implementation in the LIIF repo
  (`models/misc.py`), the "MetaSR" every paper compares against. Position input [rel_row, rel_col, 1/s_v]
  from LIIF's coordinate arithmetic; (x - 0.5) / 0.5 in, * 0.5 + 0.5 out; any (H, W). Checkpoint
  `{'model': {'name': 'metasr', 'args', 'sd'}}` with `encoder.*` and `imnet.layers.{0,2}`.
- `official` (preset metasr.meta-rdn): XuecaiHu/Meta-SR-Pytorch (branch 0.4.0) Meta-RDN. Position input
  [1/s, f_row, f_col] with f = frac(float32(i) * float32(1/s)), data at 0..255 with its learned MeanShift
  convs; a bare state dict (`sub_mean`, `add_mean`, RDN keys, `P2W.meta_block.{0,2}`). The official code has
  one isotropic s and out = int(s * h); for an asymmetric size we use s_v = H/h and s_h = W/w per axis and feed
  1/s_v (the same choice as the LIIF repo), an extension the official code does not have.

The network only; its spec, presets and checkpoint conversion are in `__init__.py`.

The phases are the official float32 values (so weights equal the official per-pixel ones); the op runs the
weight MLP once per distinct (row phase, column phase), never per pixel.
"""
from __future__ import annotations

import torch
from torch import nn

from asr_bench.blocks import DIV2K_MEAN, MLP, InputRange, Normalisation, make_coord, nearest_index
from asr_bench.ops.meta_upscale import AxisMap, meta_upscale
from asr_bench.upsampler import Upsampler
from asr_bench.stages import stage

VARIANTS = ("liif", "official")
INPUT_RANGES = {"liif": InputRange(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),   # (x - 0.5) / 0.5
                "official": InputRange(range=255.0)}                              # 0..255, learned mean shift


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


def official_axis(n_out: int, scale: float, device: torch.device) -> AxisMap:
    """Official Meta-SR on one axis: floor / frac of float32(i) * float32(1/s) (trainer.input_matrix_wpn)."""
    projected = torch.arange(0, n_out, 1, device=device).float().mul(1.0 / scale)
    index = torch.floor(projected)
    return AxisMap(index.long(), projected - index)


class MetaSR(Upsampler):
    """encoder -> meta-upscale (3x3 filters from a 3 -> 256 -> 9*C*3 MLP), in one of the two variants."""

    def __init__(self, encoder: nn.Module, variant: str = "liif", backend: str = "auto",
                 normalisation: InputRange | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.variant = variant
        self.backend = backend
        self.normalise = Normalisation(normalisation or INPUT_RANGES[variant])
        self.imnet = MLP(3, encoder.out_channels * 9 * 3, [256])
        if variant == "official":
            self.sub_mean, self.add_mean = mean_shift(-1), mean_shift(+1)

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        if self.variant == "liif":
            return self.normalise.undo(self._forward_liif(self.normalise(lr), size))
        return self.normalise.undo(self._forward_official(self.normalise(lr), size, scale))

    def _forward_liif(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        with stage("encoder"):
            feat = self.encoder(x)
        h, w = feat.shape[-2:]
        rows, cols = liif_axis(h, size[0], feat.device), liif_axis(w, size[1], feat.device)
        inv_scale = torch.ones(1, device=feat.device) * (2 / size[0]) * (h / 2)   # cell_v * (h / 2) = 1/s_v
        with stage("upsampler"):
            return meta_upscale(feat, rows, cols, self._weight_fn(lambda r, c: (r, c, inv_scale), feat.shape[1]),
                                backend=self.backend)

    def _forward_official(self, x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        """Official phases use float32(1/s) of the asked scale (2.3, not 16/7): the caller passes it."""
        scale_v, scale_h = scale
        with stage("encoder"):
            feat = self.encoder(self.sub_mean(x))
        rows, cols = official_axis(size[0], scale_v, feat.device), official_axis(size[1], scale_h, feat.device)
        inv_scale = torch.zeros(1, device=feat.device)
        inv_scale[0] = 1.0 / scale_v
        with stage("upsampler"):
            out = meta_upscale(feat, rows, cols, self._weight_fn(lambda r, c: (inv_scale, r, c), feat.shape[1]),
                               backend=self.backend)
        return self.add_mean(out)

    def _weight_fn(self, order, channels: int):
        """Filters for every (row phase, column phase) pair: the MLP on the position input in `order`."""
        def weight_fn(row_phases: torch.Tensor, col_phases: torch.Tensor) -> torch.Tensor:
            py, px = row_phases.numel(), col_phases.numel()
            columns = order(row_phases.view(py, 1).expand(py, px), col_phases.view(1, px).expand(py, px))
            position = torch.stack([c.expand(py, px) for c in columns], dim=-1)
            position = position.to(self.imnet.layers[0].weight.dtype)   # phases are float32; fp16/bf16 runs
            return self.imnet(position.view(py * px, 3)).view(py, px, channels * 9, 3)

        return weight_fn

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
