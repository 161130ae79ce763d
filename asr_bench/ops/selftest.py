"""Self-test of the compiled op backends: a build is trusted on a device only after it has matched the reference.

Why: a compiled backend (cpp, cuda) can be right on the machine it was written on and wrong on another (another
GPU, compiler, CPU flags), and a wrong kernel gives plausible numbers. So before an op's front uses one, the
backend runs a few small fp32 cases against the PyTorch reference, forward and backward (non-square images,
Gaussians beyond the border, a rational meta-upscale scale, arbitrary maps touching the first and last LR lines;
the selective scan, forward only, with groups > 1, odd L and N, underflowing decays and softplus past 20),
and is used only if every output and gradient agrees to float rounding: the largest |ours - reference| over a
tensor, divided by the largest |reference| of that tensor, must stay below `TOLERANCE`.

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
import json
import math
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..stages import one_time_setup

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
    from .build import cache_root

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


def _file(key: tuple[str, str, str, str]) -> Path:
    op, backend, build, name = key
    return verdict_dir() / f"{build}--{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.json"


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
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        scratch.write_text(json.dumps(record, indent=1))
        scratch.replace(path)  # atomic: a concurrent worker reads the old file or the new one, never half
    except OSError:
        pass  # a read-only cache only costs a re-run in the next process


# ------------------------------------------------------------------------------------------- running


def run_selftest(
    op: str, backend: str, build: str, device: torch.device, forward: Forward, backward: Backward | None
) -> Verdict:
    """Run every test of `op` (stopping at the first that raises) and judge them against `TOLERANCE`."""
    if op not in SELFTESTS:
        return Verdict(op, backend, device_name(device), build, False, "(none)", math.inf, 0.0,
                       f"no self-test is defined for op '{op}'; add one to asr_bench/ops/selftest.py")
    start = time.perf_counter()
    with torch.inference_mode(False), torch.enable_grad():  # the runner calls the ops under inference_mode
        failed, worst, detail = _judge(SELFTESTS[op](forward, backward, device))
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


# -- rasterize ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterizeCase:
    name: str
    height: int
    width: int
    dmax: float
    count: int
    centre_range: float  # centres uniform in [-centre_range, centre_range] (NDC; > 1 is beyond the border)
    sigma_pixels: tuple[float, float]  # sigmas uniform in this range, in pixels
    rho_max: float


RASTERIZE_CASES = (
    RasterizeCase("non-square 13x21, dmax 0.1", 13, 21, 0.1, 60, 1.0, (0.3, 2.5), 0.9),
    RasterizeCase("centres beyond the border 16x11, dmax 0.25", 16, 11, 0.25, 50, 1.35, (0.5, 3.0), 0.9),
    RasterizeCase("2x9 image, one box over everything (dmax 2), |rho| to 0.995", 2, 9, 2.0, 8, 1.0, (0.5, 6.0), 0.995),
)


def rasterize_inputs(case: RasterizeCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """GSASR-like Gaussians for one case: (sigma_x, sigma_y, rho, coords, colours), float32, on `device`."""
    g = torch.Generator().manual_seed(seed)
    n, (low, high) = case.count, case.sigma_pixels
    sigma_x = (torch.rand(n, generator=g) * (high - low) + low) * 2 / (case.width - 1)
    sigma_y = (torch.rand(n, generator=g) * (high - low) + low) * 2 / (case.height - 1)
    rho = (torch.rand(n, generator=g) * 2 - 1) * case.rho_max
    coords = (torch.rand(n, 2, generator=g) * 2 - 1) * case.centre_range
    colours = torch.rand(n, 3, generator=g)
    return [t.to(device=device, dtype=torch.float32) for t in (sigma_x, sigma_y, rho, coords, colours)]


def _rasterize_tests(forward: Forward, backward: Backward | None, device: torch.device) -> Iterator[Test]:
    from .rasterize_reference import _splat_chunk

    def reference_of(*args: Any) -> torch.Tensor:
        # The reference in one chunk, without rasterize_reference's checkpointing (which imports torch._dynamo:
        # seconds at first use) so that the self-test stays cheap in every worker process.
        return _splat_chunk(*args).reshape(args[5], args[6], 3).permute(2, 0, 1)

    names = ("sigma_x", "sigma_y", "rho", "coords", "colours")
    for index, case in enumerate(RASTERIZE_CASES):
        size = (case.height, case.width, case.dmax)
        state: dict[str, Any] = {}

        def forward_test(case: RasterizeCase = case, size: tuple = size, state: dict = state) -> list[Outcome]:
            state["params"] = params = rasterize_inputs(case, device, seed=RASTERIZE_CASES.index(case))
            state["leaves"] = leaves = [p.clone().requires_grad_() for p in params]
            state["reference"] = reference = reference_of(*leaves, *size)
            return [(f"forward, {case.name}", relative_error(forward(*params, *size), reference))]

        def backward_test(case: RasterizeCase = case, size: tuple = size, state: dict = state) -> list[Outcome]:
            seed = torch.Generator().manual_seed(100 + RASTERIZE_CASES.index(case))
            grad_image = torch.randn(state["reference"].shape, generator=seed).to(device)
            expected = torch.autograd.grad(state["reference"], state["leaves"], grad_image)
            ours = backward(*state["params"], grad_image, *size)
            return [(f"backward d{name}, {case.name}", relative_error(mine, theirs))
                    for name, mine, theirs in zip(names, ours, expected, strict=True)]

        yield f"forward, {case.name}", forward_test
        if backward is not None:
            yield f"backward, {case.name}", backward_test


# -- meta-upscale ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaUpscaleCase:
    name: str
    batch: int
    channels: int
    out_channels: int
    lr: tuple[int, int]
    out: tuple[int, int]
    arbitrary_maps: bool  # random (non-monotone, repeated) maps instead of Meta-SR's, with both border lines


META_UPSCALE_CASES = (
    MetaUpscaleCase("x2 on 5x7", 1, 8, 3, (5, 7), (10, 14), False),
    MetaUpscaleCase("x3.5 (7 phases per axis) on 4x6", 1, 8, 3, (4, 6), (14, 21), False),
    MetaUpscaleCase("arbitrary maps through the border lines, 2 images, 5 outputs", 2, 3, 5, (5, 4), (9, 11), True),
)


def _meta_sr_axis(n_lr: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta-SR's map of one axis: LR line floor(i n_lr / n_out), phase index of (i n_lr mod n_out)."""
    i = torch.arange(n_out)
    return (i * n_lr) // n_out, torch.unique((i * n_lr) % n_out, return_inverse=True)[1]


