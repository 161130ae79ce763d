"""Self-test of the compiled op backends: a build is trusted on a device only after it has matched the reference.

Why: a compiled backend (cpp, cuda) can be right on the machine it was written on and wrong on another (another
GPU, compiler, CPU flags), and a wrong kernel gives plausible numbers. So before an op's front uses one, the
backend runs the op's own small fp32 cases (its `OpSpec.selftest`, in asr_bench/ops/<op>/) against the op's
PyTorch reference, forward and, where the op declares `gradients`, backward; it is used only if every output and
gradient agrees to float rounding: the largest |ours - reference| over a tensor, divided by the largest
|reference| of that tensor, must stay below `TOLERANCE`. This module knows no op: it loops over the specs.

The verdict is keyed by (device name, build): the build is the extension module's name, which carries the hash
of its sources, flags, torch, Python and CPU (asr_bench.ops.build), so a rebuilt backend is tested again. It is
kept in memory and in `<extension cache>/selftest/<build>--<device>.json`, so a second process reads it instead of
re-running; `SELFTEST_VERSION` in the file drops verdicts of an older self-test, and a verdict from a test that
raised (perhaps out of memory) stays in memory only, so the next process tries again. A failing backend is disabled
with one warning per process naming the failed test and the fallback. `asr-bench doctor --selftest` re-runs
every self-test and prints the verdicts.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..stages import one_time_setup
from .build import (
    ExtensionUnavailable,
    cache_root,
    extension,
    has_cuda_toolchain,
    list_ops,
    load_extension,
)
from .spec import OpSpec, SelfTestCase, find_op

SELFTEST_VERSION = 1
TOLERANCE = 2e-5  # relative to each tensor's largest reference magnitude; fp32 rounding is ~1e-6 here

Forward = Callable[..., torch.Tensor]
Backward = Callable[..., Any]
Outcome = tuple[str, float]  # (test name, relative error)
Test = tuple[str, Callable[[], list[Outcome]]]  # (name, run it -> its outcomes); a raise fails the named test


@dataclass(frozen=True)
class Verdict:
    """Whether one build of one backend of an op may run on one device, and the evidence."""

    op: str
    backend: str
    device: str
    build: str
    passed: bool
    failed_test: str | None  # the first test above the tolerance (or that raised), None when passed
    max_error: float  # the largest relative error over every test run (inf when one raised)
    seconds: float
    detail: str = ""  # the exception text when a test raised
    cached: bool = False  # read from memory or disk, not run by this call

    def reason(self) -> str:
        """One line: which test failed and by how much (for warnings and errors)."""
        if self.passed:
            return f"passed its self-test on {self.device}"
        if self.detail:
            return f"failed its self-test on {self.device} ({self.failed_test} raised: {self.detail})"
        return (f"failed its self-test on {self.device} (first failing test: {self.failed_test}; max relative "
                f"error {self.max_error:.2e} > {TOLERANCE:.0e})")


_verdicts: dict[tuple[str, str, str, str], Verdict] = {}
_warned: set[tuple[str, str, str, str]] = set()


# ------------------------------------------------------------------------------------------- verdicts


def verdict_dir() -> Path:
    """Where verdicts are stored: beside the compiled extensions, so they share the cache's life."""
    return cache_root() / "selftest"


@functools.lru_cache(maxsize=None)
def _device_name(device_type: str, index: int | None) -> str:
    if device_type == "cuda":
        props = torch.cuda.get_device_properties(index)
        return f"{props.name} (sm_{props.major}{props.minor})"
    if device_type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return "cpu " + line.split(":", 1)[1].strip()
        except OSError:
            pass
        return f"cpu {platform.processor() or platform.machine()}"
    return device_type


def device_name(device: torch.device) -> str:
    """The name a verdict is kept under: the GPU model and compute capability, or the CPU model."""
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
    return _device_name(device.type, index)


def verdict(
    op: str,
    backend: str,
    build: str,
    device: torch.device,
    forward: Forward,
    backward: Backward | None,
    refresh: bool = False,
) -> Verdict:
    """The verdict for `build` of (op, backend) on `device`: from memory, else disk, else by running the self-test.

    `forward`/`backward` follow the op's compiled-backend ABI (asr_bench.ops.rasterize / meta_upscale docstrings);
    `backward` None means the front differentiates the reference instead, so only the forward is tested.
    `refresh` runs the self-test even when a verdict is known (doctor --selftest) and stores the new one.
    """
    name = device_name(device)
    key = (op, backend, build, name)
    if not refresh:
        if key in _verdicts:
            return _with(_verdicts[key], cached=True)
        stored = _read(key)
        if stored is not None:
            _verdicts[key] = stored
            return stored
    with one_time_setup(f"self-testing the {backend} {op} backend"):
        result = run_selftest(op, backend, build, device, forward, backward)
    _verdicts[key] = result
    if not result.detail:  # a raise may be passing (out of memory, a busy GPU): the next process tries again
        _write(result)
    return result


