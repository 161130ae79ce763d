"""Timing one model call: warm-up, then the median of repeats, synchronised so the GPU's queue is included.

CUDA calls are timed with CUDA events (device time between two markers, no host jitter); elsewhere with
`perf_counter` around the call plus a synchronise. The median, not the mean: one preempted repeat on a busy
machine must not move the number.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of `repeats` calls to `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(float(start.elapsed_time(end)))
        else:
            begin = time.perf_counter()
            fn()
            synchronize(device)
            times.append((time.perf_counter() - begin) * 1000.0)
    return times


def median_ms(times: list[float]) -> float | None:
    return float(statistics.median(times)) if times else None
