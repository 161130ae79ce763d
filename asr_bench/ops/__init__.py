"""Custom ops, one package each (`asr_bench/ops/<op>/`: front, reference, cases, `SPEC`), with interchangeable
backends (cuda > cpp > torch reference).

    from asr_bench.ops import rasterize, meta_upscale, selective_scan, live_backends
    with ops.backend_log() as used: ...      # {op: backend} the calls inside actually ran (asr_bench/ops/usage.py)

The fronts share their package's name, so each is bound here as the function (not the subpackage). The
meta-upscale and selective-scan fronts are imported on first use, so a broken op never breaks another.
"""
from __future__ import annotations

import importlib
from typing import Any

from .rasterize import rasterize
from .usage import backend_log, reset_used_backends, used_backends

_LAZY = {
    "meta_upscale": ("asr_bench.ops.meta_upscale", "meta_upscale"),
    "selective_scan": ("asr_bench.ops.selective_scan", "selective_scan"),
    "live_backends": ("asr_bench.ops.backends", "live_backends"),
    "backend_status": ("asr_bench.ops.backends", "backend_status"),
}

__all__ = ["rasterize", "backend_log", "used_backends", "reset_used_backends", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'asr_bench.ops' has no attribute '{name}'")
    module_name, attr = _LAZY[name]
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value  # importing the subpackage bound the module object under this name: rebind it
    return value
