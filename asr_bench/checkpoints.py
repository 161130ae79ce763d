"""Reading checkpoints and loading state dicts strictly, with user-readable errors.

Official checkpoints come wrapped in many ways (`{'model': {'sd'}}` for LIIF, `{'params', 'params_ema'}`
for BasicSR-style repos, `{'state_dict'}` with `module.` prefixes for RT4KSR). Methods unwrap them with
the helpers here so that every failure reads the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import MissingFile, UserError

Checkpoint = str | Path | Mapping[str, Any] | None


def read_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """torch.load on CPU; official files pickle plain containers, but some also carry optimiser objects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFile("checkpoint file", path, "Check the path, or omit the checkpoint to benchmark random weights.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - fall back for checkpoints that pickle optimiser classes
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); "
                            "is it a PyTorch .pth file?") from exc


def as_state_dict(checkpoint: Checkpoint) -> Mapping[str, torch.Tensor] | Mapping[str, Any]:
    """A path or an already loaded object, read into a mapping."""
    if checkpoint is None:
        raise UserError("no checkpoint given")
    if isinstance(checkpoint, (str, Path)):
        return read_checkpoint(checkpoint)
    return checkpoint


def pick(container: Mapping[str, Any], *keys: str, what: str = "checkpoint") -> Any:
    """The first of `keys` present in `container` (e.g. 'params_ema' before 'params')."""
    for key in keys:
        if key in container:
            return container[key]
    raise UserError(f"{what} has none of the keys {list(keys)} (it has {sorted(container)[:8]}); "
                    "is it a checkpoint of this method?")


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop `prefix` (e.g. 'module.') from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with a one-line error listing what is missing, unexpected or misshaped."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshaped = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
                 for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise UserError(f"{what} does not match the model: {'; '.join(parts)}. "
                        "Check the method, encoder and preset match the checkpoint.")
    module.load_state_dict(dict(sd), strict=True)
