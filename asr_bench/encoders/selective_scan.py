"""The selective scan of Mamba (S6), as MambaIR's SS2D calls it, with interchangeable backends.

For channel d (of D = groups x channels-per-group) and step t, with state x in R^N (N = d_state):
    delta_t = softplus(delta[d, t] + delta_bias[d])
    x_t     = exp(delta_t * A[d]) * x_{t-1} + delta_t * B[g(d), :, t] * u[d, t]      (x_0 = 0)
    y[d, t] = <x_t, C[g(d), :, t]> + D[d] * u[d, t]
where g(d) = d // (D / groups). Computed in float32 whatever the input dtype (float64 and bfloat16 inputs are
rounded to float32 first), as `mamba_ssm` does; y is float32.

Backends (`selective_scan(..., backend=)`; which one ran is recorded in `asr_bench.ops.backend_log` as
"selective_scan"):
- 'cpp': csrc/selective_scan/cpu.cpp, a C++ loop per (batch, channel) row, parallel over rows, deterministic for
  any thread count. FORWARD ONLY (inference): it has no backward, so 'auto' does not use it when a gradient is
  needed and naming it then is a UserError. Compiled at first use and trusted only after its self-test
  (asr_bench/ops/build.py, selftest.py), like the other compiled ops.
- 'torch': `selective_scan_steps`, the pure-PyTorch path 'auto' falls back to (one warning) when the C++ op cannot
  be built or fails its self-test: everything but the state update in bulk, one in-place multiply-add per step,
  in reused buffers (out= ops: not differentiable, so when a gradient is needed 'torch' and 'auto' run the
  reference instead, which is).
- 'mamba_ssm': `mamba_ssm`'s CUDA kernel (`selective_scan_fn`), when the package is installed and the tensors are
  on CUDA.
- 'chunked': `selective_scan_chunked`, the same sums in blocks of `chunk` steps with a (chunk x chunk) decay matrix
  per block: O(chunk) more work per step than the recurrence; kept for comparison (bench-ops), not chosen by 'auto'.
- 'reference': `selective_scan_reference`, the recurrence one step at a time, as written (the specification).
'auto' without a gradient to compute: mamba_ssm on CUDA when installed, else 'torch'; on the CPU 'cpp' when it is
live (built and self-tested), else 'torch'. With one: 'reference' (mamba_ssm on CUDA when installed).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..ops.usage import record

OP_NAME = "selective_scan"
BACKENDS = ("auto", "cpp", "torch", "mamba_ssm", "chunked", "reference")
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


@functools.cache  # asked on every scan call (4 per block): a failed import is otherwise retried each time
def _mamba_kernel():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor, delta_bias: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """u, delta: (b, D, L); A: (D, N); B, C: (b, groups, N, L); D, delta_bias: (D,) -> y (b, D, L) float32.

    `backend`: 'auto', 'cpp', 'torch', 'mamba_ssm', 'chunked' or 'reference' (module docstring)."""
    args = (u, delta, A, B, C, D, delta_bias)
    name, module = _choose(backend, args)
    record(OP_NAME, name)
    if name == "cpp":
        return module.forward(*args)
    if name == "mamba_ssm":
        return _mamba_kernel()(u.float(), delta.float(), A.float(), B.float(), C.float(), D.float(), z=None,
                               delta_bias=delta_bias.float(), delta_softplus=True, return_last_state=False)
    if name == "chunked":
        return selective_scan_chunked(*args)
    if name == "reference":
        return selective_scan_reference(*args)
    return selective_scan_steps(*args)


def _choose(backend: str, args: tuple[torch.Tensor, ...]):
    """(backend that runs, compiled module or None) for `backend` on these tensors."""
    from ..errors import UnknownName, UserError

    if backend not in BACKENDS:
        raise UnknownName("selective scan backend", backend, BACKENDS)
    device = args[0].device
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in args)
    if backend == "torch" and needs_grad:
        return "reference", None  # the steps' out= ops are not differentiable; the reference is
    if backend == "auto":
        if device.type == "cuda" and _mamba_kernel() is not None:
            return "mamba_ssm", None
        if needs_grad:
            return "reference", None
        if device.type != "cpu":
            return "torch", None
        from ..ops.build import resolve_backend

        return resolve_backend(OP_NAME, "auto", device, fallback="the pure-PyTorch scan (backend 'torch')")
    if backend == "mamba_ssm" and (_mamba_kernel() is None or device.type != "cuda"):
        raise UserError("selective scan backend 'mamba_ssm' needs the mamba-ssm package (pip install mamba-ssm) "
                        "and CUDA tensors; use backend 'auto' or 'torch' otherwise.")
    if backend == "cpp":
        if needs_grad:
            raise UserError("selective scan backend 'cpp' is forward-only (inference): run under torch.no_grad(), "
                            "or use backend 'auto' or 'reference' to differentiate.")
        from ..ops.build import resolve_backend

        return resolve_backend(OP_NAME, "cpp", device)
    return backend, None
