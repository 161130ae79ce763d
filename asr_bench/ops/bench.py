"""Time every live backend of each custom op on standard workloads, as ratios to the torch reference.

    python -m asr_bench.ops.bench [--device cpu|cuda] [--only rasterize] [--repeats 3] [--json]
    (`python run_bench.py bench-ops ...` forwards here)

Ratios are the honest figure on a shared or noisy machine (DESIGN.md "Measured figures"): each backend is timed
in the same run as the reference, medians of `--repeats` runs after one warm-up. Adding an op's workloads is
one entry in `WORKLOADS`: a name, an input factory, and a function that runs (or differentiates) the op with a
given backend; the op's backends come from `BACKENDS_OF`.
"""
from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..jsontext import dumps


@dataclass(frozen=True)
class Workload:
    """One timed case of an op: `make(device)` builds the inputs once, `run(inputs, backend)` is timed."""

    op: str
    name: str
    make: Callable[[torch.device], Any]
    run: Callable[[Any, str], Callable[[], Any]]  # returns the closure to time (its setup is not timed)
    reference_cost: float = 1.0  # rough relative cost, to let --max-reference-cost skip the slowest references
    timed_once: tuple[str, ...] = ("torch",)  # slow backends: one timing without warm-up instead of `repeats`


# --------------------------------------------------------------------------------------------- rasterize


def gsasr_like_gaussians(lr_h: int, lr_w: int, scale: float, device: torch.device, seed: int = 0):
    """Kernel inputs shaped like GSASR's: 16 Gaussians per LR pixel on a 4x4 sub-grid with ~1 cell offsets,
    sigma = 0.99999 sigmoid(N(0,1)) + 1e-6 (std up to s/1.2 output px), rho = 0.999999 tanh(N(0,1)),
    colour * opacity = U(0,1) * U(0,1) (research/gsasr.md §3.5, §4.1). Returns (params, height, width)."""
    g = torch.Generator().manual_seed(seed)
    hg, wg = 4 * lr_h, 4 * lr_w
    height, width = math.floor(scale * lr_h), math.floor(scale * lr_w)
    n = hg * wg
    iy, ix = torch.meshgrid(torch.arange(hg), torch.arange(wg), indexing="ij")
    x = ((ix.reshape(-1) + 0.5) + torch.randn(n, generator=g)) / wg * 2 - 1
    y = ((iy.reshape(-1) + 0.5) + torch.randn(n, generator=g)) / hg * 2 - 1
    x = (x + 1 - 1 / width) * width / (width - 1) - 1
    y = (y + 1 - 1 / height) * height / (height - 1) - 1
    step = 1.2 / scale
    sx = (0.99999 * torch.sigmoid(torch.randn(n, generator=g)) + 1e-6) / step * 2 / (width - 1)
    sy = (0.99999 * torch.sigmoid(torch.randn(n, generator=g)) + 1e-6) / step * 2 / (height - 1)
    rho = 0.999999 * torch.tanh(torch.randn(n, generator=g))
    colours = torch.rand(n, 3, generator=g) * torch.rand(n, 1, generator=g)
    params = [t.float().contiguous().to(device) for t in (sx, sy, rho, torch.stack([x, y], 1), colours)]
    return params, height, width


def _rasterize_case(lr: int, scale: float, dmax: float) -> Callable[[torch.device], Any]:
    def make(device: torch.device):
        params, height, width = gsasr_like_gaussians(lr, lr, scale, device)
        return params, height, width, dmax

    return make


def _rasterize_forward(inputs, backend: str) -> Callable[[], Any]:
    from .rasterize import rasterize

    params, height, width, dmax = inputs
    return lambda: rasterize(*params, height, width, dmax, backend=backend)


