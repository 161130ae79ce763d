"""Which backend an op call runs: the best one that is built here AND has passed its self-test on the device.

`resolve_backend(op, requested, device)` is what an op's front calls: "auto" takes the best live backend for the
tensors' device (cuda > cpp > torch) and, when a compiled one cannot be had (no compiler, no GPU, a compile
error), falls back to the next with ONE warning per process; an explicit backend that cannot be had is a
UserError saying why. A compiled backend is used only once it has passed its self-test on the tensors' device
(asr_bench/ops/selftest.py: the op's own cases against its reference, verdict cached per device and build); one
that fails is skipped by "auto" with one warning and refused when asked for by name.

This module sits above the builder (asr_bench/ops/build.py: compile and cache) and the self-test, and below the
op packages, which call it; `python -m asr_bench.ops.backends [--compile]` prints `backend_status`.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch

from ..errors import UnknownName, UserError
from . import build
from .build import (
    CSRC,
    SOURCE_OF_BACKEND,
    ExtensionUnavailable,
    extension,
    has_cuda_toolchain,
    list_ops,
    load_extension,
)
from .selftest import Verdict, build_of, known_failure, verdict, warn_disabled

BACKENDS = ("cuda", "cpp", "torch")  # order of preference for "auto"

_warned: set[tuple[str, str]] = set()


def backend_status(compile: bool = False, root: Path = CSRC) -> dict[str, dict[str, str]]:
    """Per op and backend: 'live', 'cached' (built, not loaded), 'compilable', 'failed: ...', 'disabled: ...'
    (loaded, failed its self-test in this process) or 'absent: ...'.

    With compile=False nothing is compiled (cheap, for `doctor`); with compile=True every buildable backend is
    compiled and loaded, so the answer is 'live' or 'failed: why'.
    """
    status: dict[str, dict[str, str]] = {}
    for op in list_ops(root):
        status[op] = {}
        for backend in ("cuda", "cpp"):
            ext = extension(op, backend, root)
            if ext is None:
                status[op][backend] = f"absent: no csrc/{op}/{SOURCE_OF_BACKEND[backend]}"
            elif (op, backend) in build._loaded:
                status[op][backend] = _loaded_state(op, backend)
            elif (op, backend) in build._failed:
                status[op][backend] = f"failed: {build._failed[(op, backend)]}"
            elif (reason := build._why_not_buildable(ext)) is not None:
                status[op][backend] = f"absent: {reason}"
            elif compile:
                try:
                    load_extension(op, backend)
                    status[op][backend] = "live"
                except ExtensionUnavailable as error:
                    status[op][backend] = f"failed: {error}"
            else:
                status[op][backend] = "cached" if ext.is_cached else "compilable"
        status[op]["torch"] = "live"
    return status


def _loaded_state(op: str, backend: str) -> str:
    """'live', or 'disabled: ...' when this process saw the loaded build fail its self-test."""
    failure = known_failure(op, backend, build_of(build._loaded[(op, backend)]))
    return "live" if failure is None else f"disabled: {failure.reason()}"


def live_backends(compile: bool = True) -> dict[str, list[str]]:
    """Per op, the backends that work here, best first; compile=False counts cached builds and compiles nothing."""
    usable = {"live", "cached"}
    return {
        op: [b for b in BACKENDS if states[b] in usable]
        for op, states in backend_status(compile=compile).items()
    }


def warn_once(op: str, backend: str, reason: str, fallback: str) -> None:
    """Say once per process that a compiled backend cannot be had here, and what runs instead."""
    if (op, backend) in _warned:
        return
    _warned.add((op, backend))
    warnings.warn(f"{op}: the {backend} backend is unavailable ({reason}); using {fallback}.", RuntimeWarning, 3)


def resolve_backend(op: str, requested: str, device: torch.device,
                    fallback: str = "the torch reference") -> tuple[str, ModuleType | None]:
    """(backend name, compiled module or None for 'torch') to run `op` on tensors living on `device`;
    `fallback` names what 'torch' runs, in the one warning 'auto' gives when a compiled backend is skipped."""
    if requested not in ("auto", *BACKENDS):
        raise UnknownName("backend", requested, ("auto", *BACKENDS))
    on_cuda = device.type == "cuda"
    if requested == "torch":
        return "torch", None
    if requested != "auto":
        if (requested == "cuda") != on_cuda:
            raise UserError(
                f"backend '{requested}' cannot run {op} on {device.type} tensors; use backend='auto' or move the "
                f"tensors to {'cuda' if requested == 'cuda' else 'cpu'}."
            )
        module = load_extension(op, requested)
        result = self_test(op, requested, module, device)
        if not result.passed:
            raise ExtensionUnavailable(f"the {requested} backend of '{op}' {result.reason()}; use backend='auto' "
                                       "(the torch reference runs instead) or backend='torch'.")
        return requested, module
    candidates = ["cuda"] if on_cuda else (["cpp"] if device.type == "cpu" else [])
    for backend in candidates:
        try:
            module = load_extension(op, backend)
        except ExtensionUnavailable as error:
            warn_once(op, backend, str(error), fallback)
            continue
        result = self_test(op, backend, module, device)
        if result.passed:
            return backend, module
        warn_disabled(result, fallback)
    return "torch", None


def self_test(op: str, backend: str, module: ModuleType, device: torch.device) -> Verdict:
    """The self-test verdict of a loaded compiled module on `device` (cached per device and build)."""
    return verdict(op, backend, build_of(module), device, module.forward, getattr(module, "backward", None))


def loadable(op: str, device: torch.device) -> list[str]:
    """The compiled backend of `op` for `device` ('cuda' or 'cpp') when it builds here, else none: what
    `bench-ops` times beside the reference."""
    compiled = "cuda" if device.type == "cuda" else "cpp"
    if compiled == "cuda" and not has_cuda_toolchain():
        return []
    try:
        load_extension(op, compiled)
    except ExtensionUnavailable:
        return []
    return [compiled]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_bench.ops.backends", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=CSRC, help="the csrc folder (default: the package's)")
    parser.add_argument("--compile", action="store_true", help="compile every buildable backend now")
    args = parser.parse_args(argv)
    for op, states in backend_status(compile=args.compile, root=args.root).items():
        for backend, state in states.items():
            print(f"{op:14s} {backend:6s} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
