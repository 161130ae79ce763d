"""The registered encoders: the built-in modules' `ENCODERS`, then those of entry-point plugins (group
`asr_bench.encoders`), and the loops over them: `build_encoder`, `read_encoder` (which encoder a state dict is),
`encoder_matches` (whether a preset builds it).

Built-in modules are listed here in the order their shape readers are tried: readers whose keys only their
family has first (any order would do), `fallback` readers (SwinIR, whose keys HAT and SRFormer share) last,
after every plugin's.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import UnknownName, UserError
from ..plugins import entry_point_modules
from ..shapes import StateDict
from . import atd, edsr, hat, hit_srf, mambair, plksr, rcan, rdn, smfanet, srformer, swinir
from .capabilities import Capabilities
from .spec import EncoderRead, EncoderSpec, ShapeReader

ENTRY_POINT_GROUP = "asr_bench.encoders"
BUILTIN: tuple[ModuleType, ...] = (hat, atd, mambair, srformer, hit_srf, plksr, smfanet, rcan, rdn, edsr, swinir)

_SPECS: dict[str, EncoderSpec] = {}
_BROKEN: dict[str, str] = {}


def _plugin_encoders(module: ModuleType, where: str) -> list[EncoderSpec]:
    specs = getattr(module, "ENCODERS", [])
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, EncoderSpec) for s in specs):
        raise UserError(f"plugin {where}: ENCODERS must be a list of EncoderSpec, got {specs!r:.60}; "
                        "write ENCODERS = [EncoderSpec(name=..., builder=..., description=...)].")
    return list(specs)


def _load() -> dict[str, EncoderSpec]:
    if _SPECS:
        return _SPECS
    plugins, broken = entry_point_modules(ENTRY_POINT_GROUP)
    _BROKEN.update(broken)
    for module in (*BUILTIN, *plugins):
        try:
            specs = _plugin_encoders(module, module.__name__)
        except UserError as exc:
            _BROKEN[module.__name__] = str(exc)
            continue
        for spec in specs:
            if spec.name in _SPECS and _SPECS[spec.name] is not spec:
                raise UserError(f"two plugins register the encoder '{spec.name}'; rename one of them.")
            _SPECS[spec.name] = spec
    for name, why in _BROKEN.items():
        warnings.warn(f"encoder plugin '{name}' failed to import and was skipped ({why})", stacklevel=3)
    return _SPECS


def encoder_specs() -> list[EncoderSpec]:
    """Every registered encoder, built-ins first (in `BUILTIN` order), then plugins."""
    return list(_load().values())


def broken_encoder_plugins() -> dict[str, str]:
    _load()
    return dict(_BROKEN)


def list_encoders() -> list[str]:
    """The registered encoder names."""
    return sorted(_load())


def encoder_spec(name: str) -> EncoderSpec:
    specs = _load()
    if name not in specs:
        raise UnknownName("encoder", name, specs)
    return specs[name]


def encoder_description(name: str) -> str:
    return encoder_spec(name).description


def encoder_capabilities(name: str) -> Capabilities:
    """The capability flags of an encoder's default configuration (see `Capabilities`)."""
    return encoder_spec(name).capabilities


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised encoder; the module has `.out_channels` and returns LR-resolution features."""
    spec = encoder_spec(name)
    try:
        return spec.builder(**kwargs)
    except TypeError as exc:  # an option this encoder does not have
        raise UserError(f"encoder '{name}' got an unknown option ({exc}); "
                        f"see {spec.builder.__module__}.{spec.builder.__name__} for its options.") from exc


def spec_of(encoder: nn.Module) -> EncoderSpec:
    """The spec whose network this module is (for its checkpoint namings)."""
    found = next((s for s in encoder_specs() if s.network is not None and isinstance(encoder, s.network)), None)
    if found is None:
        networks = ", ".join(dict.fromkeys(s.network.__name__ for s in encoder_specs() if s.network is not None))
        raise UserError(f"{type(encoder).__name__} is not one of our encoders ({networks}); "
                        "build it with asr_bench.encoders.build_encoder.")
    return found


def shape_readers() -> list[ShapeReader]:
    """Each registered reader once, in the order they are tried: specific ones, then fallbacks."""
    readers = list(dict.fromkeys(s.reader for s in encoder_specs() if s.reader is not None))
    return [r for r in readers if not r.fallback] + [r for r in readers if r.fallback]


def read_encoder(sd: StateDict, what: str) -> EncoderRead:
    """Which of our encoders these (prefix-free) keys are, with the hyperparameters their shapes give."""
    keys = frozenset(sd)
    readers = shape_readers()
    for reader in readers:
        if reader.recognise(keys):
            try:
                return reader.read(sd)
            except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError, AttributeError):
                raise UserError(f"{what} has {reader.family} keys but lacks the tensors its sizes are read from "
                                "(first layers, conv_first/head); is the file complete?") from None
    top = sorted({k.split(".")[0] for k in keys})
    raise UserError(f"{what}: no known encoder in its keys (top-level names: {', '.join(top[:10])}); expected "
                    f"{', '.join(r.expects for r in readers)}.")


def encoder_matches(read: EncoderRead, preset: Any) -> bool:
    """Whether a preset builds exactly this encoder (its declared args over the encoder's defaults)."""
    if preset.encoder != read.name or read.name not in _load():
        return False
    return encoder_spec(read.name).builds(read, dict(getattr(preset, "encoder_kwargs", {}) or {}))


def encoder_arguments(name: str, declared: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments a preset's encoder is built with (see `EncoderSpec.constructor_arguments`)."""
    return encoder_spec(name).constructor_arguments(declared)
