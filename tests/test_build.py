"""Extension build/cache/backend choice (asr_bench.ops.build) and the nvcc syntax check CI runs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_bench.errors import UnknownName, UserError
from asr_bench.ops import backends, build

GOOD_CU = """
__global__ void add_one(float* x, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] += 1.f; }
"""
BAD_CU = """
__global__ void add_one(float* x, int n) { x[threadIdx.x] += undeclared_name; }
"""


def make_csrc(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "csrc"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cache_root_follows_torch_extensions_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert build.cache_root() == tmp_path / "asr_bench"
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    assert build.cache_root() == Path.home() / ".cache" / "asr_bench" / "extensions"


def test_cache_key_changes_with_sources_and_headers(tmp_path):
    root = make_csrc(tmp_path, {"toy/cpu.cpp": "int f();", "toy/helper.h": "#pragma once"})
    first = build.extension("toy", "cpp", root)
    assert first is not None and first.name.startswith("asr_bench_toy_cpp_")
    assert build.extension("toy", "cpp", root).key == first.key  # stable
    (root / "toy" / "helper.h").write_text("#pragma once\n// changed")
    assert build.extension("toy", "cpp", root).key != first.key
    assert build.extension("toy", "cuda", root) is None  # no cuda.cu


def test_common_headers_are_in_every_key_and_not_an_op(tmp_path):
    root = make_csrc(tmp_path, {"toy/cpu.cpp": "int f();", "toy/cuda.cu": "", "common/shared.h": "#pragma once"})
    assert build.list_ops(root) == ["toy"]
    before = {b: build.extension("toy", b, root).key for b in ("cpp", "cuda")}
    (root / "common" / "shared.h").write_text("#pragma once\n// changed")
    assert all(build.extension("toy", b, root).key != before[b] for b in before)


def test_status_without_compiling(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    root = make_csrc(tmp_path, {"toy/cpu.cpp": "int f();"})
    status = backends.backend_status(compile=False, root=root)
    assert status["toy"]["torch"] == "live"
    assert status["toy"]["cuda"].startswith("absent")
    assert status["toy"]["cpp"] in ("compilable", "absent: no C++ compiler found (set CXX or install g++)")
    assert not (tmp_path / "cache").exists()  # nothing was built


def test_live_backends_lists_every_op_with_torch():
    live = backends.live_backends(compile=False)
    assert "rasterize" in live and live["rasterize"][-1] == "torch"
    assert all(backends[-1] == "torch" for backends in live.values())


def test_resolve_backend_errors_are_user_errors():
    with pytest.raises(UnknownName, match="Did you mean 'cuda'"):
        backends.resolve_backend("rasterize", "cudaa", torch.device("cpu"))
    with pytest.raises(UserError, match="cannot run rasterize on cpu"):
        backends.resolve_backend("rasterize", "cuda", torch.device("cpu"))
    assert backends.resolve_backend("rasterize", "torch", torch.device("cpu")) == ("torch", None)


def test_loading_an_extension_leaves_every_cache_key_unchanged(monkeypatch):
    # torch's loader appends its libraries to the flag lists it is given; were they ours, every key computed after
    # the first load would change and the next op would be compiled again under a new name.
    before = {op: build.extension(op, "cpp").key for op in build.list_ops()}
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_failed", {})
    try:
        build.load_extension("rasterize", "cpp")
    except build.ExtensionUnavailable as error:
        pytest.skip(f"needs the cpp rasterizer: {error}")
    assert {op: build.extension(op, "cpp").key for op in build.list_ops()} == before


def test_a_cached_build_older_than_its_sources_or_headers_counts_as_a_compile(monkeypatch, tmp_path):
    """A fresh clone of the same code has the same cache key but newer files, and ninja rebuilds by mtime: the
    setup must be named 'compiling', not 'loading' (seen: 30 s of 'loading the cpp rasterize backend')."""
    import os

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    root = make_csrc(tmp_path, {"toy/cpu.cpp": "int f();", "toy/helper.h": "#pragma once",
                                "common/shared.h": "#pragma once"})
    ext = build.extension("toy", "cpp", root)
    assert build.will_compile(ext)  # nothing cached
    ext.build_dir.mkdir(parents=True)
    (ext.build_dir / "build.ninja").write_text(f"build cpu.o: compile {root / 'toy' / 'cpu.cpp'}\n")
    so = ext.build_dir / f"{ext.name}.so"
    so.write_bytes(b"")
    for path in (root / "toy" / "cpu.cpp", root / "toy" / "helper.h", root / "common" / "shared.h"):
        os.utime(path, (1_000_000, 1_000_000))
    os.utime(so, (2_000_000, 2_000_000))
    assert not build.will_compile(ext)  # built after every input: a load
    for path in (root / "toy" / "cpu.cpp", root / "toy" / "helper.h", root / "common" / "shared.h"):
        os.utime(path, (3_000_000, 3_000_000))
        assert build.will_compile(ext), path
        os.utime(path, (1_000_000, 1_000_000))


def test_missing_source_is_reported(monkeypatch):
    monkeypatch.setattr(build, "_failed", {})
    with pytest.raises(build.ExtensionUnavailable, match="no cuda backend"):
        build.load_extension("no_such_op", "cuda")


needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/bin/nvcc").exists(),
                                reason="needs nvcc")


def run_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asr_bench.ops.build", "--check-cuda", "--root", str(root)],
                          capture_output=True, text=True)


def test_check_cuda_without_sources_says_so(tmp_path):
    result = run_check(make_csrc(tmp_path, {"toy/cpu.cpp": ""}))
    assert result.returncode == 0 and "no .cu files" in result.stdout


@needs_nvcc
def test_check_cuda_passes_good_and_names_the_bad_file(tmp_path):
    root = make_csrc(tmp_path, {"good/cuda.cu": GOOD_CU, "bad/cuda.cu": BAD_CU})
    result = run_check(root)
    assert result.returncode != 0
    assert f"FAILED {root / 'bad' / 'cuda.cu'}" in result.stderr
    assert f"ok     {root / 'good' / 'cuda.cu'}" in result.stdout
    (root / "bad" / "cuda.cu").write_text(GOOD_CU)
    assert run_check(root).returncode == 0


@needs_nvcc
@pytest.mark.slow
def test_check_cuda_compiles_torch_extension_headers(tmp_path):
    # A .cu including torch/extension.h and the shared binning header must compile against the include paths.
    text = '#include <torch/extension.h>\n#include "binning.h"\n' + GOOD_CU
    root = make_csrc(tmp_path, {"rasterize/cuda.cu": text,
                                "rasterize/binning.h": (build.CSRC / "rasterize" / "binning.h").read_text()})
    result = run_check(root)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_lock_left_by_a_build_killed_midway_does_not_hang_the_next_load(tmp_path):
    """torch's `lock` file survives a SIGKILL mid-compile; under our flock it is known stale and removed."""
    import fcntl
    import subprocess
    import sys

    from asr_bench.ops.build import build_lock

    (tmp_path / "lock").write_text("")  # what a killed compile leaves
    with build_lock(tmp_path):
        assert not (tmp_path / "lock").exists()
        # while held, another process cannot take the build lock (it would wait, not race the compile)
        probe = ("import fcntl, sys; f = open(sys.argv[1], 'w')\n"
                 "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
                 "except BlockingIOError:\n    print('held')")
        lock = str(tmp_path / ".asr-bench-build.lock")
        assert subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True).stdout.strip() == "held"
    assert subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True).stdout.strip() == "free"
