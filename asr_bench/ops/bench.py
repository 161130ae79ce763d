"""Time every live backend of each custom op on its standard workloads, as ratios to the torch reference.

    python -m asr_bench.ops.bench [--device cpu|cuda] [--only rasterize] [--repeats 3] [--workload-limit-s 300]
                                  [--json]
    (`python run_bench.py bench-ops ...` forwards here)

Ratios are the honest figure on a shared or noisy machine (docs/architecture.md §9): each backend is timed
in the same process as the reference, medians of `--repeats` runs after one warm-up, in wall time and in the
calling thread's CPU time (`time.thread_time`, which another process's load does not inflate; with several
threads it counts this thread's share only). Each row is printed as soon as it is measured (a table line, or one
JSON object per line with `--json`), so a long run that is stopped keeps what it measured. A row (one workload on
one backend: building its closure, warm-up and timed runs) that runs past `--workload-limit-s` is stopped and
reported as skipped, and the next backend runs. The limit interrupts Python between calls (SIGALRM): one compiled
call that runs long is stopped when it returns.

This module knows no op: it loops over the ops' specs (asr_bench/ops/spec.py), whose `workloads` say what to
time, `bench_backends` on which backends, `flops` (where declared) the work of one forward call (the
GFLOP/s column), and `element_rate` (where declared) the evaluations of an element-wise function one call makes:
the "elements" column gives them per second and as a share of that function's own rate (`torch.exp` on a 64 MB
tensor, on the same device and threads, measured once per run in this process).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import math
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..errors import UserError
from ..jsontext import dumps
from ..memory import cpu_peak_increase_mb, cuda_peak_mb
from .spec import OpSpec, Workload, get_op, op_specs

DEFAULT_LIMIT_S = 300.0  # one row; the slowest reference row (x2 720x720 rasterize) takes minutes on a busy CPU


class OverLimit(Exception):
    """A row ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `OverLimit` inside the block once `seconds` have passed (main thread, SIGALRM; elsewhere, or with
    an infinite limit, the block runs unbounded)."""
    usable = (math.isfinite(seconds) and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise OverLimit(seconds)

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(call: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(median wall seconds, median thread-CPU seconds) of `call` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        call()
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        wall, cpu = time.perf_counter(), time.thread_time()
        call()
        _sync(device)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def function_rate(name: str, device: torch.device) -> float:
    """Elements per second of `torch.<name>` on a 64 MB float32 tensor (out= preallocated), median of 5 after a
    warm-up, wall time, at this process's thread count: the element-wise speed limit an op is compared with."""
    return _function_rate(name, device, torch.get_num_threads())


@functools.lru_cache(maxsize=8)
def _function_rate(name: str, device: torch.device, threads: int) -> float:
    """Measured once per (function, device, thread count) in a process."""
    function = getattr(torch, name)
    source = torch.randn(1 << 24, device=device) * 4 - 8
    target = torch.empty_like(source)
    seconds, _ = time_call(lambda: function(source, out=target), device, repeats=5)
    return source.numel() / seconds


def closure(spec: OpSpec, workload: Workload, inputs: list[Any], backend: str) -> Callable[[], Any]:
    """The call to time: the op's front on `backend` (forward, without autograd), or the gradients of its
    ones-weighted output with respect to the op's differentiable arguments (the forward is not timed)."""
    if workload.direction == "forward":
        def forward() -> Any:
            with torch.no_grad():
                return spec.front(*inputs, backend=backend)

        return forward
    if spec.gradients is None:
        raise ValueError(f"workload '{workload.name}' of op '{spec.name}' times a backward, but the op declares "
                         "no gradients")
    arguments = list(inputs)
    leaves = []
    for position in spec.gradients.positions:
        arguments[position] = leaf = inputs[position].clone().requires_grad_()
        leaves.append(leaf)
    output = spec.front(*arguments, backend=backend)
    grad = torch.ones_like(output)
    return lambda: torch.autograd.grad(output, leaves, grad, retain_graph=True)


