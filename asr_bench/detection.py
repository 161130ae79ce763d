"""Checkpoints that say what they are: the machinery that reads method, encoder and preset from a file's keys
and shapes by asking each registered spec (`asr_bench.detect` runs it over the registry).

A user holding an official file should not have to know which method, encoder and preset it belongs to.
As spandrel does, we read the architecture from the state dict, and each unit says how it is recognised: a
method's `MethodSpec.detector` (a `Detector`) names the keys and heads that make its files (LIIF's `encoder.*` +
`imnet.*`, Meta-RDN's `P2W.meta_block`, IGConv's hyper-network head under each encoder's name, RT4KSR's `hfb`,
GSASR's `gs_embedding`) and an encoder's `ShapeReader` (`asr_bench.encoders`) reads widths, depths, heads,
windows, expansions and RoPE from the shapes; those are matched against the method's presets' encoder
arguments by `choose`. Containers are taken off by `checkpoints.unwrap`, the one unwrapping (with a
memory-mapping reader here). Nothing here names a method or an encoder.

What no tensor shows (IGConv's `max_s`, a detector's `shapeless`) cannot be detected: presets that differ only
there are told apart by the official file name, else the default is taken and `reason` says so. Only shapes are
read, so detection works on meta tensors and never builds a model; `build_model` (and `asr-bench weights
verify`) then load the file strictly, which checks every key.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoints import read_checkpoint, unwrap
from .encoders.catalogue import encoder_matches, read_encoder
from .encoders.spec import EncoderRead, UnsupportedFamily
from .errors import UserError
from .shapes import StateDict

NO_ENCODER = EncoderRead("none", {}, "")     # what a method without an encoder (RT4KSR) detects its files with


@dataclass(frozen=True)
class Detection:
    """What a checkpoint is. `preset` is in the `method.tag` scheme (None: the method's default, e.g. an
    RT4KSR folder holding both scales); `options` are builder kwargs the file itself requires."""

    method: str
    encoder: str
    preset: str | None
    reason: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Detector:
    """How a method's checkpoints are recognised (a `MethodSpec`'s `detector`). Each hook gets the method's spec
    first and returns None where the file is not this method's:

    - `state(spec, sd, facts, where, container)`: one state dict (a container's facts: its kind, name, args);
    - `parts(spec, parts, where)`: a checkpoint of several files (GSASR's encoder + decoder);
    - `folder(spec, detections, source)`: a folder whose every file is this method's (RT4KSR's x2 + x3).
    `keys` says in words which keys make it (errors list every method's); `shapeless` names the method arguments
    no tensor shows, with what each changes (presets that differ only there are told apart by file name).
    """

    keys: str
    state: Callable[..., Detection | None] | None = None
    parts: Callable[..., Detection | None] | None = None
    folder: Callable[..., Detection | None] | None = None
    shapeless: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- entry


def detect_checkpoint(checkpoint: Any, specs: Sequence[Any]) -> Detection:
    """Method, encoder and preset of a file, a folder, a loaded dict or a {'encoder', 'decoder'} pair, asking
    the detectors of `specs` (registered `MethodSpec`s).

    Raises a one-line `UserError` naming the candidates and what was missing when the file is ambiguous
    or unknown, and `UnsupportedFamily` for a recognised architecture we do not implement.
    """
    parts, meta, source = read_parts(checkpoint)
    return detect_parts(parts, meta, source, specs)


def _detecting(specs: Sequence[Any]) -> list[tuple[Any, Detector]]:
    return [(spec, spec.detector) for spec in specs if getattr(spec, "detector", None) is not None]


def detect_parts(parts: Mapping[str, StateDict], meta: Mapping[str, Any], source: str,
                 specs: Sequence[Any]) -> Detection:
    """Detection on unwrapped state dicts: {"model": sd} for one file, {"encoder", "decoder"} for GSASR, one part
    per file stem for a folder (the layout of `checkpoints.unwrap`'s `Weights`)."""
    detecting = _detecting(specs)
    for spec, detector in detecting:
        if detector.parts is not None and (found := detector.parts(spec, parts, source)) is not None:
            return found
    if len(parts) == 1:
        return detect_state(next(iter(parts.values())), meta, source, specs)
    found = []
    for name, sd in sorted(parts.items()):
        try:
            found.append((name, detect_state(sd, {}, f"{source}/{name}", specs)))
        except UserError as exc:
            found.append((name, exc))
    detections = [d for _, d in found if isinstance(d, Detection)]
    if len(detections) == len(found):
        for spec, detector in detecting:
            if detector.folder is not None and all(d.method == spec.name for d in detections):
                if (combined := detector.folder(spec, detections, source)) is not None:
                    return combined
    listing = "; ".join(f"{name} = {d.preset or d.method}" if isinstance(d, Detection) else f"{name} = unknown"
                        for name, d in found)
    raise UserError(f"{source} holds {len(found)} checkpoints ({listing}); name one file instead.")


def detect_state(sd: StateDict, facts: Mapping[str, Any], where: str, specs: Sequence[Any]) -> Detection:
    """One state dict: the first method whose detector claims it; else a one-line error listing what each
    method's files hold (and which encoder the keys are, where they are one)."""
    container = facts.get("container", "a bare state dict") + (" with 'module.' prefixes" if "prefix" in facts else "")
    detecting = _detecting(specs)
    for spec, detector in detecting:
        if detector.state is not None and (found := detector.state(spec, sd, facts, where, container)) is not None:
            return found
    candidates = "; ".join(f"{spec.name} ({detector.keys})" for spec, detector in detecting)
    try:
        enc = read_encoder(sd, where)
    except UnsupportedFamily:
        raise
    except UserError:
        top = sorted({k.split(".")[0] for k in sd})
        raise UserError(f"{where}: not a checkpoint of a supported method (top-level names: {', '.join(top[:10])}); "
                        f"candidates: {candidates}.") from None
    raise UserError(f"{where} has {enc.text} encoder keys but no upsampler of a supported method ({candidates}); "
                    "if it is one part of a multi-file checkpoint (a GSASR encoder.pth), pass the folder holding "
                    "every part, or {'encoder': ..., 'decoder': ...}.")


def read_parts(checkpoint: Any) -> tuple[Mapping[str, StateDict], Mapping[str, Any], str]:
    """(parts, container facts, source) of a path, folder, pair or loaded dict (`checkpoints.unwrap`, the one
    unwrapping, with files memory-mapped)."""
    weights = unwrap(checkpoint, read=read_shapes)
    return weights.parts, weights.meta, weights.source


def read_shapes(path: Path) -> Any:
    """The checkpoint, memory-mapped where the format allows: detection reads shapes, so a 256 MB file costs
    no 256 MB read (the methods' loader reads it properly afterwards)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - legacy (non-zip) files and pickled optimiser objects: the full reader
        return read_checkpoint(path)


# --------------------------------------------------------------------------------------- preset choice


def choose(spec: Any, enc: EncoderRead, where: str, reason: str,
           extra: Callable[[Any], bool] = lambda preset: True) -> Detection:
    """The one preset of `spec` that builds this encoder and passes `extra`; presets that differ only in the
    detector's `shapeless` arguments are told apart by the official file name, else the default one is taken and
    the reason says so."""
    presets = method_presets(spec)
    shapeless = spec.detector.shapeless if getattr(spec, "detector", None) is not None else {}
    fits = [(name, p) for name, p in presets if (enc.name == "none" or encoder_matches(enc, p)) and extra(p)]
    if len(fits) > 1 and _shape_twins([p for _, p in fits], shapeless):
        name, note = _pick_twin(fits, where, reason, shapeless)
        return Detection(spec.name, enc.name, name, f"{reason}; {note}", dict(enc.hyper))
    if len(fits) == 1:
        name, preset = fits[0]
        fixed = [f"{k} {v}" for k, v in (preset.method_kwargs or {}).items() if k in shapeless]
        note = f"; {', '.join(fixed)} from the preset (no tensor shows it)" if fixed else ""
        return Detection(spec.name, enc.name, name, reason + note, dict(enc.hyper))
    known = ", ".join(name for name, _ in presets) or "(none)"
    if not fits:
        raise UserError(f"{where} is {reason}, but no {spec.name} preset builds it (presets: {known}); "
                        "the file may be a variant we do not ship.")
    raise UserError(f"{where} is {reason} and fits several presets ({', '.join(n for n, _ in fits)}); "
                    "pass preset= to choose.")


def _shape_twins(presets: list[Any], shapeless: Mapping[str, str]) -> bool:
    """Whether these presets build the same tensors: same encoder and arguments, method arguments equal but for
    `shapeless` ones."""
    def shape(p: Any) -> tuple:
        rest = {k: v for k, v in (p.method_kwargs or {}).items() if k not in shapeless}
        return p.encoder, repr(sorted(dict(p.encoder_kwargs or {}).items())), repr(sorted(rest.items()))

    return len({shape(p) for p in presets}) == 1


def _pick_twin(fits: list[tuple[str, Any]], where: str, reason: str,
               shapeless: Mapping[str, str]) -> tuple[str, str]:
    """(preset, note) among presets whose files have the same keys and shapes: the one whose official file has this
    file's name, else the one without a shapeless override; one line naming both otherwise."""
    def differs(p: Any) -> str:
        return ", ".join(f"{k} {v}" for k, v in (p.method_kwargs or {}).items() if k in shapeless) or "defaults"

    what = "; ".join(f"{k}: {text}" for k, text in shapeless.items())
    file = Path(where).name
    named = [n for n, p in fits if any(wf.filename == file for wf in p.weights)]
    if len(named) == 1:
        others = ", ".join(f"{n} ({differs(p)})" for n, p in fits if n != named[0])
        return named[0], (f"the keys and shapes are also those of {others}, which no tensor tells apart ({what}); "
                          f"the file name {file} is the official file of {named[0]}")
    defaults = [n for n, p in fits if not shapeless.keys() & set(p.method_kwargs or {})]
    if len(defaults) != 1:
        raise UserError(f"{where} is {reason} and fits {', '.join(f'{n} ({differs(p)})' for n, p in fits)} equally: "
                        f"they differ only where no tensor shows ({what}); pass preset: to choose.")
    default = defaults[0]
    others = [(n, p) for n, p in fits if n != default]
    use = " or ".join(f"preset: {n}" + (f" for {p.weights[0].filename}" if p.weights else "") for n, p in others)
    return default, (f"the same keys and shapes fit {', '.join(f'{n} ({differs(p)})' for n, p in others)}, which no "
                     f"tensor tells apart ({what}); taken as the default {default}: pass {use}")


def method_presets(spec: Any) -> list[tuple[str, Any]]:
    """(`method.tag` name, preset) of a method spec: the new-scheme names whatever the spec's keys."""
    return [(preset_name(spec.name, key, p), p) for key, p in spec.presets.items()]


def preset_name(method: str, key: str, preset: Any) -> str:
    """`method.tag`: presets named `x2` or `rdn-paper` (the old schemes) get the method in front."""
    name = getattr(preset, "name", key) or key
    return name if name.startswith(f"{method}.") else f"{method}.{name}"


def preset_key(spec: Any, name: str | None) -> str | None:
    """The key under which `spec.presets` holds the preset called `name` in the `method.tag` scheme."""
    if name is None or name in spec.presets:
        return name
    for key, preset in spec.presets.items():
        if preset_name(spec.name, key, preset) == name:
            return key
    return name


def resolve(checkpoint: Any, encoder: str | None, preset: str | None, kwargs: Mapping[str, Any],
            specs: Sequence[Any]) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """build_model's hook when no method is given: (method, encoder, preset key, kwargs) from the file."""
    if checkpoint is None:
        raise UserError("build_model needs a method name or a checkpoint to detect it from; "
                        "e.g. build_model('liif', 'edsr-baseline') or build_model(checkpoint='file.pth').")
    found = detect_checkpoint(checkpoint, specs)
    spec = next(s for s in specs if s.name == found.method)
    return (found.method, encoder or (found.encoder if found.encoder in spec.encoders else None),
            preset or preset_key(spec, found.preset), {**found.options, **kwargs})
