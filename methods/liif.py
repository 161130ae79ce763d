"""LIIF (Chen, Liu, Wang, CVPR 2021, "Learning Continuous Image Representation with Local Implicit Image
Function"): an MLP decodes the RGB of any continuous coordinate from the nearest LR feature (3x3-unfolded),
the relative coordinate and the cell size; four nearest features are blended by the areas of the opposite
rectangles (local ensemble).

Facts: research/liif.md. The coordinate arithmetic of the official `query_rgb` is reproduced in the same order
(coordinates, the 1e-6 shift, the clamps, nearest sampling by `grid_sample` itself, the 1e-9 area terms, the
diagonal swap), so every query reads the same LR pixel with the same relative coordinate. The first MLP layer
is split by linearity: its feature part is computed once per LR pixel (a convolution) instead of once per query
and ensemble member, which removes the widest matmul from the per-query path; the output equals the official
one to float rounding (about 1e-7). Queries are decoded in chunks of `query_chunk` pixels (30000, as the
official `batched_predict`), so memory is bounded at any output size.

Checkpoints: the official `{'model': {'name': 'liif', 'args': ..., 'sd': ...}}` (its `args` set the encoder,
the MLP widths and the three switches), or a bare `sd`. No SwinIR: the official repo has no SwinIR-LIIF.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.checkpoints import Checkpoint, as_state_dict, load_strict
from asr_bench.errors import UserError
from asr_bench.registry import MethodSpec, Preset
from asr_bench.upsampler import Upsampler

ENCODERS = ("edsr-baseline", "edsr", "rdn")
QUERY_CHUNK = 30000
CITATION = ("Chen, Liu, Wang. Learning Continuous Image Representation with Local Implicit Image Function. "
            "CVPR 2021. https://github.com/yinboc/liif")
METHOD_OPTIONS = ("hidden_list", "local_ensemble", "feat_unfold", "cell_decode", "query_chunk")


# ------------------------------------------------------------------------------------ shared with metasr


class MLP(nn.Module):
    """Linear/ReLU stack named like the official `models/mlp.py` (keys `layers.{0,2,4,...}`)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).view(*shape, -1)