def peak_mb(spec: OpSpec, workload: Workload, backend: str, device: torch.device, inputs: list[Any],
            limit_s: float = math.inf) -> float | None:
    """MiB one timed call needs beyond its inputs. CUDA: max_memory_allocated over the allocated memory before
    the call. CPU: the peak-RSS increase measured in a fresh Python process (tracemalloc does not see torch, and
    in this process memory freed by earlier calls and kept by the allocator could hide a later call's)."""
    if device.type == "cuda":
        call = closure(spec, workload, inputs, backend)
        before = torch.cuda.memory_allocated(device) / 2**20
        return cuda_peak_mb(call, device) - before
    if device.type != "cpu":
        return None
    code = (f"import sys, torch; torch.set_num_threads({torch.get_num_threads()}); "
            "from asr_bench.ops.bench import _child_peak_mb; "
            f"print(_child_peak_mb({spec.name!r}, {workload.name!r}, {backend!r}))")
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=limit_s if math.isfinite(limit_s) else None)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def _child_peak_mb(op: str, name: str, backend: str) -> float:
    """In a fresh process: build the workload's inputs, load the backends, then the peak of one call."""
    device = torch.device("cpu")
    spec = get_op(op)
    workload = next(w for w in spec.workloads if w.name == name)
    spec.bench_backends(device)  # compiled modules loaded before the measurement, not during it
    call = closure(spec, workload, list(workload.make(device)), backend)
    return cpu_peak_increase_mb(call)


def rows(device: torch.device, only: str | None = None, repeats: int = 3, max_reference_cost: float = math.inf,
         workload_filter: str | None = None, memory: bool = False,
         limit_s: float = DEFAULT_LIMIT_S) -> Iterator[dict[str, Any]]:
    """One row per (workload, backend), yielded as soon as it is measured: seconds and thread_seconds (medians),
    speed-up over the torch reference, GFLOP/s where the op declares its FLOPs; with `memory`, also the call's
    peak memory (`peak_mb`) and its ratio to the reference's (`memory_vs_torch`). A row past `limit_s` seconds
    is skipped with a note saying so."""
    for spec in op_specs():
        if only and spec.name != only:
            continue
        for workload in spec.workloads:
            if workload_filter and workload_filter not in workload.name:
                continue
            yield from _workload_rows(spec, workload, device, repeats, max_reference_cost, memory, limit_s)


def _workload_rows(spec: OpSpec, workload: Workload, device: torch.device, repeats: int,
                   max_reference_cost: float, memory: bool, limit_s: float) -> Iterator[dict[str, Any]]:
    inputs = list(workload.make(device))
    forward = workload.direction == "forward"
    work = spec.flops(*inputs) if spec.flops is not None and forward else None
    rate = spec.element_rate if forward else None
    evaluations = rate.count(*inputs) if rate is not None else None
    reference = reference_peak = None
    for backend in spec.bench_backends(device):
        row: dict[str, Any] = {"op": spec.name, "workload": workload.name, "backend": backend,
                               "device": device.type, "repeats": repeats, "threads": torch.get_num_threads(),
                               "seconds": None, "thread_seconds": None, "speedup": None, "gflop_per_s": None,
                               "elements_per_s": None, "element_unit": rate.unit if rate else None,
                               "percent_of_function": None, "function": rate.function if rate else None}
        if backend in workload.timed_once and workload.reference_cost > max_reference_cost:
            yield {**row, "note": "reference skipped (--max-reference-cost)"}
            continue
        # The reference is the slow one: one warm-up-free timing of it is already long.
        once = backend in workload.timed_once
        try:
            with time_limit(limit_s):
                seconds, thread_seconds = time_call(closure(spec, workload, inputs, backend), device,
                                                    1 if once else repeats, warmup=0 if once else 1)
        except OverLimit:
            yield {**row, "note": f"skipped: over the {limit_s:g} s limit per row (--workload-limit-s)"}
            continue
        except Exception as error:  # noqa: BLE001 - a failure is data, the table goes on
            yield {**row, "note": f"error: {error}"}
            continue
        reference = seconds if backend == "torch" else reference
        row.update(seconds=seconds, thread_seconds=thread_seconds, note="",
                   speedup=(reference / seconds) if reference else None,
                   gflop_per_s=work / seconds / 1e9 if work is not None and seconds > 0 else None)
        if rate is not None and evaluations and seconds > 0 and backend != "torch":
            limit = function_rate(rate.function, device)
            row.update(elements_per_s=evaluations / seconds, percent_of_function=100.0 * evaluations / seconds / limit)
        if memory:
            peak = peak_mb(spec, workload, backend, device, inputs, limit_s)
            reference_peak = peak if backend == "torch" else reference_peak
            row.update(peak_mb=peak, memory_vs_torch=(peak / reference_peak) if peak is not None and
                       reference_peak else None)
        yield row


