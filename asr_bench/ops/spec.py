"""What an op says about itself: `OpSpec`, and the catalogue of the ops that declare one.

Every op is a package `asr_bench/ops/<op>/` whose `__init__.py` defines `SPEC`, an `OpSpec`: its front (the
function a caller runs, with a `backend=` keyword), its torch reference (the specification every compiled backend
is held to), its self-test cases, its benchmark workloads and, where it can say, the FLOPs of one call. The op's
C++/CUDA sources live in `asr_bench/csrc/<op>/` (built by asr_bench/ops/build.py). The self-test
(asr_bench/ops/selftest.py) and `bench-ops` (asr_bench/ops/bench.py) are loops over these specs and know no op.

Like the method registry, nothing registers itself at import time: `op_specs()` imports each subpackage of
`asr_bench.ops` and reads its `SPEC`, so this module, which every op imports, imports no op.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import UnknownName, UserError


class SelfTestCase(Protocol):
    """One small self-test case: a name for the verdict, and the arguments of the compiled forward."""

    name: str

    def inputs(self, device: torch.device, seed: int) -> list[Any]:
        """The arguments of one forward call (tensors first, then sizes), in the compiled backends' order."""
        ...


@dataclass(frozen=True)
class Gradients:
    """How an op's compiled backward is called and checked: which forward arguments get gradients (their
    positions and names, in the backward's return order) and how the backward is called with the forward's
    arguments and the output's gradient (each op's backward ABI has its own argument order)."""

    positions: tuple[int, ...]
    names: tuple[str, ...]
    call: Callable[[Callable[..., Any], Sequence[Any], torch.Tensor], Sequence[torch.Tensor]]


@dataclass(frozen=True)
class Workload:
    """One timed case of an op: `make(device)` builds the front's arguments once, then the front runs on each
    backend: forward (`direction="forward"`, under no_grad) or the gradients of a ones-weighted output with
    respect to the op's differentiable arguments (`"backward"`: `OpSpec.gradients.positions`)."""

    name: str
    make: Callable[[torch.device], Sequence[Any]]
    direction: str = "forward"
    reference_cost: float = 1.0  # rough relative cost, to let --max-reference-cost skip the slowest references
    timed_once: tuple[str, ...] = ("torch",)  # slow backends: one timing without warm-up instead of `repeats`


@dataclass(frozen=True)
class ElementRate:
    """For an op whose speed limit is an element-wise function, not GEMM (the rasterizer: one exp per pixel-Gaussian
    pair), how many of its evaluations one forward call makes: `bench-ops` prints them per second beside that
    function's own rate on the same device, measured in the same process. `count` returns None where it can't say."""

    unit: str  # what one evaluation is, e.g. "pairs"
    count: Callable[..., int | None]  # count(*arguments) -> evaluations of one forward call
    function: str  # the torch function whose throughput is the limit, e.g. "exp"


@dataclass(frozen=True)
class OpSpec:
    """Everything the core needs to know about one op (see the module docstring)."""

    name: str
    front: Callable[..., Any]  # front(*arguments, backend=...) -> output
    reference: Callable[..., torch.Tensor]  # reference(*arguments) -> output: the compiled forward's specification
    selftest: tuple[SelfTestCase, ...] = ()
    gradients: Gradients | None = None  # None: forward-only compiled backends (or no gradient test)
    workloads: tuple[Workload, ...] = ()
    bench_backends: Callable[[torch.device], list[str]] = lambda device: ["torch"]  # the reference first
    flops: Callable[..., float] | None = None  # flops(*arguments) -> FLOPs of one forward call
    element_rate: ElementRate | None = None  # evaluations per call, against an element-wise function's rate
    doc: str = field(default="", compare=False)  # one line for listings


_SPECS: dict[str, OpSpec] = {}


def op_specs() -> list[OpSpec]:
    """Every op package beside this module that declares a `SPEC`, by name (imported on first call)."""
    if not _SPECS:
        for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
            if not info.ispkg:
                continue
            spec = getattr(importlib.import_module(f"{__package__}.{info.name}"), "SPEC", None)
            if spec is None:
                continue
            if not isinstance(spec, OpSpec) or spec.name != info.name:
                raise UserError(f"asr_bench/ops/{info.name}: SPEC must be an OpSpec named '{info.name}'.")
            _SPECS[spec.name] = spec
    return [_SPECS[name] for name in sorted(_SPECS)]


def find_op(name: str) -> OpSpec | None:
    """The spec of op `name`, or None when no op package declares it."""
    return next((spec for spec in op_specs() if spec.name == name), None)


def get_op(name: str) -> OpSpec:
    """The spec of op `name`; an unknown name is a one-line error listing the known ones."""
    spec = find_op(name)
    if spec is None:
        raise UnknownName("op", name, [s.name for s in op_specs()])
    return spec
