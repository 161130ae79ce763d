"""The validation steps: each runs in its own process (asr_bench.validate.child) and returns its report.

Every step gets `params`: device ("cpu" or "cuda"), reduced (the CPU form: smaller sizes), limit_s (its time
limit; a step that can, stops starting new work before it), work_dir (its scratch folder), repo (the checkout,
for tests/ and configs/), official_gsasr (a path or None). It returns {"status", "summary", "tables",
"details"}; a table is {"title", "columns", "rows"}. What each step checks and why: docs/kernels.md,
"Validating on a GPU".
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP = "pass", "FAIL", "skip"

# Targets of the CUDA rasterizer on the x4 720x720 GSASR workload (H100/H200 class GPU), issue 26.
RASTERIZE_TARGETS_MS = {"fwd x4 720x720 dmax0.1": 2.0, "bwd x4 720x720 dmax0.1": 5.0}
# The CPU form's pytest selection: fast tests of the op machinery, the rasterizer reference and the self-test
# of the compiled backends (built by the op-selftest step before it).
CPU_TESTS = ("tests/test_op_spec.py", "tests/test_rasterize_reference.py", "tests/test_selftest.py")
COST_SCALES = (2, 4, 12)


def _device(params: dict[str, Any]):
    import torch

    return torch.device(params["device"])


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows}


def _first_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return lines[0].strip() if lines else None


# ------------------------------------------------------------------------------------------- environment


def environment(params: dict[str, Any]) -> dict[str, Any]:
    """Versions, the device, compilers and threads: what a reader of the timings needs to know."""
    import torch

    from .. import __version__
    from ..engine.environment import cpu_model, git_commit
    from ..ops.build import cache_root, cpp_extension

    device = _device(params)
    rows: list[list[Any]] = [
        ["asr-bench", f"{__version__} (git {git_commit() or 'n/a'})"],
        ["python", sys.version.split()[0]],
        ["platform", platform.platform()],
        ["torch", torch.__version__],
        ["torch CUDA build", torch.version.cuda or "none (CPU build)"],
        ["CUDA available", str(torch.cuda.is_available())],
        ["CPU", f"{cpu_model()} ({os.cpu_count()} logical cores)"],
        ["torch threads", str(torch.get_num_threads())],
        ["C++ compiler", _first_line([os.environ.get("CXX", "c++"), "--version"]) or "not found"],
    ]
    status, summary = PASS, ""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return {"status": FAIL, "summary": "no CUDA device is visible", "tables": [_table("environment", ["what", "value"], rows)]}
        props = torch.cuda.get_device_properties(device)
        cuda_home = cpp_extension().CUDA_HOME
        nvcc = shutil.which("nvcc") or (str(Path(cuda_home) / "bin" / "nvcc") if cuda_home else "nvcc")
        nvcc_line = None
        if Path(nvcc).is_file() or shutil.which(nvcc):
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False, timeout=20).stdout
            nvcc_line = next((line for line in out.splitlines() if "release" in line), out.strip()[-80:])
        rows += [["GPU", (f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.1f} GiB, "
                          f"{props.multi_processor_count} SMs)")],
                 ["cuDNN", str(torch.backends.cudnn.version())],
                 ["nvcc", nvcc_line or "not found (the CUDA backends cannot compile)"],
                 ["GPUs visible", str(torch.cuda.device_count())]]
        summary = f"{props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}"
        if nvcc_line is None:
            status, summary = FAIL, summary + "; nvcc not found: set CUDA_HOME or put nvcc on PATH"
    else:
        summary = f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    try:
        import mamba_ssm
        rows.append(["mamba_ssm", getattr(mamba_ssm, "__version__", "installed")])
    except ImportError:
        rows.append(["mamba_ssm", "not installed (MambaIR uses the built-in scans)"])
    rows.append(["extension cache", str(cache_root())])
    from ..ops.selftest import device_name

    return {"status": status, "summary": summary, "tables": [_table("environment", ["what", "value"], rows)],
            "details": {**{k: v for k, v in rows}, "device_name": device_name(device)}}


# ------------------------------------------------------------------------------------------- op self-tests


def op_selftests(params: dict[str, Any]) -> dict[str, Any]:
    """Every compiled backend of the device (cpp on cpu, cuda on cuda), built now if needed, against the torch
    reference on each of its op's self-test cases (the shape classes), forward and backward, one row per test."""
    import torch

    from ..ops.build import ExtensionUnavailable, extension, list_ops, load_extension
    from ..ops.selftest import TOLERANCE, _cases, build_of, device_name
    from ..ops.spec import find_op

    device = _device(params)
    backend = "cuda" if device.type == "cuda" else "cpp"
    rows: list[list[Any]] = []
    problems: list[str] = []
    tested = 0
    for op in list_ops():
        if extension(op, backend) is None:
            rows.append([op, backend, "(no source for this backend)", "-", None, "n/a"])
            continue
        spec = find_op(op)
        if spec is None or not spec.selftest:
            rows.append([op, backend, "(no self-test cases)", "-", None, "FAIL"])
            problems.append(f"{op}: no self-test cases")
            continue
        try:
            module = load_extension(op, backend)
        except ExtensionUnavailable as error:
            rows.append([op, backend, "(build)", "-", None, f"FAIL: {str(error)[:200]}"])
            problems.append(f"{op}/{backend} did not build")
            continue
        forward, backward = module.forward, getattr(module, "backward", None)
        with torch.inference_mode(False), torch.enable_grad():
            for name, measure in _cases(spec, forward, backward, device):
                start = time.perf_counter()
                try:
                    outcomes = measure()
                except Exception as error:  # noqa: BLE001 - a crashing kernel is a failing test
                    rows.append([op, backend, name, "-", None, f"FAIL: raised {type(error).__name__}: {str(error)[:150]}"])
                    problems.append(f"{op}/{backend} {name} raised")
                    break
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                ms = (time.perf_counter() - start) * 1e3
                for test, error in outcomes:
                    tested += 1
                    ok = error <= TOLERANCE
                    rows.append([op, backend, test, f"{error:.1e}", round(ms, 1), "pass" if ok else "FAIL"])
                    if not ok:
                        problems.append(f"{op}/{backend} {test}: {error:.1e}")
        rows_build = build_of(module)
        rows.append([op, backend, f"(build {rows_build})", "-", None, "built"])
    where = device_name(device)
    table = _table(f"compiled backends vs the torch reference on {where} (relative error limit {TOLERANCE:.0e})",
                   ["op", "backend", "test", "max rel. error", "ms", "verdict"], rows)
    if problems:
        return {"status": FAIL, "summary": f"{len(problems)} problem(s): " + "; ".join(problems[:3]),
                "tables": [table]}
    if tested == 0:
        return {"status": SKIP, "summary": f"no compiled {backend} backend in this checkout", "tables": [table]}
    return {"status": PASS, "summary": f"{tested} checks passed on {where}", "tables": [table]}