def run(device: torch.device, only: str | None = None, repeats: int = 3, max_reference_cost: float = math.inf,
        workload_filter: str | None = None, memory: bool = False,
        limit_s: float = DEFAULT_LIMIT_S) -> list[dict[str, Any]]:
    """Every row of `rows`, as a list."""
    return list(rows(device, only, repeats, max_reference_cost, workload_filter, memory, limit_s))


def table_header(memory: bool) -> str:
    extra = f" {'peak':>10s} {'mem/torch':>9s}" if memory else ""
    return (f"{'op':14s} {'workload':30s} {'backend':9s} {'time':>10s} {'cpu(thread)':>11s} {'vs torch':>9s} "
            f"{'GFLOP/s':>8s} {'elements':>24s}{extra}  note")


def table_line(row: dict[str, Any], memory: bool) -> str:
    secs = "-" if row["seconds"] is None else f"{row['seconds'] * 1e3:9.1f}ms"
    cpu = "-" if row.get("thread_seconds") is None else f"{row['thread_seconds'] * 1e3:9.1f}ms"
    ratio = "-" if row["speedup"] is None else f"{row['speedup']:8.{1 if row['speedup'] >= 1 else 3}f}x"
    rate = "-" if row.get("gflop_per_s") is None else f"{row['gflop_per_s']:8.2f}"
    elements = "-"
    if row.get("elements_per_s") is not None:
        elements = (f"{row['elements_per_s'] / 1e9:.2f} G{row['element_unit']}/s "
                    f"{row['percent_of_function']:.0f}% {row['function']}")
    extra = ""
    if memory:
        peak = "-" if row.get("peak_mb") is None else f"{row['peak_mb']:8.1f}MB"
        share = "-" if row.get("memory_vs_torch") is None else f"{row['memory_vs_torch']:9.3f}"
        extra = f" {peak:>10s} {share:>9s}"
    return (f"{row['op']:14s} {row['workload']:30s} {row['backend']:9s} {secs:>10s} {cpu:>11s} {ratio:>9s} "
            f"{rate:>8s} {elements:>24s}{extra}  {row['note']}")


def format_table(measured: list[dict[str, Any]]) -> str:
    memory = any("peak_mb" in row for row in measured)
    return "\n".join([table_header(memory), *(table_line(row, memory) for row in measured)])


class _Parser(argparse.ArgumentParser):
    """A bad argument is a one-line UserError (exit 2), as in every other command, not a 5-line usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}. See `{self.prog} --help`.")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="bench-ops", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", help="one op, e.g. rasterize")
    parser.add_argument("--workload", help="only workloads whose name contains this text")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per compiled backend (median)")
    parser.add_argument("--max-reference-cost", type=float, default=math.inf,
                        help="skip the torch reference on workloads costlier than this (x4 720 ~ 2.9)")
    parser.add_argument("--workload-limit-s", type=float, default=DEFAULT_LIMIT_S,
                        help=f"seconds one workload may take on one backend (default {DEFAULT_LIMIT_S:g}; 0: no "
                             "limit); past it the row is reported as skipped")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory column (on CPU each peak is one more call in a fresh process)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench-ops: --device cuda asked but no CUDA device is visible; use --device cpu.", file=sys.stderr)
        return 2
    known_ops = sorted(spec.name for spec in op_specs())
    if args.only and args.only not in known_ops:
        print(f"bench-ops: unknown op '{args.only}'; known: {', '.join(known_ops)}.", file=sys.stderr)
        return 2
    if args.workload_limit_s < 0:
        print("bench-ops: --workload-limit-s must be >= 0 (0: no limit).", file=sys.stderr)
        return 2
    memory = not args.no_memory
    limit = args.workload_limit_s or math.inf
    if not args.json:
        print(table_header(memory), flush=True)
    for row in rows(torch.device(args.device), args.only, args.repeats, args.max_reference_cost, args.workload,
                    memory=memory, limit_s=limit):
        print(dumps(row) if args.json else table_line(row, memory), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(UserError.exit_code)
