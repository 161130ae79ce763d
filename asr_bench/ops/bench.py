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
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Workload:
    """One timed case of an op: `make(device)` builds the inputs once, `run(inputs, backend)` is timed."""

    op: str
    name: str
    make: Callable[[torch.device], Any]
    run: Callable[[Any, str], Callable[[], Any]]  # returns the closure to time (its setup is not timed)
    reference_cost: float = 1.0  # rough relative cost, to let --max-reference-cost skip the slowest references


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


def run(device: torch.device, only: str | None = None, repeats: int = 3, max_reference_cost: float = math.inf,
        workload_filter: str | None = None) -> list[dict[str, Any]]:
    """One row per (workload, backend): seconds (median) and speed-up over the torch reference."""
    rows: list[dict[str, Any]] = []
    for workload in WORKLOADS:
        if (only and workload.op != only) or (workload_filter and workload_filter not in workload.name):
            continue
        inputs = workload.make(device)
        reference = None
        for backend in BACKENDS_OF[workload.op](device):
            row: dict[str, Any] = {"op": workload.op, "workload": workload.name, "backend": backend,
                                   "device": device.type, "repeats": repeats, "threads": torch.get_num_threads()}
            if backend == "torch" and workload.reference_cost > max_reference_cost:
                row.update(seconds=None, speedup=None, note="reference skipped (--max-reference-cost)")
                rows.append(row)
                continue
            try:
                # The reference is the slow one: one warm-up-free timing of it is already long.
                is_ref = backend == "torch"
                seconds = time_call(workload.run(inputs, backend), device, 1 if is_ref else repeats,
                                    warmup=0 if is_ref else 1)
            except Exception as error:  # noqa: BLE001 - a failure is data, the table goes on
                row.update(seconds=None, speedup=None, note=f"error: {error}")
                rows.append(row)
                continue
            reference = seconds if backend == "torch" else reference
            row.update(seconds=seconds, speedup=(reference / seconds) if reference else None, note="")
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'op':10s} {'workload':30s} {'backend':7s} {'time':>10s} {'vs torch':>9s}  note"]
    for row in rows:
        secs = "-" if row["seconds"] is None else f"{row['seconds'] * 1e3:9.1f}ms"
        ratio = "-" if row["speedup"] is None else f"{row['speedup']:8.1f}x"
        lines.append(f"{row['op']:10s} {row['workload']:30s} {row['backend']:7s} {secs:>10s} {ratio:>9s}  {row['note']}")
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
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench-ops: --device cuda asked but no CUDA device is visible; use --device cpu.", file=sys.stderr)
        return 2
    known_ops = sorted(BACKENDS_OF)
    if args.only and args.only not in known_ops:
        print(f"bench-ops: unknown op '{args.only}'; known: {', '.join(known_ops)}.", file=sys.stderr)
        return 2
    rows = run(torch.device(args.device), args.only, args.repeats, args.max_reference_cost, args.workload)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