def known_failure(op: str, backend: str, build: str) -> Verdict | None:
    """A failed verdict this process has seen for the build on any device (for `backend_status`)."""
    return next((v for (o, b, s, _), v in _verdicts.items() if (o, b, s) == (op, backend, build) and not v.passed),
                None)


def warn_disabled(result: Verdict, fallback: str) -> None:
    """Say once per process that a backend failed its self-test, which test, and what runs instead."""
    key = (result.op, result.backend, result.build, result.device)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(f"{result.op}: the {result.backend} backend {result.reason()}; it is disabled, using {fallback}.",
                  RuntimeWarning, 3)


def _with(result: Verdict, **changes: Any) -> Verdict:
    return Verdict(**{**asdict(result), **changes})


def file_safe(name: str) -> str:
    """`name` as a portable file-name part: runs of anything but ASCII letters, digits, '.', '_' and '-' become one
    '_' ('cpu Intel(R) Xeon(R)' -> 'cpu_Intel_R_Xeon_R_'), plus 8 hex digits of the name's sha256 when anything
    was replaced, so two device names that differ only in such characters never share a verdict file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    if safe == name and safe not in ("", ".", ".."):
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def verdict_file(build: str, device: str) -> Path:
    """The file a verdict of `build` on the device named `device` (as `device_name` gives it) is stored in."""
    return verdict_dir() / f"{build}--{file_safe(device)}.json"


def _file(key: tuple[str, str, str, str]) -> Path:
    op, backend, build, name = key
    return verdict_file(build, name)


def _read(key: tuple[str, str, str, str]) -> Verdict | None:
    try:
        data = json.loads(_file(key).read_text())
        if data.pop("version") != SELFTEST_VERSION or data.pop("tolerance") != TOLERANCE:
            return None
        stored = Verdict(**{**data, "cached": True})
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, torn or from another version: run the self-test again
    return stored if (stored.op, stored.backend, stored.build, stored.device) == key else None


def _write(result: Verdict) -> None:
    path = _file((result.op, result.backend, result.build, result.device))
    record = {**asdict(result), "cached": False, "version": SELFTEST_VERSION, "tolerance": TOLERANCE}
    if not math.isfinite(record["max_error"]):
        record["max_error"] = 1e300  # JSON has no inf; anything above the tolerance reads the same
    try:
        atomic.write_text(path, json.dumps(record, indent=1))  # a concurrent worker reads the old or the new file
    except OSError:
        pass  # a read-only cache only costs a re-run in the next process


# ------------------------------------------------------------------------------------------- running


def run_selftest(
    op: str, backend: str, build: str, device: torch.device, forward: Forward, backward: Backward | None
) -> Verdict:
    """Run every test of `op` (stopping at the first that raises) and judge them against `TOLERANCE`."""
    spec = find_op(op)
    if spec is None or not spec.selftest:
        return Verdict(op, backend, device_name(device), build, False, "(none)", math.inf, 0.0,
                       f"no self-test is defined for op '{op}'; give its OpSpec selftest cases "
                       f"(asr_bench/ops/{op}/__init__.py)")
    start = time.perf_counter()
    with torch.inference_mode(False), torch.enable_grad():  # the runner calls the ops under inference_mode
        failed, worst, detail = _judge(_cases(spec, forward, backward, device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return Verdict(op, backend, device_name(device), build, failed is None, failed, worst, seconds, detail)


def _judge(tests: Iterator[Test]) -> tuple[str | None, float, str]:
    """(first failing test or None, largest relative error, exception text) over `tests`."""
    failed, worst, detail = None, 0.0, ""
    for test, measure in tests:
        try:
            outcomes = measure()
        except Exception as exc:  # noqa: BLE001 - a crashing backend is a failing backend
            text = str(exc).strip()
            failed, worst = failed or test, math.inf
            detail = f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__
            break
        for name, error in outcomes:
            worst = max(worst, error) if error == error else math.inf  # max() would drop a NaN
            if failed is None and not error <= TOLERANCE:  # NaN fails too
                failed = name
    return failed, worst, detail


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference| (inf on a shape mismatch or a non-finite value)."""
    if tuple(ours.shape) != tuple(reference.shape):
        return math.inf
    ours, reference = ours.detach().double().cpu(), reference.detach().double().cpu()
    if not bool(torch.isfinite(ours).all()):
        return math.inf
    scale = reference.abs().max().item() if reference.numel() else 0.0
    difference = (ours - reference).abs().max().item() if reference.numel() else 0.0
    return difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)


