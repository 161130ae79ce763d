"""The meta-upscale op (Meta-SR): every output pixel is a 3x3 filter over the LR features, with the filter
predicted from the pixel's sub-pixel phase.

Why an op: the official Meta-SR materialises an HR-sized im2col buffer and one predicted (9C x O) weight
matrix per output pixel. The weights depend only on the phase of the output row and of the output column
(and on the scale), so the weight net can run once per distinct (row phase, column phase) and a kernel
gathers. The split is:

- the *method* says, per output row and per output column, which LR line it reads (`source`) and the phase
  value its weight net sees (`phase`): an `AxisMap`;
- `meta_upscale` (this front) deduplicates the phases, calls the method's `weight_fn` on the distinct ones
  (the MLP stays in PyTorch, any architecture), in row blocks when the table would be too large, and hands
  the table to a backend;
- a backend does the gather + 3x3 dot product only.

Backend contract (what `cpp` / `cuda` must satisfy; the `torch` backend here is the specification)::

    forward(features, table, row_source, row_phase, col_source, col_phase) -> out
      features   (B, C, h, w) float, contiguous            LR features
      table      (Py, Px, 9*C, O) same dtype/device        weights per (row phase, column phase);
                                                            row index k = c*9 + ky*3 + kx (F.unfold order)
      row_source (H,) int64 in [0, h)    row_phase (H,) int64 in [0, Py)
      col_source (W,) int64 in [0, w)    col_phase (W,) int64 in [0, Px)
      out        (B, O, H, W):
      out[b,o,i,j] = sum_{c,ky,kx} F[b, c, row_source[i]+ky-1, col_source[j]+kx-1]
                                   * table[row_phase[i], col_phase[j], c*9+ky*3+kx, o]
      with F = 0 outside the map (zero padding 1, as F.unfold(..., 3, padding=1)).
    backward(grad_out, features, table, row_source, row_phase, col_source, col_phase)
      -> (grad_features, grad_table)   (optional; without it the torch reference is differentiated instead)

Agreement with the reference is to float rounding (the summation order over 9*C terms is free).
Backends register themselves with `register_backend` (asr_bench.ops.build does this for the compiled ones);
`backend="auto"` picks `cuda` > `cpp` > `torch` among the live ones that handle the tensor's device and dtype
(a `Backend` declares `dtypes`; float32/float64 unless it says otherwise; the reference takes fp16/bf16 too).
A backend with a `build` (the compiled ones) runs only after passing its self-test on the device
(asr_bench/ops/selftest.py, with the cases of cases.py); which backend a call ran is recorded
(asr_bench/ops/usage.py). The reference is reference.py; `SPEC` below describes the op to the self-test and
`bench-ops`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...errors import UnknownName, UserError
from ..backends import warn_once
from ..build import ExtensionUnavailable, extension, has_cuda_toolchain, load_extension
from ..selftest import Verdict, verdict, warn_disabled
from ..spec import Gradients, OpSpec
from ..usage import op_flops, record
from . import cases
from .reference import torch_forward

PRIORITY = ("cuda", "cpp", "torch")
TABLE_BUDGET_BYTES = 256 * 2**20     # largest weight table built at once (then rows are processed in blocks)

WeightFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AxisMap:
    """Output lines (rows or columns) of one axis: the LR line each reads and the phase its weights see.

    `phase` holds the exact values the method's weight net receives (float32, computed with the official
    arithmetic), so deduplicating them loses nothing: equal values give equal weights.
    """

    source: torch.Tensor  # (n_out,) int64, LR index
    phase: torch.Tensor   # (n_out,) float, value fed to the weight net


@dataclass(frozen=True)
class Backend:
    """One implementation of the gather + 3x3 dot product (see the module docstring for the contract)."""

    name: str
    devices: frozenset[str]
    forward: Callable[..., torch.Tensor]
    backward: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    dtypes: frozenset[torch.dtype] = frozenset({torch.float32, torch.float64})   # 'auto' skips it for others
    build: str | None = None  # a compiled build's id (extension name + hash): then self-tested before use


BACKENDS: dict[str, Backend] = {}
_DISCOVERED = False


def register_backend(backend: Backend) -> None:
    """Make a backend live (`_discover` calls this once a compiled extension has loaded)."""
    BACKENDS[backend.name] = backend


def live_backends() -> list[str]:
    """Names of the backends that can run now, best first."""
    _discover()
    return [name for name in PRIORITY if name in BACKENDS] + sorted(set(BACKENDS) - set(PRIORITY))


def _discover() -> None:
    """Register, once per process, the compiled backends that load here (csrc/meta_upscale, asr_bench.ops.build)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    try:
        _register_compiled()
    except Exception:  # noqa: BLE001 - a failed build leaves the torch reference in charge
        pass