def _rasterize_backward(inputs, backend: str) -> Callable[[], Any]:
    from .rasterize import rasterize

    params, height, width, dmax = inputs
    leaves = [p.clone().requires_grad_() for p in params]
    image = rasterize(*leaves, height, width, dmax, backend=backend)
    grad = torch.ones_like(image)
    return lambda: torch.autograd.grad(image, leaves, grad, retain_graph=True)


def _rasterize_backends(device: torch.device) -> list[str]:
    from .build import ExtensionUnavailable, load_extension

    compiled = "cuda" if device.type == "cuda" else "cpp"
    try:
        load_extension("rasterize", compiled)
    except ExtensionUnavailable:
        return ["torch"]
    return ["torch", compiled]


def _div2k_720(scale: int) -> tuple[int, float]:
    return 720 // scale, scale


WORKLOADS: list[Workload] = [
    *[
        Workload("rasterize", f"fwd x{s} 720x720 dmax0.1", _rasterize_case(*_div2k_720(s), 0.1), _rasterize_forward,
                 reference_cost=(720 / s) ** 2 * 16 * 75**2 / 1e9)
        for s in (2, 4, 12, 30)
    ],
    Workload("rasterize", "fwd x4 48x48-patch dmax0.5", _rasterize_case(48, 4, 0.5), _rasterize_forward, 1.2),
    Workload("rasterize", "bwd x4 48x48-patch dmax0.5", _rasterize_case(48, 4, 0.5), _rasterize_backward, 3.0),
    Workload("rasterize", "bwd x12 720x720 dmax0.1", _rasterize_case(60, 12, 0.1), _rasterize_backward, 1.0),
]
BACKENDS_OF: dict[str, Callable[[torch.device], list[str]]] = {"rasterize": _rasterize_backends}


# ------------------------------------------------------------------------------------------ meta_upscale


def _meta_upscale_case(scale: float, lr: int = 180, channels: int = 64) -> Callable[[torch.device], Any]:
    """Meta-SR's head on a 180x180 LR map of 64 channels: each output line reads LR line floor(i*h/H) with the
    weights of its phase, and the table holds the distinct phases (what the front hands a backend)."""

    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        size = math.floor(scale * lr)
        i = torch.arange(size)
        source = (i * lr) // size
        phase = torch.unique((i * lr) % size, return_inverse=True)[1]
        n_phases = int(phase.max()) + 1
        features = torch.randn(1, channels, lr, lr, generator=g)
        table = torch.randn(n_phases, n_phases, 9 * channels, 3, generator=g) / (9 * channels) ** 0.5
        return [t.to(device) for t in (features, table, source, phase, source, phase)]

    return make


def _meta_upscale_forward(inputs, backend: str) -> Callable[[], Any]:
    from .meta_upscale import meta_upscale_table

    return lambda: meta_upscale_table(*inputs, backend=backend)


def _meta_upscale_backward(inputs, backend: str) -> Callable[[], Any]:
    from .meta_upscale import meta_upscale_table

    features, table, *maps = inputs
    leaves = [features.clone().requires_grad_(), table.clone().requires_grad_()]
    out = meta_upscale_table(*leaves, *maps, backend=backend)
    grad = torch.ones_like(out)
    return lambda: torch.autograd.grad(out, leaves, grad, retain_graph=True)


def _meta_upscale_backends(device: torch.device) -> list[str]:
    from .meta_upscale import BACKENDS, live_backends  # (the package binds `meta_upscale` to the front function)

    return ["torch", *[b for b in live_backends() if b != "torch" and device.type in BACKENDS[b].devices]]


def _meta_upscale_cost(scale: float) -> float:
    """Multiply-adds of the x`scale` head over 3e8 (x4 ~ 3, like the rasterizer's x4 720)."""
    return math.floor(scale * 180) ** 2 * 9 * 64 * 3 / 3e8


