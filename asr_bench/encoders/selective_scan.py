"""The selective scan of Mamba (S6), as MambaIR's SS2D calls it, with three interchangeable backends.

For channel d (of D = groups x channels-per-group) and step t, with state x in R^N (N = d_state):
    delta_t = softplus(delta[d, t] + delta_bias[d])
    x_t     = exp(delta_t * A[d]) * x_{t-1} + delta_t * B[g(d), :, t] * u[d, t]      (x_0 = 0)
    y[d, t] = <x_t, C[g(d), :, t]> + D[d] * u[d, t]
where g(d) = d // (D / groups). Computed in float32 whatever the input dtype, as `mamba_ssm` does.

- `selective_scan_reference`: the recurrence one step at a time (exact, slow: L Python steps).
- `selective_scan_chunked`: the same sums in blocks of `chunk` steps, x_t = sum_{s<=t} exp(P_t - P_s) b_s inside
  a block (P = running sum of delta * A, so every exponent is <= 0: no overflow), one carried state per block.
- `mamba_ssm`'s CUDA kernel (`selective_scan_fn`) when the package is installed and the tensors are on CUDA.
`selective_scan` picks the kernel if it can, else the chunked form; tests check both against the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def _mamba_kernel():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor, delta_bias: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """`backend`: 'auto' (mamba_ssm on CUDA when installed, else 'chunked'), 'mamba_ssm', 'chunked', 'reference'."""
    if backend == "auto":
        backend = "mamba_ssm" if u.is_cuda and _mamba_kernel() is not None else "chunked"
    if backend == "mamba_ssm":
        kernel = _mamba_kernel()
        if kernel is None:
            from ..errors import UserError
            raise UserError("selective scan backend 'mamba_ssm' needs the mamba-ssm package (pip install mamba-ssm) "
                            "and a CUDA device; use backend 'chunked' or 'reference' otherwise.")
        return kernel(u.float(), delta.float(), A.float(), B.float(), C.float(), D.float(), z=None,
                      delta_bias=delta_bias.float(), delta_softplus=True, return_last_state=False)
    if backend == "chunked":
        return selective_scan_chunked(u, delta, A, B, C, D, delta_bias)
    if backend == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, delta_bias)
    from ..errors import UnknownName
    raise UnknownName("selective scan backend", backend, ("auto", "mamba_ssm", "chunked", "reference"))
