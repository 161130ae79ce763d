"""Peak memory of one model call.

CUDA: `max_memory_allocated` after `reset_peak_memory_stats` (weights + activations, the number papers report).
CPU: the increase of the process's peak RSS over its RSS just before the call. The peak is a high-water mark
that only rises, so it is reset first (Linux: `/proc/self/clear_refs` with "5"); where it cannot be reset the
measurement is only meaningful in a fresh process, which is why the runner measures CPU memory in a new
worker process per case: an earlier, larger case can never hide a later one.
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CUDA_KIND = "cuda max_memory_allocated"
CPU_KIND = "cpu peak RSS increase"


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_kb() -> int:
    peak = _status_kb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # macOS reports bytes


def cpu_peak_increase_mb(fn: Callable[[], Any]) -> float:
    """MiB by which the peak RSS during `fn()` exceeds the RSS before it."""
    before = _status_kb("VmRSS")
    _reset_peak_rss()
    if before is None:
        before = _peak_rss_kb()
    fn()
    return max(0, _peak_rss_kb() - before) / 1024.0


def cuda_peak_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """MiB of the CUDA caching allocator's peak during `fn()` (model weights and inputs included)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> tuple[float | None, str]:
    """(MiB, kind) on CUDA or CPU; (None, reason) on devices without a peak counter."""
    if device.type == "cuda":
        return cuda_peak_mb(fn, device), CUDA_KIND
    if device.type == "cpu":
        return cpu_peak_increase_mb(fn), CPU_KIND
    return None, f"not measured on {device.type}"
