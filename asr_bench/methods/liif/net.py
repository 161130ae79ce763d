"""LIIF (Chen, Liu, Wang, CVPR 2021, "Learning Continuous Image Representation with Local Implicit Image
Function"): an MLP decodes the RGB of any continuous coordinate from the nearest LR feature (3x3-unfolded),
the relative coordinate and the cell size; four nearest features are blended by the areas of the opposite
rectangles (local ensemble).

Facts: docs/methods/liif.md. The coordinate arithmetic of the official `query_rgb` is reproduced in the same order
(coordinates, the 1e-6 shift, the clamps, nearest sampling by `grid_sample` itself, the 1e-9 area terms, the
diagonal swap), so every query reads the same LR pixel with the same relative coordinate. The first MLP layer
is split by linearity: its feature part is computed once per LR pixel (a convolution) instead of once per query
and ensemble member, which removes the widest matmul from the per-query path; the output equals the official
one to float rounding (about 1e-7). Queries are decoded in chunks of `query_chunk` pixels (30000, as the
official `batched_predict`), so memory is bounded at any output size.

The network only; its spec, presets and checkpoint conversion are in `__init__.py`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.blocks import MLP, InputRange, Normalisation, make_coord, nearest_index
from asr_bench.upsampler import Upsampler
from asr_bench.stages import stage

QUERY_CHUNK = 30000


# ------------------------------------------------------------------------------------------------ LIIF


def _buffer_view(buffer: torch.Tensor, batch: int, queries: int, width: int) -> torch.Tensor:
    """The first batch*queries*width elements of a flat buffer as a contiguous (batch, queries, width) tensor."""
    return buffer[:batch * queries * width].view(batch, queries, width)


class LIIF(Upsampler):
    """encoder -> LIIF decoder, with the preset's normalisation (officially (x - 0.5) / 0.5, undone after)."""

    def __init__(self, encoder: nn.Module, hidden_list: Sequence[int] = (256, 256, 256, 256),
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True,
                 query_chunk: int | None = QUERY_CHUNK, normalisation: InputRange = InputRange()) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalise = Normalisation(normalisation)
        self.local_ensemble, self.feat_unfold, self.cell_decode = local_ensemble, feat_unfold, cell_decode
        in_dim = encoder.out_channels * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = MLP(in_dim, 3, hidden_list)
        self.query_chunk = query_chunk

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        with stage("encoder"):
            feat = self.encoder(self.normalise(lr))
        with stage("decoder"):
            return self.normalise.undo(self.decode(feat, size))

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

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the official LIIF names (what the official code would save as 'sd')."""
        from asr_bench.encoders import export_encoder_state

        sd = {f"encoder.{k}": v for k, v in export_encoder_state(self.encoder, "liif").items()}
        sd.update({f"imnet.{k}": v.detach().clone() for k, v in self.imnet.state_dict().items()})
        return sd
