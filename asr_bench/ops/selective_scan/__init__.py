"""The selective scan of Mamba (S6), as MambaIR's SS2D calls it (asr_bench/encoders/mambair.py), with
interchangeable backends.

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
- 'torch': `selective_scan_steps` (scans.py), the pure-PyTorch path 'auto' falls back to (one warning) when the C++ op cannot
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
The self-test cases, the benchmark workload and the FLOP count are in cases.py; `SPEC` below hands them on.
"""
from __future__ import annotations

import functools

import torch

from ...errors import UnknownName, UserError
from ..spec import OpSpec
from ..usage import op_flops, record
from . import cases
from .scans import (
    selective_scan_chunked,
    selective_scan_reference,
    selective_scan_steps,
)

OP_NAME = "selective_scan"
BACKENDS = ("auto", "cpp", "torch", "mamba_ssm", "chunked", "reference")


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
    with op_flops(OP_NAME, lambda: cases.flops(*args)):
        return _run(name, module, args)


def _run(name: str, module, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    u, delta, A, B, C, D, delta_bias = args
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
        from ..backends import resolve_backend

        return resolve_backend(OP_NAME, "auto", device, fallback="the pure-PyTorch scan (backend 'torch')")
    if backend == "mamba_ssm" and (_mamba_kernel() is None or device.type != "cuda"):
        raise UserError("selective scan backend 'mamba_ssm' needs the mamba-ssm package (pip install mamba-ssm) "
                        "and CUDA tensors; use backend 'auto' or 'torch' otherwise.")
    if backend == "cpp":
        if needs_grad:
            raise UserError("selective scan backend 'cpp' is forward-only (inference): run under torch.no_grad(), "
                            "or use backend 'auto' or 'reference' to differentiate.")
        from ..backends import resolve_backend

        return resolve_backend(OP_NAME, "cpp", device)
    return backend, None


def _bench_backends(device: torch.device) -> list[str]:
    """'torch' (the pure-PyTorch fallback 'auto' uses without a compiler) is the baseline; the old chunked form
    and the per-step reference beside it, then the compiled one when it builds and passes its self-test."""
    from ..backends import resolve_backend
    from ..build import ExtensionUnavailable

    names = ["torch", "chunked", "reference"]
    if device.type == "cpu":
        try:
            resolve_backend(OP_NAME, "cpp", device)
            names.append("cpp")
        except ExtensionUnavailable:
            pass
    elif device.type == "cuda" and _mamba_kernel() is not None:
        names.append("mamba_ssm")
    return names


SPEC = OpSpec(
    name=OP_NAME,
    front=selective_scan,
    reference=selective_scan_reference,
    selftest=cases.SELFTEST_CASES,
    gradients=None,  # the compiled backend is forward-only (inference)
    workloads=cases.WORKLOADS,
    bench_backends=_bench_backends,
    flops=cases.flops,
    doc="Mamba's selective scan (S6), as MambaIR calls it",
)