def _register_compiled() -> None:
    for backend, devices in (("cuda", {"cuda"}), ("cpp", {"cpu"})):
        if extension("meta_upscale", backend) is None or (backend == "cuda" and not has_cuda_toolchain()):
            continue  # no source, or no GPU here: nothing to warn about
        try:
            module = load_extension("meta_upscale", backend)
        except ExtensionUnavailable as error:
            warn_once("meta_upscale", backend, str(error), "the next backend")
            continue
        register_backend(Backend(backend, frozenset(devices), module.forward, getattr(module, "backward", None),
                                 build=module.__name__))


def select_backend(name: str, device: torch.device, dtype: torch.dtype = torch.float32) -> Backend:
    """The backend to run on `device`: the named one, or the best live one for 'auto' (device and dtype).

    A compiled backend (one with a `build`) must have passed its self-test on `device`: 'auto' skips one that
    failed, with one warning, and naming it is a UserError.
    """
    if name == "auto":
        failed = []
        for candidate in live_backends():
            backend = BACKENDS[candidate]
            if device.type in backend.devices and dtype in backend.dtypes:
                verdict = _self_test(backend, device)
                if verdict is None or verdict.passed:
                    break
                failed.append(verdict)
        else:
            backend = BACKENDS["torch"]
        if failed:
            fallback = "the torch reference" if backend.name == "torch" else f"the {backend.name} backend"
            for verdict in failed:
                warn_disabled(verdict, fallback)
        return backend
    _discover()
    if name not in BACKENDS:
        raise UnknownName("meta_upscale backend (live ones)", name, BACKENDS,
                          hint="Use backend='auto' or 'torch'; `python run_bench.py doctor` shows why one is missing.")
    backend = BACKENDS[name]
    if device.type not in backend.devices:
        raise UserError(f"meta_upscale backend '{name}' runs on {sorted(backend.devices)}, not on {device.type}; "
                        "move the tensors or use backend='auto'.")
    verdict = _self_test(backend, device)
    if verdict is not None and not verdict.passed:
        raise UserError(f"the {name} backend of 'meta_upscale' {verdict.reason()}; use backend='auto' (the torch "
                        "reference runs instead) or backend='torch'.")
    return backend


def _self_test(backend: Backend, device: torch.device) -> Verdict | None:
    """The self-test verdict of a compiled backend on `device` (None for one without a build: not compiled)."""
    if backend.build is None:
        return None
    return verdict("meta_upscale", backend.name, backend.build, device, backend.forward, backend.backward)


# ------------------------------------------------------------------------------------------------ front


