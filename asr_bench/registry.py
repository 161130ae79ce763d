"""The method registry.

A plugin is a module that defines `METHODS`, a list of `MethodSpec` (`asr_bench.methods.spec`, re-exported
here). The packages in `asr_bench.methods` (one folder per method) are discovered by name; external packages expose a module through the entry-point
group `asr_bench.methods`. Nothing registers itself at import time: the registry reads `METHODS` from each
module the first time a method is asked for, so one broken plugin is reported, not fatal to the others.
`build_model` is in `asr_bench.models` (above this, detection and the weights resolution).
"""
from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch

from .errors import UnknownName, UserError, closest
from .methods.spec import DTYPES, TILING_POLICIES, MethodSpec, Option, Preset, no_conversion  # noqa: F401 - re-exported
from .plugins import entry_point_modules
from .upsampler import ANY_SCALE, Upsampler

ENTRY_POINT_GROUP = "asr_bench.methods"


_METHODS: dict[str, MethodSpec] = {}
_BROKEN: dict[str, str] = {}
_LOADED = False


def _builtin_modules() -> list[ModuleType]:
    """The built-in methods, `asr_bench.methods.<name>`: always from the same tree as this module."""
    package = importlib.import_module("asr_bench.methods")
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                   if info.ispkg and not info.name.startswith("_"))
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"asr_bench.methods.{name}"))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            _BROKEN[name] = f"{type(exc).__name__}: {exc}"
    return modules


def _entry_point_modules() -> list[ModuleType]:
    modules, broken = entry_point_modules(ENTRY_POINT_GROUP)
    _BROKEN.update(broken)
    return modules


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in _builtin_modules() + _entry_point_modules():
        try:
            specs = plugin_methods(module, module.__name__)
        except UserError as exc:
            _BROKEN[module.__name__] = str(exc)
            continue
        for spec in specs:
            register(spec)
    for name, why in _BROKEN.items():
        warnings.warn(f"method plugin '{name}' failed to import and was skipped ({why})", stacklevel=2)


def plugin_methods(module: ModuleType, where: str) -> list[MethodSpec]:
    """A plugin module's `METHODS`, checked: a list (or tuple) of MethodSpec; anything else is a one-line error."""
    methods = getattr(module, "METHODS", [])
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, MethodSpec) for m in methods):
        found = type(methods).__name__ if not isinstance(methods, (list, tuple)) else \
            f"a {type(methods).__name__} holding {next(type(m).__name__ for m in methods if not isinstance(m, MethodSpec))}"
        raise UserError(f"plugin {where}: METHODS must be a list of MethodSpec, got {found} ({methods!r:.40}); "
                        "write METHODS = [MethodSpec(name=..., builder=..., encoders=(...))].")
    return list(methods)


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


def all_presets() -> list[tuple[MethodSpec, Preset]]:
    """Every preset of every registered method, in method order."""
    return [(spec, preset) for spec in method_specs() for preset in spec.presets.values()]


def get_preset(name: str) -> Preset:
    """A preset by its `method.tag` name (old names still work for one release, with a DeprecationWarning)."""
    method = name.split(".", 1)[0]
    if "." not in name or method not in list_methods():
        raise UnknownName("preset", name, [p.name for _, p in all_presets()],
                          hint="Presets are named 'method.tag'; see `asr-bench list`.")
    return get_method(method).preset_named(name)


def choose_preset(spec: MethodSpec, encoder: str | None, preset: str | None) -> tuple[str, Preset | None]:
    """(encoder, preset) of a build: the named preset (its encoder unless one is given), else the encoder's first
    preset; a preset of another method or encoder is refused."""
    if preset is not None and preset.split(".", 1)[0] not in (spec.name, preset):
        raise UserError(f"preset '{preset}' is not a preset of {spec.name}; pick one of {', '.join(spec.presets)}.")
    chosen = spec.preset_for(encoder if encoder is not None or preset is not None else spec.encoders[0], preset)
    if encoder is None:
        encoder = chosen.encoder if chosen is not None else spec.encoders[0]
    if encoder not in spec.encoders:
        raise UnknownName(f"encoder for {spec.name}", encoder, spec.encoders)
    if chosen is not None and chosen.encoder != encoder:
        raise UserError(f"preset '{chosen.name}' is for encoder '{chosen.encoder}', not '{encoder}'; "
                        f"drop the encoder or pick a preset of {encoder}.")
    return encoder, chosen


def check_options(spec: MethodSpec, kwargs: Mapping[str, Any]) -> None:
    """Refuse a keyword the method does not declare (naming the closest one) or a value outside its choices."""
    for key, value in kwargs.items():
        if key not in spec.options:
            near = closest(key, spec.options)
            hint = f" Did you mean '{near}'?" if near else ""
            allowed = ", ".join(sorted(spec.options)) or "none"
            raise UserError(f"unknown option '{key}' for {spec.name}; its options: {allowed}.{hint}")
        choices = spec.options[key].choices
        if choices is not None and value not in choices:
            raise UserError(f"option {key}={value!r} of {spec.name} must be one of "
                            f"{', '.join(map(repr, choices))}.")


def check_dtype(spec: MethodSpec, dtype: str) -> None:
    if dtype not in spec.dtypes:
        raise UserError(f"method '{spec.name}' is not tested in {dtype} (it runs in {', '.join(spec.dtypes)}); "
                        "set precision to one of those.")


TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def declare(model: Upsampler, spec: MethodSpec, preset: Preset | None) -> None:
    """Copy the spec's claims onto the model, so that `upscale` enforces what the registry advertises."""
    own = model.__dict__.get("scales")
    if own is not None and spec.scales != ANY_SCALE and not set(map(float, own)) <= set(map(float, spec.scales)):
        raise UserError(f"method {spec.name}: the model claims scales {own} beyond the declared {spec.scales}.")
    model.method = spec.name
    model.scales = own if own is not None else spec.scales
    model.min_size = spec.min_size
    model.pad_multiple = spec.size_multiple(preset)
    model.tiling = spec.tiling
    model.dtypes = spec.dtypes