def _arbitrary_axis(n_lr: int, n_out: int, phases: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    source = torch.randint(0, n_lr, (n_out,), generator=g)
    source[0], source[-1] = n_lr - 1, 0  # both border lines, read where the zero padding matters
    return source, torch.randint(0, phases, (n_out,), generator=g)


def meta_upscale_inputs(case: MetaUpscaleCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """(features, table, row_source, row_phase, col_source, col_phase) for one case, float32 on `device`."""
    g = torch.Generator().manual_seed(seed)
    (h, w), (height, width) = case.lr, case.out
    if case.arbitrary_maps:
        rows, cols = _arbitrary_axis(h, height, 3, g), _arbitrary_axis(w, width, 2, g)
    else:
        rows, cols = _meta_sr_axis(h, height), _meta_sr_axis(w, width)
    phases = (int(rows[1].max()) + 1, int(cols[1].max()) + 1)
    features = torch.rand(case.batch, case.channels, h, w, generator=g)
    taps = 9 * case.channels
    table = torch.randn(*phases, taps, case.out_channels, generator=g) / math.sqrt(taps)
    return [features.to(device), table.to(device), *(t.to(device) for t in (*rows, *cols))]


def _meta_upscale_tests(forward: Forward, backward: Backward | None, device: torch.device) -> Iterator[Test]:
    from .meta_upscale import torch_forward

    for case in META_UPSCALE_CASES:
        state: dict[str, Any] = {}

        def forward_test(case: MetaUpscaleCase = case, state: dict = state) -> list[Outcome]:
            features, table, *maps = meta_upscale_inputs(case, device, seed=META_UPSCALE_CASES.index(case))
            state["inputs"] = (features, table, *maps)
            state["leaves"] = leaves = [features.clone().requires_grad_(), table.clone().requires_grad_()]
            state["reference"] = reference = torch_forward(*leaves, *maps)
            return [(f"forward, {case.name}", relative_error(forward(features, table, *maps), reference))]

        def backward_test(case: MetaUpscaleCase = case, state: dict = state) -> list[Outcome]:
            seed = torch.Generator().manual_seed(100 + META_UPSCALE_CASES.index(case))
            grad_out = torch.randn(state["reference"].shape, generator=seed).to(device)
            expected = torch.autograd.grad(state["reference"], state["leaves"], grad_out)
            ours = backward(grad_out, *state["inputs"])
            return [(f"backward d{name}, {case.name}", relative_error(mine, theirs))
                    for name, mine, theirs in zip(("features", "table"), ours, expected, strict=True)]

        yield f"forward, {case.name}", forward_test
        if backward is not None:
            yield f"backward, {case.name}", backward_test


# -- selective scan (forward only: the compiled backend is inference-only) --------------------------------------


@dataclass(frozen=True)
class SelectiveScanCase:
    name: str
    batch: int
    groups: int
    per_group: int
    state: int
    length: int
    a_max: float       # A uniform in [-a_max, 0): large values make exp(delta A) underflow to 0
    delta_shift: float  # added to N(0, 1) delta: large values take softplus past its threshold of 20


SELECTIVE_SCAN_CASES = (
    SelectiveScanCase("b1, 1 group of 20 channels, N 16, L 64", 1, 1, 20, 16, 64, 4.0, 0.0),
    SelectiveScanCase("b2, 4 groups of 3 channels, N 5, L 37", 2, 4, 3, 5, 37, 4.0, 0.0),
    SelectiveScanCase("b1, 2 groups, N 17, L 129, A to -200, delta + 19", 1, 2, 3, 17, 129, 200.0, 19.0),
)


def selective_scan_inputs(case: SelectiveScanCase, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """(u, delta, A, B, C, D, delta_bias) for one case, float32 on `device`."""
    g = torch.Generator().manual_seed(seed)
    b, groups, d, n, length = case.batch, case.groups, case.groups * case.per_group, case.state, case.length
    tensors = [torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g) + case.delta_shift,
               -torch.rand(d, n, generator=g) * case.a_max - 1e-3, torch.randn(b, groups, n, length, generator=g),
               torch.randn(b, groups, n, length, generator=g), torch.randn(d, generator=g),
               torch.randn(d, generator=g) * 0.5]
    return [t.to(device) for t in tensors]


def _selective_scan_tests(forward: Forward, backward: Backward | None, device: torch.device) -> Iterator[Test]:
    from ..encoders.selective_scan import selective_scan_reference

    for index, case in enumerate(SELECTIVE_SCAN_CASES):
        def forward_test(case: SelectiveScanCase = case, seed: int = index) -> list[Outcome]:
            inputs = selective_scan_inputs(case, device, seed=seed)
            return [(f"forward, {case.name}", relative_error(forward(*inputs), selective_scan_reference(*inputs)))]

        yield f"forward, {case.name}", forward_test


SELFTESTS: dict[str, Callable[[Forward, Backward | None, torch.device], Iterator[Test]]] = {
    "rasterize": _rasterize_tests,
    "meta_upscale": _meta_upscale_tests,
    "selective_scan": _selective_scan_tests,
}


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
    from .build import ExtensionUnavailable, extension, has_cuda_toolchain, list_ops, load_extension

    rows = []
    for op in list_ops():
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
