"""`build_model`: a registered method on an encoder, its weights found (a file, a folder, detected from the file
when no method is named, or the preset's official files with `pretrained=True`), loaded strictly, on a device.

Above the registry (which only holds what the methods declare), detection (which asks the registered detectors)
and the weights resolution (where official files are): it is the one place that puts them together.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoints import Checkpoint, load_strict, unwrap
from .detection import resolve
from .errors import MissingFile, UserError
from .methods.spec import MethodSpec, Preset
from .registry import TORCH_DTYPES, check_dtype, check_options, choose_preset, declare, get_method, method_specs
from .upsampler import Upsampler
from .weights import resolve_preset


def build_model(
    method: str | None = None,
    encoder: str | None = None,
    checkpoint: Checkpoint = None,
    device: str = "cpu",
    preset: str | None = None,
    dtype: str = "fp32",
    param_keys: Sequence[str] | None = None,
    pretrained: bool | None = None,
    checkpoint_dirs: Sequence[str | Path] = (),
    **kwargs: Any,
) -> Upsampler:
    """Build a method on an encoder, load its checkpoint strictly, move it to `device` and `dtype`, eval mode.

    `preset` ("gsasr.rdn-enhanced") alone names the method too; with neither, the checkpoint says what it is
    (the registered methods' detectors, `asr_bench.detect_checkpoint`). `param_keys` overrides the preset's order of a BasicSR container's
    `params_ema` / `params`.

    `pretrained=True` (as in timm) loads the preset's official files, found where a run finds them
    (`checkpoint_dirs`, `$ASR_BENCH_WEIGHTS`, our cache, the Hugging Face Hub cache: `asr_bench.weights`), or
    raises one line naming the `asr-bench weights fetch` command. Without a checkpoint the default is
    `pretrained=False`: random weights, which `weights_loaded` and the model's repr say.
    """
    if method is None and preset is None and checkpoint is not None:
        method, encoder, preset, kwargs = resolve(checkpoint, encoder, preset, kwargs, method_specs())
    if method is None:
        if preset is None:
            raise UserError("name a method or a preset, e.g. build_model('liif') or "
                            "build_model(preset='rt4ksr.x2'); `asr-bench list` shows them.")
        method = preset.split(".", 1)[0]
    spec = get_method(method)
    encoder, chosen = choose_preset(spec, encoder, preset)
    check_options(spec, kwargs)
    check_dtype(spec, dtype)
    weights = None
    if pretrained and checkpoint is None:
        checkpoint = pretrained_checkpoint(spec, chosen, checkpoint_dirs)
    if checkpoint is not None:
        if isinstance(checkpoint, (str, Path)) and not Path(checkpoint).expanduser().exists():
            raise MissingFile("checkpoint file", checkpoint,
                              "Check the path, or omit the checkpoint to benchmark random weights.")
        keys = tuple(param_keys) if param_keys is not None else (
            chosen.checkpoint_keys if chosen is not None else ("params_ema", "params"))
        weights = unwrap(checkpoint, keys)
    model = spec.builder(encoder=encoder, preset=chosen, weights=weights, **kwargs)
    declare(model, spec, chosen)
    if weights is not None:
        load_strict(model, spec.convert(model, weights), f"{spec.name} checkpoint ({weights.source})")
        model.on_weights_loaded()
    model.weights_loaded = weights is not None or not spec.needs_weights
    model.weights_source = (weights.source if weights is not None else
                            "none needed" if not spec.needs_weights else "random (not pretrained)")
    return model.to(device=device, dtype=TORCH_DTYPES[dtype]).eval()


def pretrained_checkpoint(spec: MethodSpec, preset: Preset | None, checkpoint_dirs: Sequence[str | Path]) -> str:
    """The official checkpoint of `preset` (a file, or the folder of a pair), or a one-line error saying how to
    get it."""
    if preset is None:
        raise UserError(f"{spec.name} has no preset, so no official weights: pass checkpoint=... or "
                        "pretrained=False.")
    found = resolve_preset(preset.name, preset, checkpoint_dirs)
    if not found.declared:
        raise UserError(f"preset {preset.name} has no official weights; pass checkpoint=... or pretrained=False.")
    if not found.found:
        raise MissingFile(f"official weights of {preset.name} ({', '.join(found.missing)})",
                          ", ".join(found.looked_in),
                          f"Run `{found.fetch}`, or pass checkpoint_dirs=[folder holding them].")
    return found.checkpoint  # type: ignore[return-value]
