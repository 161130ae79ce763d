"""LIIF (Chen, Liu, Wang, CVPR 2021, "Learning Continuous Image Representation with Local Implicit Image
Function"): an MLP decodes the RGB of any continuous coordinate from the nearest LR feature (3x3-unfolded),
the relative coordinate and the cell size; four nearest features are blended by the areas of the opposite
rectangles (local ensemble).

Facts: research/liif.md. Every float operation of the official `query_rgb` is reproduced in the same order
(coordinates, the 1e-6 shift, the clamps, nearest sampling by `grid_sample` itself, the 1e-9 area terms, the
diagonal swap), so the output equals the official one bit for bit on CPU. Queries are decoded in chunks of
`query_chunk` pixels (30000, as the official `batched_predict`), so memory is bounded at any output size.

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
        """The normalised RGB (B, 3, H, W) of every HR pixel centre, decoded in chunks of queries."""
        batch, _, h, w = feat.shape
        height, width = size
        rows, cols = make_coord(height, feat.device), make_coord(width, feat.device)
        cell = torch.ones(2, device=feat.device)
        cell[0] *= 2 / height
        cell[1] *= 2 / width
        rel_cell = cell.clone()
        rel_cell[0] *= h
        rel_cell[1] *= w
        shifts = self._shifts(rows, cols, h, w)
        padded = F.pad(feat, (1, 1, 1, 1)).flatten(2)           # (B, C, (h+2)(w+2)): unfold's zero padding
        taps = self._taps(w, feat.device)
        n = height * width
        chunk = self.query_chunk or n
        out = feat.new_empty(batch, n, 3)
        for start in range(0, n, chunk):
            index = torch.arange(start, min(start + chunk, n), device=feat.device)
            out[:, start:start + index.numel()] = self._query(padded, taps, shifts, index // width, index % width,
                                                              rel_cell, w + 2)
        return out.view(batch, height, width, 3).permute(0, 3, 1, 2).contiguous()

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

    def _taps(self, w: int, device: torch.device) -> torch.Tensor:
        """Flat offsets of the 3x3 neighbourhood in the padded map, in F.unfold's (ky, kx) order."""
        if not self.feat_unfold:
            return torch.tensor([w + 3], device=device)  # the centre (1, 1) of the padded map
        ky, kx = torch.meshgrid(torch.arange(3, device=device), torch.arange(3, device=device), indexing="ij")
        return (ky * (w + 2) + kx).flatten()

    def _query(self, padded: torch.Tensor, taps: torch.Tensor, shifts: list, row: torch.Tensor, col: torch.Tensor,
               rel_cell: torch.Tensor, padded_width: int) -> torch.Tensor:
        """The official query_rgb for the pixels (row, col): four predictions blended by opposite areas."""
        batch = padded.shape[0]
        preds, areas = [], []
        for row_index, col_index, rel_rows, rel_cols in shifts:
            base = row_index[row] * padded_width + col_index[col]
            q_feat = padded[:, :, base[:, None] + taps]                          # (B, C, Q, taps)
            q_feat = q_feat.permute(0, 2, 1, 3).reshape(batch, row.numel(), -1)  # channel index c*9 + tap
            rel = torch.stack([rel_rows[row], rel_cols[col]], dim=-1).expand(batch, -1, -1)
            parts = [q_feat, rel.to(q_feat.dtype)]      # coordinates stay float32 until here (fp16/bf16 runs)
            if self.cell_decode:
                parts.append(rel_cell.to(q_feat.dtype).expand(batch, row.numel(), 2))
            inp = torch.cat(parts, dim=-1)
            preds.append(self.imnet(inp.view(batch * row.numel(), -1)).view(batch, row.numel(), -1))
            areas.append(torch.abs(rel[:, :, 0] * rel[:, :, 1]) + 1e-9)
        tot_area = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            areas = [areas[3], areas[2], areas[1], areas[0]]
        ret = 0
        for pred, area in zip(preds, areas):
            ret = ret + pred * (area / tot_area).unsqueeze(-1).to(pred.dtype)
        return ret

    # ------------------------------------------------------------------------------------- checkpoints

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under the official LIIF names (what the official code would save as 'sd')."""
        from asr_bench.encoders import export_encoder_state

        sd = {f"encoder.{k}": v for k, v in export_encoder_state(self.encoder, "liif").items()}
        sd.update({f"imnet.{k}": v.detach().clone() for k, v in self.imnet.state_dict().items()})
        return sd