def meta_upscale(
    features: torch.Tensor,
    rows: AxisMap,
    cols: AxisMap,
    weight_fn: WeightFn,
    backend: str = "auto",
    out_channels: int = 3,
    table_budget_bytes: int = TABLE_BUDGET_BYTES,
) -> torch.Tensor:
    """Meta-upscale `features` (B, C, h, w) to (B, O, len(rows), len(cols)).

    `weight_fn(row_phases (Py,), col_phases (Px,)) -> (Py, Px, 9*C, O)` predicts the filters of every
    (row phase, column phase) pair it is given; it is called on distinct phase values only, and on a subset
    of row phases at a time when the whole table (sized with `out_channels`) would exceed
    `table_budget_bytes`. The output equals the per-pixel definition exactly: equal phases give equal weights.
    """
    row_values, row_index = torch.unique(rows.phase, return_inverse=True)
    col_values, col_index = torch.unique(cols.phase, return_inverse=True)
    bytes_per_row_phase = col_values.numel() * features.shape[1] * 9 * out_channels * features.element_size()
    max_row_phases = max(1, table_budget_bytes // max(1, bytes_per_row_phase))
    if row_values.numel() <= max_row_phases:
        table = weight_fn(row_values, col_values)
        return meta_upscale_table(features, table, rows.source, row_index, cols.source, col_index, backend)
    blocks = []
    for start in range(0, row_index.numel(), max_row_phases):
        block = slice(start, start + max_row_phases)
        used, local_index = torch.unique(row_index[block], return_inverse=True)
        table = weight_fn(row_values[used], col_values)
        blocks.append(meta_upscale_table(features, table, rows.source[block], local_index,
                                         cols.source, col_index, backend))
    return torch.cat(blocks, dim=2)


def meta_upscale_table(
    features: torch.Tensor,
    table: torch.Tensor,
    row_source: torch.Tensor,
    row_phase: torch.Tensor,
    col_source: torch.Tensor,
    col_phase: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """The op itself (gather + 3x3 dot product) on a ready weight table; differentiable in both tensors."""
    _check(features, table, row_source, row_phase, col_source, col_phase)
    chosen = select_backend(backend, features.device, features.dtype)
    record("meta_upscale", chosen.name)
    args = (features, table, row_source, row_phase, col_source, col_phase)
    with op_flops("meta_upscale", lambda: cases.flops(*args)):
        if chosen.name == "torch":
            return torch_forward(*args)
        return _CompiledMetaUpscale.apply(chosen, *args)


def _check(features, table, row_source, row_phase, col_source, col_phase) -> None:
    if features.ndim != 4 or table.ndim != 4 or table.shape[2] != 9 * features.shape[1]:
        raise UserError(f"meta_upscale needs features (B, C, h, w) and a table (Py, Px, 9*C, O); got "
                        f"{tuple(features.shape)} and {tuple(table.shape)}.")
    if row_source.shape != row_phase.shape or col_source.shape != col_phase.shape:
        raise UserError("meta_upscale: each axis needs one source index and one phase index per output line.")


class _CompiledMetaUpscale(torch.autograd.Function):
    """Autograd for non-reference backends: their own backward, else the reference's, recomputed."""

    @staticmethod
    def forward(ctx, backend: Backend, features, table, row_source, row_phase, col_source, col_phase):
        ctx.backend = backend
        ctx.save_for_backward(features, table, row_source, row_phase, col_source, col_phase)
        return backend.forward(features.contiguous(), table.contiguous(), row_source, row_phase,
                               col_source, col_phase)

    @staticmethod
    def backward(ctx, grad_out):
        features, table, *maps = ctx.saved_tensors
        if ctx.backend.backward is not None:
            grad_features, grad_table = ctx.backend.backward(grad_out.contiguous(), features, table, *maps)
        else:
            with torch.enable_grad():
                f = features.detach().requires_grad_(ctx.needs_input_grad[1])
                t = table.detach().requires_grad_(ctx.needs_input_grad[2])
                out = torch_forward(f, t, *maps)
                inputs = [x for x in (f, t) if x.requires_grad]
                grads = iter(torch.autograd.grad(out, inputs, grad_out)) if inputs else iter(())
                grad_features = next(grads) if f.requires_grad else None
                grad_table = next(grads) if t.requires_grad else None
        return None, grad_features, grad_table, None, None, None, None


register_backend(Backend("torch", frozenset({"cpu", "cuda", "mps"}), torch_forward,
                         dtypes=frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})))


def _bench_backends(device: torch.device) -> list[str]:
    return ["torch", *[b for b in live_backends() if b != "torch" and device.type in BACKENDS[b].devices]]


SPEC = OpSpec(
    name="meta_upscale",
    front=meta_upscale_table,
    reference=torch_forward,
    selftest=cases.SELFTEST_CASES,
    gradients=Gradients((0, 1), ("features", "table"), cases.backward_call),
    workloads=cases.WORKLOADS,
    bench_backends=_bench_backends,
    flops=cases.flops,
    doc="Meta-SR's meta-upscale (gather + per-phase 3x3 filter)",
)
