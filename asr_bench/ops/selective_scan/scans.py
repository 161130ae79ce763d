"""The selective scan in pure PyTorch: the per-step reference (the specification), the bulk-steps form (the
'torch' backend) and the chunked form (kept for comparison in bench-ops). Contract: asr_bench/ops/selective_scan."""
from __future__ import annotations

import torch
import torch.nn.functional as F

STEP_BLOCK_BYTES = 32 * 2**20  # selective_scan_steps' two (b, D, T, N) float32 buffers, together


def _prepare(u, delta, A, B, C, D, delta_bias):
    b, d, length = u.shape
    groups = B.shape[1]
    u, delta = u.float(), delta.float()
    delta = F.softplus(delta + delta_bias.float().view(1, d, 1))
    per_group = d // groups
    Bd = B.float().repeat_interleave(per_group, dim=1)  # (b, d, N, L)
    Cd = C.float().repeat_interleave(per_group, dim=1)
    return u, delta, A.float(), Bd, Cd, D.float()


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor, delta_bias: torch.Tensor) -> torch.Tensor:
    """u, delta: (b, d, L); A: (d, N); B, C: (b, groups, N, L); D, delta_bias: (d,) -> y (b, d, L) float32."""
    u, delta, A, Bd, Cd, D = _prepare(u, delta, A, B, C, D, delta_bias)
    b, d, length = u.shape
    state = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]
        state = torch.exp(dt * A) * state + dt * Bd[:, :, :, t] * u[:, :, t, None]
        ys.append((state * Cd[:, :, :, t]).sum(-1))
    return torch.stack(ys, dim=-1) + u * D.view(1, d, 1)


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor, delta_bias: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """The reference's result with L / chunk Python steps; memory ~ b*d*N*chunk^2 floats per step."""
    u, delta, A, Bd, Cd, D = _prepare(u, delta, A, B, C, D, delta_bias)
    b, d, length = u.shape
    state = u.new_zeros(b, d, A.shape[1])
    ys = []
    for start in range(0, length, chunk):
        sl = slice(start, min(start + chunk, length))
        dt = delta[:, :, sl]                                              # (b, d, T)
        log_decay = torch.cumsum(dt.unsqueeze(-1) * A.view(1, d, 1, -1), dim=2)  # P_t: (b, d, T, N)
        drive = (dt * u[:, :, sl]).unsqueeze(-1) * Bd[:, :, :, sl].transpose(2, 3)  # b_s: (b, d, T, N)
        n = dt.shape[-1]
        # exp(P_t - P_s) for s <= t, 0 above the diagonal: (b, d, N, T, T)
        diff = log_decay.permute(0, 1, 3, 2).unsqueeze(-1) - log_decay.permute(0, 1, 3, 2).unsqueeze(-2)
        causal = torch.ones(n, n, dtype=torch.bool, device=u.device).tril()
        weights = torch.exp(diff.masked_fill(~causal, float("-inf")))
        states = weights @ drive.permute(0, 1, 3, 2).unsqueeze(-1)     # (b, d, N, T, 1)
        states = states.squeeze(-1).permute(0, 1, 3, 2) + torch.exp(log_decay) * state.unsqueeze(2)  # (b, d, T, N)
        ys.append((states * Cd[:, :, :, sl].transpose(2, 3)).sum(-1))
        state = states[:, :, -1]
    return torch.cat(ys, dim=-1) + u * D.view(1, d, 1)


def selective_scan_steps(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                         C: torch.Tensor, D: torch.Tensor, delta_bias: torch.Tensor,
                         block_bytes: int = STEP_BLOCK_BYTES) -> torch.Tensor:
    """The reference's recurrence with all but the state update done in bulk (the 'torch' backend).

    Per block of T steps: decay = exp(delta_t A) and drive = (delta_t B_t) u_t for all T at once, then one in-place
    x_t = drive_t + decay_t * x_{t-1} per step (L small ops in all, no extra work per step, unlike the chunked
    form), then the block's y in one product and sum. T is chosen so the two (b, D, T, N) float32 buffers fit in
    `block_bytes` (at L 4096, D 1440, N 16 one such tensor for the whole sequence would be 377 MB).
    """
    b, d, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    per_group = d // groups
    shape = (b, groups, per_group)  # channel d = (g, p): the (T, N) blocks of one group share B and C
    u, A = u.float().view(*shape, length, 1), A.float().view(1, groups, per_group, 1, n)
    Bt = B.float().transpose(2, 3).contiguous().unsqueeze(2)   # (b, G, 1, L, N): small, transposed once
    Ct = C.float().transpose(2, 3).contiguous().unsqueeze(2)
    delta = F.softplus(delta.float() + delta_bias.float().view(1, d, 1)).view(*shape, length, 1)
    block = max(1, min(length, block_bytes // (2 * 4 * max(1, b * d * n))))
    # Two buffers reused by every block, filled with out= ops: a fresh tensor of this size per op costs more in
    # page faults than the op itself.
    decay_buffer = torch.empty(*shape, block, n, dtype=torch.float32, device=u.device)
    drive_buffer = torch.empty(*shape, block, n, dtype=torch.float32, device=u.device)
    y = torch.empty(*shape, length, dtype=torch.float32, device=u.device)
    state = u.new_zeros(*shape, n)
    for start in range(0, length, block):
        sl = slice(start, min(start + block, length))
        steps = sl.stop - sl.start
        decay, drive = decay_buffer[:, :, :, :steps], drive_buffer[:, :, :, :steps]    # (b, G, P, T, N)
        dt = delta[:, :, :, sl]                                                         # (b, G, P, T, 1)
        torch.mul(dt, A, out=decay).exp_()                                              # exp(delta_t A)
        torch.mul(dt, Bt[:, :, :, sl], out=drive).mul_(u[:, :, :, sl])                  # (delta_t B_t) u_t
        xs, decays = drive.unbind(3), decay.unbind(3)
        xs[0].addcmul_(decays[0], state)
        for t in range(1, steps):
            xs[t].addcmul_(decays[t], xs[t - 1])                                        # drive_t becomes x_t
        state = xs[-1].clone()
        torch.sum(torch.mul(drive, Ct[:, :, :, sl], out=decay), dim=-1, out=y[:, :, :, sl])
    return y.view(b, d, length) + u.view(b, d, length) * D.float().view(1, d, 1)