# ------------------------------------------------------------------------------------------- the device's tests


def device_tests(params: dict[str, Any]) -> dict[str, Any]:
    """The test suite's part for this device: `pytest -m cuda` on a GPU; on the CPU a short selection."""
    repo = Path(params["repo"])
    if not (repo / "tests").is_dir():
        return {"status": SKIP, "summary": f"no tests/ folder in {repo} (an installed package, not a checkout)"}
    if params["device"] == "cuda":
        command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    else:
        present = [t for t in CPU_TESTS if (repo / t).is_file()]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *present]
    limit = max(5.0, float(params["limit_s"]) - 5)
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False, timeout=limit)
    except subprocess.TimeoutExpired as stopped:
        output = (stopped.stdout or b"").decode() if isinstance(stopped.stdout, bytes) else (stopped.stdout or "")
        print(output)
        return {"status": FAIL, "summary": f"pytest ran past {limit:.0f} s: " + " ".join(command[3:])}
    print(done.stdout, done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    tail = lines[-1].strip("= ") if lines else "(no output)"
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", tail)}
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    rows = [[line[:200]] for line in failures[:20]]
    tables = [_table("failing tests", ["test"], rows)] if rows else []
    shown = [word for word in command[3:] if word not in ("-q", "-p", "no:cacheprovider")]
    summary = f"pytest {' '.join(shown)}: {tail}"
    if done.returncode not in (0, 5) or failures:
        return {"status": FAIL, "summary": summary, "tables": tables, "details": counts}
    if params["device"] == "cuda" and counts.get("passed", 0) == 0:
        return {"status": FAIL, "summary": summary + " (no CUDA test ran)", "details": counts}
    return {"status": PASS, "summary": summary, "tables": tables, "details": counts}


# ------------------------------------------------------------------------------------------- bench-ops


def _cpu_workloads():
    """The CPU form's bench-ops rows: each op's workloads cut down so the torch reference takes seconds on a
    busy 2-core CPU (the full ones take minutes there)."""
    from ..ops.meta_upscale.cases import meta_sr_head
    from ..ops.rasterize.cases import gsasr_case
    from ..ops.selective_scan.cases import mambair_scan
    from ..ops.spec import Workload

    return {"rasterize": (Workload("fwd x4 16x16 dmax0.5 (CPU form)", gsasr_case(16, 4, 0.5)),
                          Workload("bwd x4 16x16 dmax0.5 (CPU form)", gsasr_case(16, 4, 0.5), "backward")),
            "meta_upscale": (Workload("fwd x4 48x48 C64 (CPU form)", meta_sr_head(4, lr=48)),
                             Workload("bwd x4 48x48 C64 (CPU form)", meta_sr_head(4, lr=48), "backward")),
            "selective_scan": (Workload("fwd L1024 D192 N16 (CPU form)", mambair_scan(1024, 192, 16),
                                        timed_once=("torch", "chunked", "reference")),)}


def _extra_workloads():
    """The backward at the x4 720x720 target workload (bench-ops times the forward there)."""
    from ..ops.rasterize.cases import gsasr_case
    from ..ops.spec import Workload

    return {"rasterize": (Workload("bwd x4 720x720 dmax0.1", gsasr_case(180, 4, 0.1), "backward",
                                   reference_cost=3 * (720 / 4) ** 2 * 16 * 75**2 / 1e9),)}


def bench_ops(params: dict[str, Any]) -> dict[str, Any]:
    """`bench-ops` rows: each op's backends against the torch reference: on a GPU every workload with time and
    peak memory, the rasterizer's x4 720x720 rows against their targets; on the CPU cut-down workloads, time only."""
    from ..ops import bench
    from ..ops.spec import op_specs

    device = _device(params)
    reduced = bool(params["reduced"])
    deadline = time.monotonic() + float(params["limit_s"]) - 10
    extra = {} if reduced else _extra_workloads()
    small = _cpu_workloads() if reduced else {}
    rows: list[list[Any]] = []
    measured: list[dict[str, Any]] = []
    missed: list[str] = []
    errors: list[str] = []
    for spec in op_specs():
        workloads = list(small.get(spec.name, ())) if reduced else [*spec.workloads, *extra.get(spec.name, ())]
        for workload in workloads:
            left = deadline - time.monotonic()
            if left < 5:
                rows.append([spec.name, workload.name, "-", None, None, None, None, "-", "not run: step time used up"])
                continue
            # the extra rows skip the torch reference: autograd through it at x4 720x720 holds tens of GB
            skip_reference = 0.0 if workload in extra.get(spec.name, ()) else math.inf
            # memory on the GPU only: on the CPU each peak is a fresh process, which knows only the spec's workloads
            for row in bench._workload_rows(spec, workload, device, 3, skip_reference, not reduced,
                                            max(5.0, left / 2)):
                measured.append(row)
                print(bench.table_line(row, True), flush=True)  # the step's log shows progress as it goes
                target = RASTERIZE_TARGETS_MS.get(workload.name) if spec.name == "rasterize" else None
                verdict = "-"
                if target is not None and row["backend"] == "cuda" and row["seconds"] is not None:
                    met = row["seconds"] * 1e3 < target
                    verdict = f"{'met' if met else 'MISSED'} (< {target:g} ms)"
                    if not met:
                        missed.append(f"{workload.name} {row['seconds'] * 1e3:.2f} ms")
                if row["note"].startswith("error"):
                    errors.append(f"{spec.name} {workload.name} {row['backend']}: {row['note'][:150]}")
                rows.append([spec.name, workload.name, row["backend"],
                             None if row["seconds"] is None else round(row["seconds"] * 1e3, 3),
                             None if row["speedup"] is None else round(row["speedup"], 2),
                             None if row.get("peak_mb") is None else round(row["peak_mb"], 1),
                             None if row.get("memory_vs_torch") is None else round(row["memory_vs_torch"], 3),
                             verdict, row["note"]])
    table = _table(f"bench-ops on {params['device']} (medians of 3 after a warm-up; the torch reference timed once)",
                   ["op", "workload", "backend", "ms", "vs torch", "peak MB", "mem/torch", "target", "note"], rows)
    (Path(params["work_dir"]) / "bench_ops.jsonl").write_text(
        "".join(json.dumps(r, default=str) + "\n" for r in measured), encoding="utf-8")
    summary = f"{len(measured)} rows"
    if missed:
        summary += "; target missed: " + ", ".join(missed)
    if errors:
        return {"status": FAIL, "summary": summary + "; errors: " + "; ".join(errors[:3]), "tables": [table]}
    return {"status": PASS, "summary": summary, "tables": [table], "details": {"targets_missed": missed}}


# ------------------------------------------------------------------------------------------- official GSASR


def find_official_sources(path: Path) -> tuple[Path, Path] | None:
    """(gswrapper.cpp, gs.cu) of the official dmax rasterizer in a GSASR checkout (utils/gs_cuda_dmax/, or the
    same folder under one of its sub-projects), or None."""
    for folder in sorted(path.glob("**/gs_cuda_dmax"), key=lambda p: len(p.parts)):
        wrapper, kernel = folder / "gswrapper.cpp", folder / "gs.cu"
        if wrapper.is_file() and kernel.is_file():
            return wrapper, kernel
    return None


def official_gsasr(params: dict[str, Any]) -> dict[str, Any]:
    """The official GSASR rasterizer, built from the user's own checkout (never from ours), against our CUDA
    backend on the x4 720x720 workload: agreement of the image and the gradients, and both times."""
    given = params.get("official_gsasr")
    if not given:
        return {"status": SKIP, "summary": "not asked (give --official-gsasr PATH to a GSASR checkout)"}
    path = Path(given).expanduser()
    sources = find_official_sources(path)
    if sources is None:
        return {"status": FAIL, "summary": f"{path} has no utils/gs_cuda_dmax/gswrapper.cpp + gs.cu: give the "
                                           "root of a checkout of the official GSASR repository"}
    if params["device"] != "cuda":
        return {"status": SKIP, "summary": f"found {sources[1]}; the official kernel is CUDA-only (use --device cuda)"}
    import hashlib

    from ..ops.build import cache_root, cpp_extension

    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    build_dir = cache_root() / f"official_gscuda_{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    module = cpp_extension().load(name="gscuda", sources=[str(p) for p in sources], build_directory=str(build_dir),
                                  verbose=True)
    return compare_with_official(module, _device(params), "cuda")