def _cases(spec: OpSpec, forward: Forward, backward: Backward | None, device: torch.device) -> Iterator[Test]:
    """The op's cases as tests: each case's forward against `spec.reference`, then (when the op declares
    gradients and the backend has a backward) each gradient against autograd through the reference, with a
    random output gradient. Case i draws its inputs with seed i and its output gradient with seed 100 + i."""
    gradients = spec.gradients if backward is not None else None
    for index, case in enumerate(spec.selftest):
        state: dict[str, Any] = {}

        def forward_test(case: SelfTestCase = case, index: int = index, state: dict = state) -> list[Outcome]:
            state["inputs"] = inputs = case.inputs(device, index)
            if gradients is None:
                with torch.no_grad():
                    return [(f"forward, {case.name}", relative_error(forward(*inputs), spec.reference(*inputs)))]
            state["leaves"] = leaves = [inputs[i].clone().requires_grad_() for i in gradients.positions]
            arguments = list(inputs)
            for position, leaf in zip(gradients.positions, leaves, strict=True):
                arguments[position] = leaf
            state["reference"] = reference = spec.reference(*arguments)
            return [(f"forward, {case.name}", relative_error(forward(*inputs), reference))]

        def backward_test(case: SelfTestCase = case, index: int = index, state: dict = state) -> list[Outcome]:
            seed = torch.Generator().manual_seed(100 + index)
            grad_out = torch.randn(state["reference"].shape, generator=seed).to(device)
            expected = torch.autograd.grad(state["reference"], state["leaves"], grad_out)
            ours = gradients.call(backward, state["inputs"], grad_out)
            return [(f"backward d{name}, {case.name}", relative_error(mine, theirs))
                    for name, mine, theirs in zip(gradients.names, ours, expected, strict=True)]

        yield f"forward, {case.name}", forward_test
        if gradients is not None:
            yield f"backward, {case.name}", backward_test


# ------------------------------------------------------------------------------------------- doctor


@dataclass(frozen=True)
class SelftestRow:
    """One line of `doctor --selftest`: a verdict, or why the backend could not be tested here."""

    op: str
    backend: str
    device: str
    verdict: str  # "pass", "FAIL: <test>", "unavailable: <why>"
    max_error: float | None
    seconds: float | None

    @property
    def failed(self) -> bool:
        return self.verdict.startswith("FAIL")


def selftest_rows() -> list[SelftestRow]:
    """Re-run the self-test of every compiled backend that can be had on this machine (compiling it if needed)."""
    rows = []
    for op in list_ops():  # every op with compiled sources; one without a spec fails: "no self-test is defined"
        for backend in ("cpp", "cuda"):
            if extension(op, backend) is None:
                continue
            if backend == "cuda" and not has_cuda_toolchain():
                rows.append(SelftestRow(op, backend, "cuda", "unavailable: no CUDA device or no nvcc", None, None))
                continue
            device = torch.device("cuda" if backend == "cuda" else "cpu")
            try:
                module = load_extension(op, backend)
            except ExtensionUnavailable as error:
                rows.append(SelftestRow(op, backend, device_name(device), f"unavailable: {error}", None, None))
                continue
            result = verdict(op, backend, build_of(module), device, module.forward, getattr(module, "backward", None),
                             refresh=True)
            rows.append(SelftestRow(op, backend, result.device,
                                    "pass" if result.passed else f"FAIL: {result.failed_test}"
                                    + (f" ({result.detail})" if result.detail else ""),
                                    result.max_error, result.seconds))
    return rows


def build_of(module: Any) -> str:
    """The build a loaded extension module is: its name, which carries its source/flags hash."""
    return str(getattr(module, "__name__", None) or type(module).__name__)


def selftest_table(rows: list[SelftestRow]) -> str:
    """The verdicts as an aligned text table (backend, device, verdict, max error, time)."""
    header = ("backend", "device", "verdict", "max error", "time")
    body = [(f"{r.op}/{r.backend}", r.device, r.verdict,
             "-" if r.max_error is None else f"{r.max_error:.1e}",
             "-" if r.seconds is None else f"{r.seconds * 1e3:.0f} ms") for r in rows]
    if not body:
        return "self-test: no compiled backends in this checkout (csrc/ is empty); the torch references run."
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in (header, *body)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return f"compiled backends vs the torch reference (fp32, relative error limit {TOLERANCE:.0e}):\n" + "\n".join(
        lines)
