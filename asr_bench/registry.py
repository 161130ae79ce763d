"""The method registry.

A plugin is a module that defines `METHODS`, a list of `MethodSpec`. Modules in `asr_bench.methods` (the
repo's `methods/` folder) are discovered by name; external packages expose a module through the entry-point
group `asr_bench.methods`. Nothing registers itself at import time: the registry reads `METHODS` from each
module the first time a method is asked for, so one broken plugin is reported, not fatal to the others.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from .checkpoints import Checkpoint
from .errors import MissingFile, UnknownName, UserError
from .upsampler import ANY_SCALE, Upsampler

ENTRY_POINT_GROUP = "asr_bench.methods"


@dataclass(frozen=True)
class Preset:
    """One official checkpoint family: which encoder, its args, and the method's own args.

    `encoder_kwargs` and `method_kwargs` are passed to the builder; normalisation is part of
    `method_kwargs` because it belongs to the method, not the encoder.
    """

    name: str
    encoder: str
    encoder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    method_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class MethodSpec:
    """What a plugin declares. `builder(encoder, checkpoint, preset, **kwargs) -> Upsampler`."""

    name: str
    builder: Callable[..., Upsampler]
    encoders: tuple[str, ...]
    scales: str | Collection[float] = ANY_SCALE
    presets: Mapping[str, Preset] = field(default_factory=dict)
    description: str = ""
    citation: str = ""
    needs_weights: bool = True

    def preset_for(self, encoder: str | None, preset: str | None) -> Preset | None:
        """The named preset, else the first whose encoder matches, else None."""
        if preset is not None:
            if preset not in self.presets:
                raise UnknownName(f"preset of {self.name}", preset, self.presets)
            return self.presets[preset]
        return next((p for p in self.presets.values() if p.encoder == encoder), None)


_METHODS: dict[str, MethodSpec] = {}
_BROKEN: dict[str, str] = {}
_LOADED = False


def _builtin_modules() -> list[ModuleType]:
    """The repo's methods/ modules, as `asr_bench.methods.<name>`, installed or run from a checkout."""
    try:
        package = importlib.import_module("asr_bench.methods")
    except ModuleNotFoundError:
        package = _package_from_checkout()
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"asr_bench.methods.{name}"))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            _BROKEN[name] = f"{type(exc).__name__}: {exc}"
    return modules


def _package_from_checkout() -> ModuleType:
    """Running from a source checkout that was not installed: methods/ sits beside asr_bench/."""
    folder = Path(__file__).resolve().parent.parent / "methods"
    spec = importlib.util.spec_from_file_location(
        "asr_bench.methods", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("asr_bench.methods")
    module = importlib.util.module_from_spec(spec)
    sys.modules["asr_bench.methods"] = module
    spec.loader.exec_module(module)
    return module


def _entry_point_modules() -> list[ModuleType]:
    modules = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            modules.append(ep.load())
        except Exception as exc:  # noqa: BLE001
            _BROKEN[ep.name] = f"{type(exc).__name__}: {exc}"
    return modules


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in _builtin_modules() + _entry_point_modules():
        for spec in getattr(module, "METHODS", []):
            register(spec)
    for name, why in _BROKEN.items():
        warnings.warn(f"method plugin '{name}' failed to import and was skipped ({why})", stacklevel=2)


def register(spec: MethodSpec) -> None:
    """Add a method; a second plugin claiming the same name is an error, not a silent override."""
    if spec.name in _METHODS and _METHODS[spec.name] is not spec:
        raise UserError(f"two plugins register the method '{spec.name}'; rename one of them.")
    _METHODS[spec.name] = spec


def get_method(name: str) -> MethodSpec:
    _load()
    if name not in _METHODS:
        raise UnknownName("method", name, _METHODS, hint="See `python run_bench.py list`.")
    return _METHODS[name]


def list_methods() -> list[str]:
    _load()
    return sorted(_METHODS)


def method_specs() -> list[MethodSpec]:
    _load()
    return [_METHODS[n] for n in sorted(_METHODS)]


def broken_plugins() -> dict[str, str]:
    _load()
    return dict(_BROKEN)


def build_model(
    method: str | None = None,
    encoder: str | None = None,
    checkpoint: Checkpoint = None,
    device: str = "cpu",
    preset: str | None = None,
    **kwargs: Any,
) -> Upsampler:
    """Build a method on an encoder, load its checkpoint strictly, move it to `device`, eval mode.

    With no method, the checkpoint says what it is (`asr_bench.detect_checkpoint`)."""
    if method is None:
        from .detect import resolve

        method, encoder, preset, kwargs = resolve(checkpoint, encoder, preset, kwargs)
    spec = get_method(method)
    if encoder is None:
        encoder = spec.encoders[0]
    if encoder not in spec.encoders:
        raise UnknownName(f"encoder for {method}", encoder, spec.encoders)
    if isinstance(checkpoint, (str, Path)) and not Path(checkpoint).expanduser().exists():
        raise MissingFile("checkpoint file", checkpoint,
                          "Check the path, or omit the checkpoint to benchmark random weights.")
    model = spec.builder(encoder=encoder, checkpoint=checkpoint, preset=spec.preset_for(encoder, preset), **kwargs)
    model.method = spec.name
    return model.to(device).eval()
