"""Mixed learnable 2-D rotary position embedding ("RoPE-Mixed"), as GSASR's HAT-L encoder uses it.

Token t of a `side`-wide grid sits at column t mod side, row t div side; a head rotates the adjacent channel
pair (2f, 2f+1) by the angle x * fx[f] + y * fy[f], where the frequencies are learned (2 x heads x head_dim/2,
loaded from the checkpoint). The rotation is computed in float32 whatever the input dtype, then cast back.
"""
from __future__ import annotations

import torch


def rope_positions(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(columns, rows) of the side*side tokens, float32 (the persistent `rope_t_x` / `rope_t_y` buffers)."""
    t = torch.arange(side * side, dtype=torch.float32)
    return t % side, torch.div(t, side, rounding_mode="floor")


def random_mixed_freqs(head_dim: int, heads: int, theta: float = 10.0) -> torch.Tensor:
    """Initial frequencies: magnitudes theta^(-4k/head_dim), one random direction per head (trained later)."""
    mag = 1 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    fx, fy = [], []
    for _ in range(heads):
        a = torch.rand(1) * 2 * torch.pi
        fx.append(torch.cat([mag * torch.cos(a), mag * torch.cos(torch.pi / 2 + a)]))
        fy.append(torch.cat([mag * torch.sin(a), mag * torch.sin(torch.pi / 2 + a)]))
    return torch.stack([torch.stack(fx), torch.stack(fy)])


def rope_cis(freqs: torch.Tensor, t_x: torch.Tensor, t_y: torch.Tensor) -> torch.Tensor:
    """heads x N x head_dim/2 unit complex rotations, float32 even under autocast (angles reach ~100 rad)."""
    with torch.autocast(device_type=freqs.device.type, enabled=False):
        freqs, t_x, t_y = freqs.float(), t_x.float(), t_y.float()
        angle = t_x[None, :, None] * freqs[0][:, None, :] + t_y[None, :, None] * freqs[1][:, None, :]
        return torch.polar(torch.ones_like(angle), angle)


def apply_rope(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    """Rotate (B_, heads, N, d) by the first N positions of `cis` (float32 inside, input dtype out)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * cis[None, :, : x.shape[2]]).flatten(3).to(x.dtype)
