"""asr-bench: a comparative benchmark suite for arbitrary-scale super-resolution.

Public API (everything else is internal)::

    import asr_bench as ab
    model = ab.build_model("liif", preset="liif.edsr-baseline", pretrained=True)   # the official file, found
    #   where a run finds it (checkpoint_dirs=[...], $ASR_BENCH_WEIGHTS, the cache, the Hugging Face Hub cache)
    model = ab.build_model("liif", "edsr-baseline", checkpoint="edsr-baseline-liif.pth")
    model = ab.build_model(preset="rt4ksr.x2", checkpoint="rt4ksr_x2.pth")   # presets: ab.all_presets()
    sr = model.upscale(lr, scale=3.5)
    ab.metrics.psnr(sr, hr, crop=4, y_channel=True)
    ab.data.imresize(img, scale=1 / 4)
    ab.detect_checkpoint("file.pth")          # Detection(method, encoder, preset, reason)
    ab.results.load("results/quick")          # a run folder's cases and images as DataFrames
    model = ab.build_model(checkpoint="file.pth")

Submodules (and torch with them) are imported on first use, so importing the package is cheap (`asr-bench
--help`, `--version` and a config mistake never load torch) and one broken part cannot break the others.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import UnsupportedScale, UserError

__version__ = "0.1.0"

_LAZY = {
    "build_model": ("asr_bench.models", "build_model"),
    "list_methods": ("asr_bench.registry", "list_methods"),
    "all_presets": ("asr_bench.registry", "all_presets"),
    "get_preset": ("asr_bench.registry", "get_preset"),
    "Upsampler": ("asr_bench.upsampler", "Upsampler"),
    "metrics": ("asr_bench.metrics", None),
    "data": ("asr_bench.data", None),
    "ops": ("asr_bench.ops", None),
    "results": ("asr_bench.results", None),
    "list_encoders": ("asr_bench.encoders", "list_encoders"),
    "list_datasets": ("asr_bench.data.catalogue", "list_datasets"),
    "list_protocols": ("asr_bench.protocols", "list_protocols"),
    "list_metrics": ("asr_bench.metrics", "list_metrics"),
    "detect_checkpoint": ("asr_bench.detect", "detect_checkpoint"),
    "Detection": ("asr_bench.detect", "Detection"),
}

__all__ = ["UserError", "UnsupportedScale", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'asr_bench' has no attribute '{name}'")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