def compare_with_official(module: Any, device: Any, backend: str, lr: int = 180, scale: float = 4.0,
                          dmax: float = 0.1) -> dict[str, Any]:
    """Our `backend` against a module with the official ABI (`gs_render(sigmas (N,3), coords, colours, image
    (H,W,3) zeros, N, H, W, 3, dmax)` in place; `gs_render_backward(..., grad (H,W,3), grad_sigmas, grad_coords,
    grad_colours, N, H, W, 3, dmax)` into zeros) on GSASR-like Gaussians of an lr x lr input: the image and the
    five gradients, and the times of both."""
    import torch

    from ..ops.bench import time_call
    from ..ops.rasterize import rasterize
    from ..ops.rasterize.cases import gsasr_like_gaussians
    from ..ops.selftest import relative_error

    (sx, sy, rho, coords, colours), height, width = gsasr_like_gaussians(lr, lr, scale, device)
    sigmas = torch.stack([sx, sy, rho], 1).contiguous()  # the official slot 0 pairs with the width axis

    def official_forward() -> torch.Tensor:
        image = torch.zeros(height, width, 3, device=device)
        module.gs_render(sigmas, coords, colours, image, sigmas.shape[0], height, width, 3, dmax)
        return image

    grad_image = torch.randn(3, height, width, generator=torch.Generator().manual_seed(7)).to(device)
    grad_hwc = grad_image.permute(1, 2, 0).contiguous()

    def official_backward() -> list[torch.Tensor]:
        grads = [torch.zeros_like(sigmas), torch.zeros_like(coords), torch.zeros_like(colours)]
        module.gs_render_backward(sigmas, coords, colours, grad_hwc, *grads, sigmas.shape[0], height, width, 3, dmax)
        return grads

    def our_forward() -> torch.Tensor:
        return rasterize(sx, sy, rho, coords, colours, height, width, dmax, backend=backend)

    leaves = [t.clone().requires_grad_() for t in (sx, sy, rho, coords, colours)]
    ours = rasterize(*leaves, height, width, dmax, backend=backend)

    def our_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(ours, leaves, grad_image, retain_graph=True)

    with torch.no_grad():
        forward_error = relative_error(our_forward(), official_forward().permute(2, 0, 1))
    mine, theirs = our_backward(), official_backward()
    gradient_errors = {
        "sigma_x": relative_error(mine[0], theirs[0][:, 0]), "sigma_y": relative_error(mine[1], theirs[0][:, 1]),
        "rho": relative_error(mine[2], theirs[0][:, 2]), "coords": relative_error(mine[3], theirs[1]),
        "colours": relative_error(mine[4], theirs[2])}
    times = {}
    with torch.no_grad():
        times["official forward"] = time_call(official_forward, device, 10)[0]
        times["ours forward"] = time_call(our_forward, device, 10)[0]
    # one thread per Gaussian over every pixel (research notes on the official backward): slow, so 3 calls after
    # the one above rather than a warm-up and 10
    times["official backward"] = time_call(official_backward, device, 3, warmup=0)[0]
    times["ours backward"] = time_call(our_backward, device, 10)[0]
    rows = [[name, round(seconds * 1e3, 3)] for name, seconds in times.items()]
    agreement = [["image", f"{forward_error:.1e}"], *[[f"d{k}", f"{v:.1e}"] for k, v in gradient_errors.items()]]
    worst = max([forward_error, *gradient_errors.values()])
    ok = worst <= 1e-4  # float atomics (theirs) and a different summation order (ours): not bit-equal
    size = f"x{scale:g} {height}x{width}"
    summary = (f"{size}: ours {times['ours forward'] * 1e3:.2f} / {times['ours backward'] * 1e3:.2f} ms, "
               f"official {times['official forward'] * 1e3:.2f} / {times['official backward'] * 1e3:.2f} ms "
               f"(fwd / bwd); worst relative difference {worst:.1e}")
    return {"status": PASS if ok else FAIL, "summary": summary,
            "tables": [_table(f"time at {size}, dmax {dmax:g} (ms, median)", ["kernel", "ms"], rows),
                       _table("ours vs official (max |difference| / max |official|)", ["tensor", "relative"],
                              agreement)],
            "details": {"worst": worst}}


