"""Timing one model call: warm-up, then repeats until the median is known well enough, synchronised so the
GPU's queue is included.

CUDA calls are timed with CUDA events (device time between two markers, no host jitter); elsewhere with
`perf_counter` around the call plus a synchronise. The median, not the mean: one preempted repeat on a busy
machine must not move the number. How many repeats: at least `repeats`, then more until the distribution-free
95% interval of the median (order statistics) is within `rel_ci` of it, or `max_repeats` calls, or `max_seconds`
of timed calls — whichever comes first. min, max, IQR and the count are stored beside the median.
One-time setup inside a call (a compiled op built or loaded on first use, asr_bench.stages.one_time_setup) is
subtracted from that call's time: it is not the method's cost.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ..stages import SetupEvent, setup_events, setup_seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(milliseconds, output) of one call, less the one-time setup done inside it."""
    setup = setup_seconds()
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(device)
        ms = float(start.elapsed_time(end))
    else:
        begin = time.perf_counter()
        out = fn()
        synchronize(device)
        ms = (time.perf_counter() - begin) * 1000.0
    return max(ms - (setup_seconds() - setup) * 1000.0, 0.0), out


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of `repeats` calls to `fn`, after `warmup` untimed calls."""
    return time_until_stable(fn, device, warmup, repeats, repeats, rel_ci=math.inf, max_seconds=math.inf).times


class Timings(NamedTuple):
    """What `time_until_stable` measured: the timed calls' milliseconds, the last call's output (a result the
    caller may reuse), and the one-time setup taken out of the timed calls (empty almost always)."""

    times: list[float]
    output: Any
    setup: list[SetupEvent]


def time_until_stable(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, max_repeats: int,
                      rel_ci: float, max_seconds: float) -> Timings:
    """Time calls to `fn` (at least `repeats`) after `warmup` untimed ones, until the median is known well enough."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    setup_before = len(setup_events())
    times: list[float] = []
    out = None
    while True:
        ms, out = timed(fn, device)
        times.append(ms)
        if len(times) >= max_repeats:
            break
        if len(times) >= repeats and (median_interval_ratio(times) <= rel_ci or sum(times) / 1000.0 >= max_seconds):
            break
    return Timings(times, out, setup_events()[setup_before:])


def median_interval(times: list[float], z: float = 1.96) -> tuple[float, float]:
    """The distribution-free ~95% interval of the median: order statistics n/2 -+ z*sqrt(n)/2 (1-based)."""
    ordered = sorted(times)
    n = len(ordered)
    low = max(1, math.floor(n / 2 - z * math.sqrt(n) / 2))
    high = min(n, math.ceil(n / 2 + z * math.sqrt(n) / 2 + 1))
    return ordered[low - 1], ordered[high - 1]


def median_interval_ratio(times: list[float]) -> float:
    """Half-width of the median's interval relative to the median (inf for fewer than 2 calls)."""
    if len(times) < 2:
        return math.inf
    low, high = median_interval(times)
    middle = statistics.median(times)
    return (high - low) / (2 * middle) if middle > 0 else math.inf


def median_ms(times: list[float]) -> float | None:
    return float(statistics.median(times)) if times else None


def timing_stats(times: list[float]) -> dict[str, Any]:
    """Median, min, max, interquartile range and count: what the report shows as `median (min-max)`; the timed
    calls themselves too, so two methods' times can be tested, not only their medians compared."""
    if not times:
        return {"time_ms": None, "time_min_ms": None, "time_max_ms": None, "time_iqr_ms": None, "time_repeats": 0,
                "time_samples_ms": []}
    if len(times) >= 2:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
        iqr = q3 - q1
    else:
        iqr = 0.0
    return {"time_ms": median_ms(times), "time_min_ms": min(times), "time_max_ms": max(times),
            "time_iqr_ms": iqr, "time_repeats": len(times),
            "time_samples_ms": [float(t) for t in times]}  # every timed call: the paired test on times reads them