WORKLOADS += [
    *[
        Workload("meta_upscale", f"fwd x{s:g} 180x180 C64", _meta_upscale_case(s), _meta_upscale_forward,
                 reference_cost=_meta_upscale_cost(s))
        for s in (2, 3.5, 4, 12)
    ],
    Workload("meta_upscale", "bwd x4 180x180 C64", _meta_upscale_case(4), _meta_upscale_backward,
             reference_cost=3 * _meta_upscale_cost(4)),
]
BACKENDS_OF["meta_upscale"] = _meta_upscale_backends


# ---------------------------------------------------------------------------------------- selective_scan


def _selective_scan_case(length: int, channels: int, state: int, groups: int = 4) -> Callable[[torch.device], Any]:
    """One SS2D scan of MambaIR: 4 directions x d_inner channels (groups = directions), d_state states, L pixels;
    delta, A and D as the official initialisation makes them (dt ~ 0.01 after softplus, A = -(1..N))."""

    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        u = torch.randn(1, channels, length, generator=g)
        delta = torch.randn(1, channels, length, generator=g) * 0.5
        A = -torch.arange(1, state + 1, dtype=torch.float32).repeat(channels, 1)
        B, C = (torch.randn(1, groups, state, length, generator=g) for _ in range(2))
        D, bias = torch.ones(channels), torch.full((channels,), math.log(math.expm1(0.01)))
        return [t.to(device) for t in (u, delta, A, B, C, D, bias)]

    return make


def _selective_scan_forward(inputs, backend: str) -> Callable[[], Any]:
    from ..encoders.selective_scan import selective_scan

    def call():
        with torch.no_grad():
            return selective_scan(*inputs, backend=backend)

    return call


def _selective_scan_backends(device: torch.device) -> list[str]:
    """'torch' (the pure-PyTorch fallback 'auto' uses without a compiler) is the baseline; the old chunked form
    and the per-step reference beside it, then the compiled one when it builds and passes its self-test."""
    from .build import ExtensionUnavailable, resolve_backend

    names = ["torch", "chunked", "reference"]
    if device.type == "cpu":
        try:
            resolve_backend("selective_scan", "cpp", device)
            names.append("cpp")
        except ExtensionUnavailable:
            pass
    elif device.type == "cuda":
        from ..encoders.selective_scan import _mamba_kernel

        if _mamba_kernel() is not None:
            names.append("mamba_ssm")
    return names


WORKLOADS += [
    Workload("selective_scan", "fwd MambaIR L4096 D1440 N16", _selective_scan_case(4096, 1440, 16),
             _selective_scan_forward, reference_cost=4096 * 1440 * 16 / 3e7,
             timed_once=("torch", "chunked", "reference")),
]
BACKENDS_OF["selective_scan"] = _selective_scan_backends