def make_coord(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of one axis in [-1, 1], float32, with the official operation order."""
    r = 2 / (2 * n)
    return -1 + r + (2 * r) * torch.arange(n, device=device).float()


def nearest_index(coord: torch.Tensor, n: int) -> torch.Tensor:
    """The LR index grid_sample(mode='nearest', align_corners=False) picks on an axis of length n.

    Asked of grid_sample itself (sampling an index ramp), so ties round exactly as in the official code.
    """
    ramp = torch.arange(n, device=coord.device, dtype=torch.float32).view(1, 1, n, 1)
    grid = torch.stack([torch.zeros_like(coord), coord], dim=-1).view(1, -1, 1, 2)
    return F.grid_sample(ramp, grid, mode="nearest", align_corners=False).view(-1).long()


def liif_container(checkpoint: Checkpoint) -> tuple[Mapping[str, Any], dict[str, torch.Tensor]]:
    """(model spec without 'sd', state dict) from `{'model': {name, args, sd}}` or a bare state dict."""
    data = as_state_dict(checkpoint)
    spec = data.get("model", data) if isinstance(data, Mapping) else data
    if isinstance(spec, Mapping) and "sd" in spec:
        return {k: v for k, v in spec.items() if k != "sd"}, dict(spec["sd"])
    if isinstance(spec, Mapping) and all(isinstance(v, torch.Tensor) for v in spec.values()):
        return {}, dict(spec)
    raise UserError("checkpoint is neither a LIIF-repo file ({'model': {'name', 'args', 'sd'}}) nor a state dict; "
                    "pass the official .pth file.")


def check_container(spec: Mapping[str, Any], method: str, encoder: str) -> Mapping[str, Any]:
    """The checkpoint's model args, after checking it is this method on this encoder."""
    name = spec.get("name", method)
    if name != method:
        raise UserError(f"checkpoint holds a '{name}' model, not '{method}'; build_model('{name}', ...) instead.")
    args = dict(spec.get("args", {}))
    enc_name = args.get("encoder_spec", {}).get("name", encoder)
    if enc_name != encoder:
        raise UserError(f"checkpoint was trained with encoder '{enc_name}', not '{encoder}'; "
                        f"pass encoder='{enc_name}'.")
    return args


def load_prefixed(model: nn.Module, sd: Mapping[str, torch.Tensor], encoder_scheme: str, what: str,
                  parts: Mapping[str, str]) -> None:
    """Strictly load `encoder.*` with the encoder's official naming and each `prefix -> attribute` part."""
    from asr_bench.encoders import load_encoder_state, split_encoder_state

    encoder_sd, rest = split_encoder_state(sd, "encoder.")
    if not encoder_sd:
        raise UserError(f"{what} has no 'encoder.' keys (it has e.g. {sorted(sd)[:3]}); is it a checkpoint of this method?")
    load_encoder_state(model.encoder, encoder_sd, encoder_scheme)
    for prefix, attribute in parts.items():
        part_sd, rest = split_encoder_state(rest, prefix)
        load_strict(getattr(model, attribute), part_sd, f"{what} ({prefix}*)")
    if rest:
        raise UserError(f"{what} has {len(rest)} unexpected keys (e.g. {', '.join(sorted(rest)[:3])}); "
                        "check the method and encoder match the checkpoint.")


# ------------------------------------------------------------------------------------------------ LIIF


def _buffer_view(buffer: torch.Tensor, batch: int, queries: int, width: int) -> torch.Tensor:
    """The first batch*queries*width elements of a flat buffer as a contiguous (batch, queries, width) tensor."""
    return buffer[:batch * queries * width].view(batch, queries, width)


class LIIF(Upsampler):
    """encoder -> LIIF decoder, with the official (x - 0.5) / 0.5 input and * 0.5 + 0.5 output."""

    def __init__(self, encoder: nn.Module, hidden_list: Sequence[int] = (256, 256, 256, 256),
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True,
                 query_chunk: int | None = QUERY_CHUNK) -> None:
        super().__init__()
        self.encoder = encoder
        self.local_ensemble, self.feat_unfold, self.cell_decode = local_ensemble, feat_unfold, cell_decode
        in_dim = encoder.out_channels * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = MLP(in_dim, 3, hidden_list)
        self.query_chunk = query_chunk

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        feat = self.encoder((lr - 0.5) / 0.5)
        return self.decode(feat, size) * 0.5 + 0.5

    def decode(self, feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The normalised RGB (B, 3, H, W) of every HR pixel centre, decoded in chunks of queries.

        The first MLP layer is linear in [unfolded feature, relative coordinate, cell], and its feature part
        depends only on the LR pixel a query reads; so that part is one convolution per LR pixel (3x3 when
        unfolded, since unfold's channel order c*9 + tap is a conv kernel's), the cell part is a constant folded
        into the bias, and the coordinate part is one row term plus one column term. A query then only gathers
        and adds before the remaining layers: the widest matmul and the unfolded gather leave the per-query path.
        """
        batch, _, h, w = feat.shape
        height, width = size
        rows, cols = make_coord(height, feat.device), make_coord(width, feat.device)
        cell = torch.ones(2, device=feat.device)
        cell[0] *= 2 / height
        cell[1] *= 2 / width
        rel_cell = cell.clone()
        rel_cell[0] *= h
        rel_cell[1] *= w
        projected, coord_weight = self._project_features(feat, rel_cell)
        members = [(row_index, col_index, rel_rows, rel_cols,
                    rel_rows.to(feat.dtype)[:, None] * coord_weight[:, 0],
                    rel_cols.to(feat.dtype)[:, None] * coord_weight[:, 1])
                   for row_index, col_index, rel_rows, rel_cols in self._shifts(rows, cols, h, w)]
        n = height * width
        chunk = self.query_chunk or n
        widest = max([projected.shape[2]] + [layer.out_features for layer in self.imnet.layers[1:-1]
                                              if isinstance(layer, nn.Linear)])
        # three flat buffers reused by every chunk and member: no per-chunk allocations of the wide activations
        buffers = [feat.new_empty(batch * min(chunk, n) * widest) for _ in range(3)]
        out = feat.new_empty(batch, n, 3)
        for start in range(0, n, chunk):
            index = torch.arange(start, min(start + chunk, n), device=feat.device)
            out[:, start:start + index.numel()] = self._query(projected, members, index // width, index % width, w,
                                                              buffers)
        return out.view(batch, height, width, 3).permute(0, 3, 1, 2).contiguous()

    def _project_features(self, feat: torch.Tensor, rel_cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(first layer's feature part + bias + cell part per LR pixel as (B, h*w, hidden), its coordinate columns).

        The feature columns of the first layer's weight, reshaped to (hidden, C, 3, 3) (or (hidden, C, 1, 1)
        without unfolding), convolve the zero-padded map exactly as F.unfold's zero padding feeds the official MLP.
        """
        first = self.imnet.layers[0]
        channels = feat.shape[1]
        taps = 9 if self.feat_unfold else 1
        feat_weight = first.weight[:, :channels * taps]
        coord_weight = first.weight[:, channels * taps:channels * taps + 2]
        bias = first.bias
        if self.cell_decode:
            cell_weight = first.weight[:, channels * taps + 2:channels * taps + 4]
            bias = bias + cell_weight @ rel_cell.to(cell_weight.dtype)
        kernel = feat_weight.reshape(-1, channels, 3 if self.feat_unfold else 1, 3 if self.feat_unfold else 1)
        projected = F.conv2d(feat, kernel, bias, padding=1 if self.feat_unfold else 0)
        return projected.flatten(2).transpose(1, 2).contiguous(), coord_weight

    def _shifts(self, rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> list[tuple[torch.Tensor, ...]]:
        """Per ensemble member: the LR row/column each output row/column reads, and the relative coordinate.

        Per axis is exact: the official per-pixel coordinate's row part depends on the row only.
        """
        if self.local_ensemble:
            offsets, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], 1e-6
        else:
            offsets, eps = [(0, 0)], 0
        rx, ry = 2 / h / 2, 2 / w / 2
        feat_rows, feat_cols = make_coord(h, rows.device), make_coord(w, rows.device)
        members = []
        for vx, vy in offsets:
            row_q = rows.clone()
            row_q += vx * rx + eps
            row_q.clamp_(-1 + 1e-6, 1 - 1e-6)
            col_q = cols.clone()
            col_q += vy * ry + eps
            col_q.clamp_(-1 + 1e-6, 1 - 1e-6)
            row_index, col_index = nearest_index(row_q, h), nearest_index(col_q, w)
            rel_rows = rows - feat_rows[row_index]
            rel_rows *= h
            rel_cols = cols - feat_cols[col_index]
            rel_cols *= w
            members.append((row_index, col_index, rel_rows, rel_cols))
        return members

    def _query(self, projected: torch.Tensor, members: list, row: torch.Tensor, col: torch.Tensor, w: int,
               buffers: list[torch.Tensor]) -> torch.Tensor:
        """The official query_rgb for the pixels (row, col): four predictions blended by opposite areas.

        Per member, the first layer's output is the gathered per-LR-pixel projection plus the row and column
        coordinate terms; the remaining layers run per query in the shared buffers, ReLUs in place.
        """
        batch, queries, width = projected.shape[0], row.numel(), projected.shape[2]
        preds, areas = [], []
        for row_index, col_index, rel_rows, rel_cols, row_term, col_term in members:
            hidden = _buffer_view(buffers[0], batch, queries, width)
            torch.index_select(projected, 1, row_index[row] * w + col_index[col], out=hidden)
            term = _buffer_view(buffers[2], 1, queries, width)[0]
            hidden += torch.index_select(row_term, 0, row, out=term)
            hidden += torch.index_select(col_term, 0, col, out=term)
            preds.append(self._rest_of_mlp(hidden, buffers))
            areas.append(torch.abs(rel_rows[row] * rel_cols[col]).unsqueeze(0) + 1e-9)
        tot_area = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            areas = [areas[3], areas[2], areas[1], areas[0]]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1).to(pred.dtype)
        return ret

    def _rest_of_mlp(self, x: torch.Tensor, buffers: list[torch.Tensor]) -> torch.Tensor:
        """The MLP after its first Linear on (B, Q, hidden) pre-activations held in buffers[0]; hidden layers
        write into buffers[0]/[1] alternately (ReLUs in place), the narrow output layer gets a fresh tensor."""
        layers = list(self.imnet.layers[1:])
        if not layers:   # hidden_list=(): the first layer was the output; the buffer is reused by the next member
            return x.clone()
        current = 0
        for position, layer in enumerate(layers):
            if isinstance(layer, nn.ReLU):
                x = x.relu_()
            elif position == len(layers) - 1:
                x = layer(x)
            else:
                current = 1 - current
                out = _buffer_view(buffers[current], x.shape[0], x.shape[1], layer.out_features)
                torch.addmm(layer.bias, x.view(-1, x.shape[-1]), layer.weight.t(), out=out.view(-1, out.shape[-1]))
                x = out
        return x

    # ------------------------------------------------------------------------------------- checkpoints

    def load_official(self, checkpoint: Checkpoint) -> None:
        """Strictly load an official LIIF checkpoint (mean-shift keys of the EDSR encoder included)."""
        _, sd = liif_container(checkpoint)
        load_prefixed(self, sd, "liif", "LIIF checkpoint", {"imnet.": "imnet"})
        self.weights_loaded = True

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the official LIIF names (what the official code would save as 'sd')."""
        from asr_bench.encoders import export_encoder_state

        sd = {f"encoder.{k}": v for k, v in export_encoder_state(self.encoder, "liif").items()}
        sd.update({f"imnet.{k}": v.detach().clone() for k, v in self.imnet.state_dict().items()})
        return sd


PRESETS = {
    "liif.edsr-baseline": Preset("liif.edsr-baseline", "edsr-baseline", {}, {},
                                 "official edsr-baseline-liif.pth: EDSR-baseline (no upsampling), MLP 4x256"),
    "liif.edsr": Preset("liif.edsr", "edsr", {}, {}, "EDSR (256x32) encoder; no official checkpoint"),
    "liif.rdn": Preset("liif.rdn", "rdn", {"config": "B"}, {}, "official rdn-liif.pth: RDN-B, MLP 4x256"),
}


def build(encoder: str, checkpoint: Checkpoint = None, preset: Preset | None = None, **kwargs: Any) -> LIIF:
    """LIIF on `encoder`; the checkpoint's own args (MLP widths, switches) override the preset's."""
    from asr_bench.encoders import build_encoder

    unknown = sorted(set(kwargs) - set(METHOD_OPTIONS))
    if unknown:
        raise UserError(f"unknown option(s) {unknown} for liif; allowed: {', '.join(METHOD_OPTIONS)}.")
    preset = preset or PRESETS[f"liif.{encoder}"]
    options: dict[str, Any] = dict(preset.method_kwargs)
    sd = None
    if checkpoint is not None:
        spec, sd = liif_container(checkpoint)
        args = check_container(spec, "liif", preset.encoder)
        options.update({k: args[k] for k in ("local_ensemble", "feat_unfold", "cell_decode") if k in args})
        hidden = args.get("imnet_spec", {}).get("args", {}).get("hidden_list")
        if hidden is not None:
            options["hidden_list"] = tuple(hidden)
    options.update(kwargs)
    model = LIIF(build_encoder(preset.encoder, **preset.encoder_kwargs), **options)
    if sd is not None:
        model.load_official({"model": {"sd": sd}})
    return model


METHODS = [
    MethodSpec(
        name="liif",
        builder=build,
        encoders=ENCODERS,
        presets=PRESETS,
        description="LIIF: MLP on unfolded nearest feature + relative coordinate + cell, 4-neighbour area ensemble",
        citation=CITATION,
    ),
]
