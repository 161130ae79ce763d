"""The meta-upscale op's PyTorch reference: the specification every compiled backend is held to."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GATHER_BUDGET_BYTES = 64 * 2**20     # largest im2col block the torch reference materialises


def torch_forward(
    features: torch.Tensor,
    table: torch.Tensor,
    row_source: torch.Tensor,
    row_phase: torch.Tensor,
    col_source: torch.Tensor,
    col_phase: torch.Tensor,
    gather_budget_bytes: int = GATHER_BUDGET_BYTES,
) -> torch.Tensor:
    """Reference: im2col of the LR 3x3 neighbourhood of every output pixel, dotted with its filter.

    Rows are grouped by phase so one (W, 9C, O) slice of the table serves all of them, and gathered in
    blocks of at most `gather_budget_bytes`, so memory stays bounded at any output size. Differentiable.
    """
    batch, channels = features.shape[:2]
    height, width, out_channels = row_source.numel(), col_source.numel(), table.shape[-1]
    padded = F.pad(features, (1, 1, 1, 1))
    taps = torch.arange(3, device=features.device)
    col_taps = (col_source[:, None] + taps)[None, :, None, :]          # (1, W, 1, 3) in padded coordinates
    bytes_per_row = batch * width * 9 * channels * features.element_size()
    rows_per_block = max(1, gather_budget_bytes // max(1, bytes_per_row))
    out = features.new_zeros(batch, out_channels, height, width)
    for phase in torch.unique(row_phase).tolist():
        phase_rows = torch.nonzero(row_phase == phase).flatten()
        weights = table[phase, col_phase]                               # (W, 9C, O)
        for block in phase_rows.split(rows_per_block):
            row_taps = (row_source[block][:, None] + taps)[:, None, :, None]   # (n, 1, 3, 1)
            patch = padded[:, :, row_taps, col_taps]                    # (B, C, n, W, 3, 3)
            patch = patch.permute(0, 2, 3, 1, 4, 5).reshape(batch, block.numel(), width, 9 * channels)
            out[:, :, block, :] = torch.einsum("bnwk,wko->bonw", patch, weights)
    return out