# ------------------------------------------------------------------------------------------- runs


def _run_config(config_data: dict[str, Any], name: str) -> Any:
    from ..config import load_config
    from ..engine.runner import run_benchmark

    config = load_config(data={**config_data, "name": name})
    return run_benchmark(config, progress=False)


def quick_config(params: dict[str, Any]) -> dict[str, Any]:
    """configs/quick.yml on the device (every method, the embedded pictures); the CPU form at x4 only and with
    PSNR/SSIM, so it fits its limit."""
    from ..config import find_config, read_yaml

    path = find_config("quick")  # the shipped config: found from an installed package too
    if not path.is_file():
        return {"status": SKIP, "summary": "the shipped config 'quick' is not in this installation"}
    data = read_yaml(path)
    data.update(device=params["device"], output=str(Path(params["work_dir"]) / "run"),
                cache_dir=str(Path(params["work_dir"]) / "cache"))
    if params["reduced"]:
        data.update(scales=[4], metrics=["psnr", "ssim"], methods=["bicubic", "liif", "metasr", "gsasr"])
        data["profiling"] = {**data.get("profiling", {}), "memory": False, "flops": False}
    result = _run_config(data, "validate-quick")
    rows = [[c.label, c.dataset, c.scale, c.status, c.metrics.get("psnr"), c.time_ms,
             ", ".join(f"{k}={v}" for k, v in c.backends.items()) or "-", c.error[:120]] for c in result.cases]
    failed = [c for c in result.cases if c.status == "error"]
    table = _table("cases", ["method", "dataset", "scale", "status", "PSNR", "ms", "backends", "error"], rows)
    summary = f"{len(result.cases)} cases, {len(failed)} failed" + (
        f" ({', '.join(c.case_id for c in failed[:3])})" if failed else "")
    return {"status": FAIL if failed else PASS, "summary": summary, "tables": [table]}


