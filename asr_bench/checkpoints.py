"""Reading checkpoints and loading state dicts strictly, with user-readable errors.

Official checkpoints come wrapped in many ways (`{'model': {'sd'}}` for LIIF, `{'params', 'params_ema'}`
for BasicSR-style repos, `{'state_dict'}` with `module.` prefixes for RT4KSR). Methods unwrap them with
the helpers here so that every failure reads the same way.

Checkpoints are data, not code: `read_checkpoint` never runs a pickle's code unless the user trusts the file
(`--trust-checkpoints`; README "Plugins are code, checkpoints are data").
"""
from __future__ import annotations

import contextlib
import contextvars
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import MissingFile, UserError

Checkpoint = str | Path | Mapping[str, Any] | None


def read_checkpoint(path: str | Path, trust: bool | None = None) -> Mapping[str, Any]:
    """A checkpoint's contents on CPU, read as data: `.safetensors` by safetensors, anything else by
    `torch.load(weights_only=True)`, which builds tensors and plain containers only.

    A file that needs full pickle (it names other classes or functions: optimiser objects, or a payload)
    could run code when read, so it is refused unless trusted: `trust=True`, or inside
    `trusting_checkpoints()` (what `--trust-checkpoints` / `trust_checkpoints: true` turn on for a run).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFile("checkpoint file", path, "Check the path, or omit the checkpoint to benchmark random weights.")
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _needs_pickle(exc):
            raise _unreadable(path, exc) from None
        if not (checkpoints_trusted() if trust is None else trust):
            raise UntrustedCheckpoint(path, _unsafe_globals(path, exc)) from None
    except Exception as exc:  # noqa: BLE001 - not a PyTorch file, truncated, ...: one line naming it
        raise _unreadable(path, exc) from None
    warnings.warn(f"checkpoint {path} is loaded with full pickle (trusted by --trust-checkpoints / "
                  "trust_checkpoints: true): it can run code; load only files from sources you trust.",
                  UserWarning, stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from None


class UntrustedCheckpoint(UserError):
    """A checkpoint that only full pickle can read (and so could run code), while checkpoints are not trusted."""

    def __init__(self, path: Path, names: list[str]) -> None:
        what = f" (it references {', '.join(names[:3])})" if names else ""
        super().__init__(f"checkpoint {path} needs full pickle to load{what}, which can run code; if you trust its "
                         "source, pass --trust-checkpoints (config: trust_checkpoints: true), or re-save it as "
                         "a plain state dict or .safetensors.")


_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("asr_bench_trust_checkpoints", default=False)


def checkpoints_trusted() -> bool:
    """Whether `read_checkpoint` may fall back to full pickle here (default: no)."""
    return _TRUSTED.get()


@contextlib.contextmanager
def trusting_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Within the block, checkpoints that need full pickle are loaded (with a warning) if `enabled`."""
    token = _TRUSTED.set(bool(enabled))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _needs_pickle(exc: Exception) -> bool:
    """torch's weights-only unpickler met a global it does not allow (vs. a file that is not a checkpoint)."""
    text = str(exc)
    return "was not an allowed global" in text or "Unsupported global" in text


def _unsafe_globals(path: Path, exc: Exception) -> list[str]:
    """The classes/functions the file names (read without running them), for the message."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - older torch or a legacy (non-zip) file: take the name from the message
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        return [found.group(1)] if found else []


def _unreadable(path: Path, exc: BaseException) -> UserError:
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return UserError(f"checkpoint {path} could not be read ({type(exc).__name__}: {text}); "
                     "is it a PyTorch .pth or a .safetensors file?")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


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
