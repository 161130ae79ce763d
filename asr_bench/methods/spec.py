"""What a method declares about itself: `MethodSpec` (builder, encoders, presets, options, claims, detector),
its `Preset`s (official checkpoint families, as data) and `Option`s.

A method package (`asr_bench/methods/<name>/`, or an entry-point plugin) ends with `METHODS`, a list of these;
`asr_bench.registry` gathers them. This module sits below the methods and the registry: it names no method.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..blocks import InputRange
from ..checkpoints import Weights
from ..detection import Detector
from ..errors import UnknownName, UserError
from ..upsampler import ANY_SCALE, Upsampler
from ..weightfiles import WeightFile

TILING_POLICIES = ("allowed", "internal", "discouraged")
DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Option:
    """One keyword a method's builder accepts: a line of help and, where the values are few, the allowed ones."""

    help: str
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Preset:
    """One official checkpoint family, as data: `method.tag`, the encoder and its args, the method's args, the
    input normalisation and where the official weights come from.

    `multiple` overrides the method's LR-size multiple (SwinIR's window, GSASR's denominator);
    `checkpoint_keys` is the order in which a BasicSR container's `params_ema` / `params` are tried (the
    official test configs differ per family); `aliases` are old names, accepted with a DeprecationWarning.
    """

    name: str
    encoder: str
    encoder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    method_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    normalisation: InputRange = InputRange()
    weights: tuple[WeightFile, ...] = ()
    multiple: int | None = None
    checkpoint_keys: tuple[str, ...] = ("params_ema", "params")
    aliases: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[-1]


def no_conversion(model: Upsampler, weights: Weights) -> Mapping[str, torch.Tensor]:
    """The default `MethodSpec.convert`: the checkpoint already uses the model's own key names."""
    return weights.single()


@dataclass(frozen=True)
class MethodSpec:
    """What a plugin declares, and the one place each of these facts is written.

    - `builder(encoder, preset, weights, **options) -> Upsampler` makes the network (random init); `weights`
      (an unwrapped `Weights`, or None) is there only to read shapes from (e.g. which scales a file has).
    - `convert(model, weights) -> state dict` renames the official keys to the model's own; `build_model`
      then loads it strictly and sets `weights_loaded`.
    - `options`: the keywords the builder takes; anything else is refused before the builder runs.
    - `scales`, `dtypes`, `min_size`, `multiple` (a preset may override it), `tiling`: copied onto the
      model, checked by its `upscale` and by the runner; the smoke and precision tests check each claim.
    - `detector`: how its checkpoints are recognised (`asr_bench.detection.Detector`); None: never detected,
      always named.
    """

    name: str
    builder: Callable[..., Upsampler]
    encoders: tuple[str, ...]
    scales: str | Collection[float] = ANY_SCALE
    presets: Mapping[str, Preset] | Sequence[Preset] = field(default_factory=dict)
    options: Mapping[str, Option] = field(default_factory=dict)
    convert: Callable[[Upsampler, Weights], Mapping[str, torch.Tensor]] = no_conversion
    dtypes: tuple[str, ...] = ("fp32",)
    min_size: int = 1
    multiple: int = 1
    tiling: str = "allowed"
    needs_weights: bool = True
    description: str = ""
    citation: str = ""
    detector: Detector | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.presets, Mapping):
            object.__setattr__(self, "presets", {p.name: p for p in self.presets})
        if "." in self.name:
            raise UserError(f"method name '{self.name}' must not contain '.' (presets are named 'method.tag').")
        for preset in self.presets.values():
            if preset.method != self.name or "." not in preset.name:
                raise UserError(f"preset '{preset.name}' of {self.name} must be named '{self.name}.<tag>'.")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad or self.tiling not in TILING_POLICIES:
            raise UserError(f"method {self.name}: dtypes must be among {DTYPES} and tiling one of "
                            f"{TILING_POLICIES}; got dtypes {self.dtypes}, tiling '{self.tiling}'.")

    def preset_named(self, name: str) -> Preset:
        """A preset by its name, or (deprecated, for one release) by its old name or bare tag."""
        if name in self.presets:
            return self.presets[name]
        old = {alias: p for p in self.presets.values() for alias in (*p.aliases, p.tag)}
        if name in old:
            warnings.warn(f"preset name '{name}' is deprecated; use '{old[name].name}'.", DeprecationWarning,
                          stacklevel=3)
            return old[name]
        raise UnknownName(f"preset of {self.name}", name, self.presets)

    def preset_for(self, encoder: str | None, preset: str | None) -> Preset | None:
        """The named preset, else the first whose encoder matches, else None."""
        if preset is not None:
            return self.preset_named(preset)
        return next((p for p in self.presets.values() if p.encoder == encoder), None)

    def size_multiple(self, preset: Preset | None) -> int:
        return preset.multiple if preset is not None and preset.multiple is not None else self.multiple