# -------------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(call: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time in seconds of `call` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mb(workload: Workload, backend: str, device: torch.device, inputs: Any = None) -> float | None:
    """MiB one timed call needs beyond its inputs. CUDA: max_memory_allocated over the allocated memory before
    the call. CPU: the peak-RSS increase measured in a fresh Python process (tracemalloc does not see torch, and
    in this process memory freed by earlier calls and kept by the allocator could hide a later call's)."""
    if device.type == "cuda":
        from ..engine.memory import cuda_peak_mb

        call = workload.run(inputs if inputs is not None else workload.make(device), backend)
        before = torch.cuda.memory_allocated(device) / 2**20
        return cuda_peak_mb(call, device) - before
    if device.type != "cpu":
        return None
    code = (f"import sys, torch; torch.set_num_threads({torch.get_num_threads()}); "
            "from asr_bench.ops.bench import _child_peak_mb; "
            f"print(_child_peak_mb({workload.op!r}, {workload.name!r}, {backend!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def _child_peak_mb(op: str, name: str, backend: str) -> float:
    """In a fresh process: build the workload's inputs, load the backends, then the peak of one call."""
    from ..engine.memory import cpu_peak_increase_mb

    device = torch.device("cpu")
    workload = next(w for w in WORKLOADS if w.op == op and w.name == name)
    BACKENDS_OF[op](device)  # compiled modules loaded before the measurement, not during it
    call = workload.run(workload.make(device), backend)
    return cpu_peak_increase_mb(call)


def run(device: torch.device, only: str | None = None, repeats: int = 3, max_reference_cost: float = math.inf,
        workload_filter: str | None = None, memory: bool = False) -> list[dict[str, Any]]:
    """One row per (workload, backend): seconds (median) and speed-up over the torch reference; with `memory`,
    also the call's peak memory (`peak_mb`) and its ratio to the reference's (`memory_vs_torch`)."""
    rows: list[dict[str, Any]] = []
    for workload in WORKLOADS:
        if (only and workload.op != only) or (workload_filter and workload_filter not in workload.name):
            continue
        inputs = workload.make(device)
        reference = reference_peak = None
        for backend in BACKENDS_OF[workload.op](device):
            row: dict[str, Any] = {"op": workload.op, "workload": workload.name, "backend": backend,
                                   "device": device.type, "repeats": repeats, "threads": torch.get_num_threads()}
            if backend in workload.timed_once and workload.reference_cost > max_reference_cost:
                row.update(seconds=None, speedup=None, note="reference skipped (--max-reference-cost)")
                rows.append(row)
                continue
            try:
                # The reference is the slow one: one warm-up-free timing of it is already long.
                once = backend in workload.timed_once
                seconds = time_call(workload.run(inputs, backend), device, 1 if once else repeats,
                                    warmup=0 if once else 1)
            except Exception as error:  # noqa: BLE001 - a failure is data, the table goes on
                row.update(seconds=None, speedup=None, note=f"error: {error}")
                rows.append(row)
                continue
            reference = seconds if backend == "torch" else reference
            row.update(seconds=seconds, speedup=(reference / seconds) if reference else None, note="")
            if memory:
                peak = peak_mb(workload, backend, device, inputs)
                reference_peak = peak if backend == "torch" else reference_peak
                row.update(peak_mb=peak, memory_vs_torch=(peak / reference_peak) if peak is not None and
                           reference_peak else None)
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    memory = any("peak_mb" in row for row in rows)
    extra = f" {'peak':>10s} {'mem/torch':>9s}" if memory else ""
    lines = [f"{'op':14s} {'workload':30s} {'backend':9s} {'time':>10s} {'vs torch':>9s}{extra}  note"]
    for row in rows:
        secs = "-" if row["seconds"] is None else f"{row['seconds'] * 1e3:9.1f}ms"
        ratio = "-" if row["speedup"] is None else f"{row['speedup']:8.{1 if row['speedup'] >= 1 else 3}f}x"
        if memory:
            peak = "-" if row.get("peak_mb") is None else f"{row['peak_mb']:8.1f}MB"
            share = "-" if row.get("memory_vs_torch") is None else f"{row['memory_vs_torch']:9.3f}"
            ratio += f" {peak:>10s} {share:>9s}"
        lines.append(f"{row['op']:14s} {row['workload']:30s} {row['backend']:9s} {secs:>10s} {ratio:>9s}  "
                     f"{row['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-ops", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", help="one op, e.g. rasterize")
    parser.add_argument("--workload", help="only workloads whose name contains this text")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per compiled backend (median)")
    parser.add_argument("--max-reference-cost", type=float, default=math.inf,
                        help="skip the torch reference on workloads costlier than this (x4 720 ~ 2.9)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory column (on CPU each peak is one more call in a fresh process)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench-ops: --device cuda asked but no CUDA device is visible; use --device cpu.", file=sys.stderr)
        return 2
    known_ops = sorted(BACKENDS_OF)
    if args.only and args.only not in known_ops:
        print(f"bench-ops: unknown op '{args.only}'; known: {', '.join(known_ops)}.", file=sys.stderr)
        return 2
    rows = run(torch.device(args.device), args.only, args.repeats, args.max_reference_cost, args.workload,
               memory=not args.no_memory)
    print(dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
