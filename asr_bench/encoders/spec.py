"""What an encoder declares about itself: `EncoderSpec` (builder, capabilities, checkpoint namings, shape reader).

Each encoder module ends with its `ENCODERS`; `asr_bench.encoders.catalogue` gathers them (and those of entry-point
plugins, group `asr_bench.encoders`), and detection, the key maps and `build_encoder` loop over them. Nothing
here names a particular encoder.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..shapes import StateDict, same
from .capabilities import DEFAULT, Capabilities


class UnsupportedFamily(UserError):
    """A real architecture we recognise but do not implement yet (e.g. a LIIF-repo container of LTE)."""


@dataclass(frozen=True)
class EncoderRead:
    """What a shape reader found: our encoder name, its constructor arguments as the shapes give them, and the
    words for a detection's reason line."""

    name: str
    hyper: dict[str, Any]
    text: str


@dataclass(frozen=True)
class ShapeReader:
    """How one family's checkpoints are recognised and sized; one reader may serve several names of one network
    (EDSR and EDSR-baseline, MambaIR and MambaIR-light), and then says which name the shapes are.

    - `recognise(keys)`: the key names that make this family (prefix-free: a method's own parts are taken off).
    - `read(sd)`: an `EncoderRead`; a missing tensor (KeyError and the like) is reported as an incomplete file.
    - `expects`: the family's keys in words, for the error that lists what was expected.
    - `fallback`: its keys are shared with other families (SwinIR's with HAT and SRFormer): tried after every
      specific reader, plugins' included.
    """

    family: str
    recognise: Callable[[frozenset[str]], bool]
    read: Callable[[StateDict], EncoderRead]
    expects: str
    fallback: bool = False


# A checkpoint naming of an encoder: (canonical -> official names, extra official keys with their official
# values, whether the extras come first in the file). See `asr_bench.encoders.keymaps`.
Scheme = tuple[Callable[[nn.Module], dict[str, str]], Callable[[nn.Module], dict[str, torch.Tensor]], bool]


def identity_names(encoder: nn.Module) -> dict[str, str]:
    return {k: k for k in encoder.state_dict()}


def no_extras(encoder: nn.Module) -> dict[str, torch.Tensor]:
    return {}


def official_names(*schemes: str) -> dict[str, Scheme]:
    """Schemes in which the official key names are ours (every encoder but EDSR in LIIF's naming)."""
    return {name: (identity_names, no_extras, False) for name in schemes}


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder name, as registered.

    - `builder(**kwargs)` makes the module (random init); it has `.out_channels`.
    - `network`: the class the builder returns (whose instances the key `schemes` apply to and whose signature
      gives the defaults a detection is compared with).
    - `schemes`: the checkpoint namings it loads ('liif', 'igconv', ...).
    - `reader`: recognises its checkpoints and reads hyperparameters from their shapes (None: not detectable).
    - `arguments(declared)`: the builder's own arguments over the class defaults, with a preset's on top
      (HAT-L's depths, MambaIR-light's sizes); `matches(read, declared)` overrides the comparison where the
      name alone or one option decides (EDSR's sizes, RDN's config).
    """

    name: str
    builder: Callable[..., nn.Module]
    description: str
    capabilities: Capabilities = DEFAULT
    network: type[nn.Module] | None = None
    schemes: Mapping[str, Scheme] = field(default_factory=dict)
    reader: ShapeReader | None = None
    arguments: Callable[[Mapping[str, Any]], dict[str, Any]] = dict
    matches: Callable[[EncoderRead, Mapping[str, Any]], bool] | None = None

    def constructor_arguments(self, declared: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments a preset's encoder is built with: the class defaults, under the builder's own, under
        the preset's (`declared`)."""
        params = inspect.signature(self.network).parameters if self.network is not None else {}
        defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
        return {**defaults, **self.arguments(dict(declared))}

    def builds(self, read: EncoderRead, declared: Mapping[str, Any]) -> bool:
        """Whether this encoder with a preset's `declared` arguments has exactly the shapes `read` found."""
        if read.name != self.name:
            return False
        if self.matches is not None:
            return self.matches(read, declared)
        wanted = self.constructor_arguments(declared)
        return all(same(wanted.get(k), v) for k, v in read.hyper.items())
