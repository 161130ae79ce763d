"""Reading checkpoints and loading state dicts strictly, with user-readable errors.

Official checkpoints come wrapped in many ways (`{'model': {'sd'}}` for LIIF, `{'params', 'params_ema'}`
for BasicSR-style repos, `{'state_dict'}` with `module.` prefixes for RT4KSR, two files for GSASR, a folder).
`unwrap` takes every container off once, for every method (the registry calls it) and for detection (which
passes a memory-mapping reader and reads the container facts it records), and `load_strict` is the one strict
loader, so that every failure reads the same way.

Checkpoints are data, not code: `read_checkpoint` never runs a pickle's code unless the user trusts the file
(`--trust-checkpoints`; README "Plugins are code, checkpoints are data").
"""
from __future__ import annotations

import contextlib
import contextvars
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop `prefix` (e.g. 'module.') from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def split_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(keys under `prefix` with the prefix removed, the other keys): e.g. LIIF's 'encoder.' part and the rest."""
    inside = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    outside = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    return inside, outside


def add_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


@dataclass(frozen=True)
class Weights:
    """An official checkpoint with its container taken off: one state dict per part.

    `parts` is {"model": sd} for one file or dict; {"encoder": sd, "decoder": sd} for a pair (GSASR); one
    entry per file stem for a folder. `meta` keeps what a container says about its model (LIIF's
    {'name', 'args'}); `source` names it in messages. Methods receive this, never the raw container.
    """

    parts: Mapping[str, Mapping[str, torch.Tensor]]
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str = "checkpoint"

    def single(self) -> Mapping[str, torch.Tensor]:
        """The state dict of a one-part checkpoint."""
        if len(self.parts) != 1:
            raise UserError(f"{self.source} holds {len(self.parts)} parts ({', '.join(sorted(self.parts))}); "
                            "this method loads one file: name that file instead of the folder.")
        return next(iter(self.parts.values()))

    def part(self, name: str, hint: str) -> Mapping[str, torch.Tensor]:
        """One named part (e.g. GSASR's 'encoder'); the error says how to give it."""
        if name not in self.parts:
            raise UserError(f"{self.source} has no '{name}' part (it has {', '.join(sorted(self.parts))}); {hint}")
        return self.parts[name]


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")   # what a folder's files may be
LIIF_CONTAINER = "{'model': {'name', 'args', 'sd'}}"
Reader = Callable[[Path], Any]


def unwrap(checkpoint: Checkpoint, keys: Sequence[str] = ("params_ema", "params"),
           read: Reader = read_checkpoint) -> Weights:
    """Every official container -> `Weights`: the one unwrapping that loading and detection share.

    A folder: every checkpoint file in it (`CHECKPOINT_SUFFIXES`), by stem. A mapping whose values are all paths
    or containers (no tensors): a pair such as {'encoder': ..., 'decoder': ...}. Anything else is one file:
    BasicSR's {'params_ema', 'params'} (the first of `keys` present), {'state_dict': ...}, LIIF's
    {'model': {'name', 'args', 'sd'}}, {'model': sd}, or a bare state dict; a DataParallel `module.` prefix is
    dropped. `meta` records what the container said (`container`, `prefix`, LIIF's `name` and `args`); `read`
    opens a file (detection passes a memory-mapping reader, as it reads shapes only).
    """
    if checkpoint is None:
        raise UserError("no checkpoint given")
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES)
            if not files:
                raise MissingFile(f"checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})", path,
                                  "Put the official files in that folder or name one file.")
            opened = {f.stem: open_container(read(f), keys, str(f)) for f in files}
            if len(opened) == 1:
                (stem, (sd, meta)), = opened.items()
                return Weights({stem: sd}, meta, str(files[0]))
            return Weights({stem: sd for stem, (sd, _) in opened.items()}, {}, str(path))
        if not path.is_file():
            raise MissingFile("checkpoint file", path, "Check the path (a .pth file, or a folder of them), or omit "
                                                       "the checkpoint to benchmark random weights.")
        sd, meta = open_container(read(path), keys, str(path))
        return Weights({"model": sd}, meta, str(path))
    if not isinstance(checkpoint, Mapping):
        raise UserError(f"a checkpoint is a path, a folder or a loaded dict, not {type(checkpoint).__name__}.")
    if (checkpoint and not _is_container(checkpoint)
            and all(isinstance(v, (str, Path, Mapping)) for v in checkpoint.values())):
        parts = {name: unwrap(item, keys, read).single() for name, item in checkpoint.items()}
        return Weights(parts, {}, f"checkpoint pair {{{', '.join(repr(k) for k in checkpoint)}}}")
    sd, meta = open_container(checkpoint, keys, "checkpoint")
    return Weights({"model": sd}, meta, "checkpoint")


