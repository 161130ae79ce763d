"""Checkpoints that say what they are: `detect_checkpoint` asks every registered method's detector (and, through
them, every registered encoder's shape reader), built-ins and entry-point plugins alike.

The machinery is `asr_bench.detection` (below the registry; `asr_bench.models.build_model` uses it when no
method is named); each method's detector lives beside the method (`asr_bench/methods/<name>/detect.py`), each
encoder's shape reader in its spec beside the encoder (`asr_bench/encoders/<name>.py`), the shape-reading kit in
`asr_bench.shapes`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .detection import (Detection, Detector, choose, preset_key, preset_name, read_parts, read_shapes)
from .detection import detect_checkpoint as _detect_with
from .detection import detect_parts as _detect_parts_with
from .detection import method_presets as _presets_of
from .encoders import UnsupportedFamily
from .registry import get_method, method_specs
from .shapes import StateDict

__all__ = ["Detection", "Detector", "UnsupportedFamily", "choose", "detect_checkpoint", "detect_parts",
           "method_presets", "preset_key", "preset_name", "read_parts", "read_shapes"]


def detect_checkpoint(checkpoint: Any) -> Detection:
    """Method, encoder and preset of a file, a folder, a loaded dict or GSASR's {'encoder', 'decoder'} pair.

    Raises a one-line `UserError` naming the candidates and what was missing when the file is ambiguous
    or unknown, and `UnsupportedFamily` for a recognised architecture we do not implement.
    """
    return _detect_with(checkpoint, method_specs())


def detect_parts(parts: Mapping[str, StateDict], meta: Mapping[str, Any], source: str) -> Detection:
    """Detection on unwrapped state dicts (the layout of `checkpoints.unwrap`'s `Weights`)."""
    return _detect_parts_with(parts, meta, source, method_specs())


def method_presets(method: str) -> list[tuple[str, Any]]:
    """(`method.tag` name, preset) of a registered method."""
    return _presets_of(get_method(method))