def _synthetic_div2k_720(root: Path, size: int, count: int) -> None:
    """DIV2K-720-style GT crops (`DIV2K/DIV2K_GT720/08xx.png`, size x size): smooth random pictures, since cost
    does not depend on the content; the protocol makes the LR (MATLAB bicubic) from them."""
    import numpy as np
    from PIL import Image

    folder = root / "DIV2K" / "DIV2K_GT720"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rng = np.random.default_rng(index)
        small = (rng.random((size // 8 + 2, size // 8 + 2, 3)) * 255).astype(np.uint8)
        picture = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        picture.save(folder / f"{801 + index:04d}.png")


def cost_config(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The cost step's config (as YAML data) and its crop size: 720 on a GPU, 96 in the CPU form."""
    reduced = bool(params["reduced"])
    work = Path(params["work_dir"])
    size = 96 if reduced else 720
    methods = [
        {"method": "gsasr", "encoder": "edsr-baseline", "preset": "gsasr.edsr-baseline-paper", "label": "GSASR EDSR"},
        {"method": "liif", "encoder": "edsr-baseline", "label": "LIIF EDSR"},
        {"method": "metasr", "encoder": "edsr-baseline", "label": "Meta-SR EDSR"},
    ]
    if not reduced:  # the paper's x2 column used dmax 0.05 (configs/paper/gsasr_cost.yml)
        methods.insert(1, {**methods[0], "kwargs": {"dmax": 0.05}, "label": "GSASR EDSR (dmax 0.05)"})
    data = {"methods": methods, "datasets": ["div2k-720"], "scales": list(COST_SCALES), "protocol": "gsasr",
            "metrics": ["psnr"], "device": params["device"], "precision": "fp32",
            "data_root": str(work / "data"), "output": str(work / "run"), "cache_dir": str(work / "cache"),
            "profiling": ({"warmup": 0, "repeats": 1, "max_repeats": 1, "memory": True, "flops": False} if reduced
                          else {"warmup": 2, "repeats": 5, "max_repeats": 10, "max_seconds": 5.0, "memory": True,
                                "flops": False}),
            "visuals": {"crop": 0}}
    return data, size


def gsasr_cost(params: dict[str, Any]) -> dict[str, Any]:
    """The GSASR cost protocol (configs/paper/gsasr_cost.yml cut to EDSR-baseline): GSASR, LIIF and Meta-SR at
    x2/x4/x12 on DIV2K-720-style crops, batch 1, no tiling, with the stage breakdown (encoder / decoder /
    render; encoder / upsampler). The CPU form times 96x96 crops once; on a GPU 720x720 crops, warm-up 2,
    repeats 5."""
    work = Path(params["work_dir"])
    data, size = cost_config(params)
    _synthetic_div2k_720(work / "data", size, 1)
    result = _run_config(data, "validate-gsasr-cost")
    rows = []
    for case in result.cases:
        stages = " / ".join(f"{k} {v:.1f}" for k, v in case.stages.items()) or "-"
        rows.append([case.label, f"x{case.scale}", "x".join(map(str, case.profile_input)) or "-", case.status,
                     None if case.time_ms is None else round(case.time_ms, 2),
                     None if case.memory_mb is None else round(case.memory_mb, 1), stages,
                     ", ".join(f"{k}={v}" for k, v in case.backends.items()) or "-", case.error[:120]])
    failed = [c for c in result.cases if c.status == "error"]
    title = (f"GSASR cost protocol on {params['device']}: {size}x{size} GT, LR by MATLAB bicubic, batch 1, fp32, "
             f"no tiling (ms per image; memory: {result.cases[0].memory_kind if result.cases else '-'})")
    table = _table(title, ["method", "scale", "LR", "status", "ms", "peak MB", "stages (ms)", "backends", "error"],
                   rows)
    summary = f"{len(result.cases)} cases at {size}x{size}, {len(failed)} failed"
    return {"status": FAIL if failed else PASS, "summary": summary, "tables": [table]}