def _is_container(obj: Mapping[str, Any]) -> bool:
    """Whether a mapping is one file's container (rather than a pair of files)."""
    return any(k in obj for k in ("params", "params_ema", "state_dict", "sd")) or (
        "model" in obj and isinstance(obj["model"], Mapping))


def open_container(data: Any, keys: Sequence[str], source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, what the container said) of one file: only name -> tensor entries are kept, so shape-only
    (meta or memory-mapped) tensors pass as well as real ones."""
    if not isinstance(data, Mapping):
        raise UserError(f"{source} is a {type(data).__name__}, not a state dict or a checkpoint dict; "
                        "pass the official .pth file.")
    meta: dict[str, Any] = {}
    model = data.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("sd"), Mapping):
        meta = {**{k: v for k, v in model.items() if k != "sd"}, "container": LIIF_CONTAINER}
        meta["args"] = meta.get("args") or {}
        data = model["sd"]
    else:
        wrapper = next((k for k in (*keys, "params_ema", "params", "state_dict") if isinstance(data.get(k), Mapping)),
                       "model" if isinstance(model, Mapping) else None)
        if wrapper is not None:
            meta = {"container": f"{{'{wrapper}': ...}}"}
            data = data[wrapper]
    sd = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not sd:
        raise UserError(f"{source} holds no tensors (top-level keys: {', '.join(map(str, list(data)[:8]))}); "
                        "expected params/params_ema, state_dict, {'model': {'sd'}} or a bare state dict of a "
                        "super-resolution model.")
    if all(k.startswith("module.") for k in sd):
        sd = strip_prefix(sd, "module.")
        meta["prefix"] = "module."
    return sd, meta


def check_keys_and_shapes(wanted: Mapping[str, tuple[int, ...]], sd: Mapping[str, torch.Tensor], what: str,
                          fix: str) -> None:
    """A one-line `UserError` naming what is missing, unexpected or misshaped in `sd` against `wanted` shapes."""
    missing = [k for k in wanted if k not in sd]
    unexpected = [k for k in sd if k not in wanted]
    misshaped = [f"{k} {tuple(sd[k].shape)} vs {tuple(wanted[k])}"
                 for k in wanted if k in sd and tuple(sd[k].shape) != tuple(wanted[k])]
    parts = [f"{len(items)} {label} (e.g. {', '.join(items[:3])})"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
             if items]
    if parts:
        raise UserError(f"{what} does not match: {'; '.join(parts)}. {fix}")


def load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with a one-line error listing what is missing, unexpected or misshaped."""
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_keys_and_shapes(wanted, sd, what, "Check the method, encoder and preset match the checkpoint.")
    module.load_state_dict(dict(sd), strict=True)


def liif_repo_args(weights: Weights, method: str, encoder: str) -> Mapping[str, Any]:
    """The model args a LIIF-repo file ({'model': {'name', 'args', 'sd'}}) carries, after checking that it holds
    `method` on `encoder`; {} for a bare state dict. (The LIIF repo also ships Meta-SR.)"""
    name = weights.meta.get("name", method)
    if name != method:
        raise UserError(f"checkpoint holds a '{name}' model, not '{method}'; build_model('{name}', ...) instead.")
    args = dict(weights.meta.get("args", {}))
    trained_on = args.get("encoder_spec", {}).get("name", encoder)
    if trained_on != encoder:
        raise UserError(f"checkpoint was trained with encoder '{trained_on}', not '{encoder}'; "
                        f"pass encoder='{trained_on}'.")
    return args
