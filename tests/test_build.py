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


def test_a_cached_build_older_than_its_staged_inputs_or_missing_them_counts_as_a_compile(monkeypatch, tmp_path):
    """ninja rebuilds when an input is newer than the build or the recorded source path changed: the setup must
    then be named 'compiling', not 'loading' (seen: 30 s of 'loading the cpp rasterize backend'). The inputs are
    the copies staged in the build folder, so a checkout's own mtimes and paths do not matter."""
    import os

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    root = make_csrc(tmp_path, {"toy/cpu.cpp": "int f();", "toy/helper.h": "#pragma once",
                                "common/shared.h": "#pragma once"})
    ext = build.extension("toy", "cpp", root)
    assert build.will_compile(ext)  # nothing cached
    ext.build_dir.mkdir(parents=True)
    build.stage_inputs(ext)
    staged = [ext.staged_root / "toy" / "cpu.cpp", ext.staged_root / "toy" / "helper.h",
              ext.staged_root / "common" / "shared.h"]
    assert sorted(p for p, _ in ext.inputs) == sorted(staged) and all(p.is_file() for p in staged)
    (ext.build_dir / "build.ninja").write_text(f"build cpu.o: compile {staged[0]}\n")
    so = ext.build_dir / f"{ext.name}.so"
    so.write_bytes(b"")
    for path in staged:
        os.utime(path, (1_000_000, 1_000_000))
    os.utime(so, (2_000_000, 2_000_000))
    assert not build.will_compile(ext)  # built after every input: a load
    for path in (root / "toy" / "cpu.cpp", root / "common" / "shared.h"):
        os.utime(path, (3_000_000, 3_000_000))  # a checkout's file touched (a fresh clone): still a load
    assert not build.will_compile(ext)
    build.stage_inputs(ext)  # same bytes: the staged copies are left alone
    assert all(p.stat().st_mtime == 1_000_000 for p in staged)
    for path in staged:
        os.utime(path, (3_000_000, 3_000_000))
        assert build.will_compile(ext), path
        os.utime(path, (1_000_000, 1_000_000))
    staged[1].unlink()
    assert build.will_compile(ext)  # staging writes it anew, newer than the build
    (ext.build_dir / "build.ninja").write_text(f"build cpu.o: compile {root / 'toy' / 'cpu.cpp'}\n")
    build.stage_inputs(ext)
    os.utime(staged[1], (1_000_000, 1_000_000))
    assert build.will_compile(ext)  # built from a checkout's path (before staging): ninja rebuilds


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


TOY_CPP = """
// A toy extension: a Python module named TORCH_EXTENSION_NAME without torch's headers (compiles in a second).
#include <Python.h>
#include "common/toy_common.h"
#include "toy_helper.h"
#define ASR_CAT2(a, b) a##b
#define ASR_CAT(a, b) ASR_CAT2(a, b)
#define ASR_STR2(a) #a
#define ASR_STR(a) ASR_STR2(a)
static PyObject* answer(PyObject*, PyObject*) { return PyLong_FromLong(TOY_BASE + TOY_OFFSET); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, nullptr}, {nullptr, nullptr, 0, nullptr}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, ASR_STR(TORCH_EXTENSION_NAME), nullptr, -1, methods};
PyMODINIT_FUNC ASR_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module); }
"""

LOAD_TOY = """
import json, sys
from pathlib import Path
from asr_bench.ops import build
from asr_bench.stages import setup_events
notices = []
build.compile_notice = lambda op, backend: notices.append(op)
root = Path(sys.argv[1])
module = build._compile("toy", "cpp", root)
ext = build.extension("toy", "cpp", root)
so = next(ext.build_dir.glob(ext.name + "*.so"))
print(json.dumps({"answer": module.answer(), "notices": notices, "setup": [e.what for e in setup_events()],
                  "so_mtime_ns": so.stat().st_mtime_ns, "build_dir": str(ext.build_dir),
                  "ninja_log": (ext.build_dir / ".ninja_log").read_text()}))
"""


@pytest.mark.skipif(not build.has_compiler(), reason="needs a C++ compiler")
def test_two_checkouts_of_one_commit_share_a_build_without_rebuilding_each_other(tmp_path):
    """Checkout B (same sources, another path, newer files) loads the build A made, and A loads it back after B:
    no compile either way (before the sources were staged in the build folder, each switch rebuilt, 80-100 s)."""
    import json
    import os

    files = {"toy/cpu.cpp": TOY_CPP, "toy/toy_helper.h": "#pragma once\n#define TOY_OFFSET 2\n",
             "common/toy_common.h": "#pragma once\n#define TOY_BASE 40\n"}
    first, second = make_csrc(tmp_path / "a", files), make_csrc(tmp_path / "b", files)
    for path in second.rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000))  # a later clone: every file newer than the first's build
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "shared-cache")}

    def load(root):
        done = subprocess.run([sys.executable, "-c", LOAD_TOY, str(root)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    built = load(first)
    assert built["answer"] == 42 and built["notices"] == ["toy"] and built["setup"] == ["compiling the cpp toy backend"]
    for root in (second, first):
        again = load(root)
        assert again["answer"] == 42 and again["build_dir"] == built["build_dir"]
        assert again["notices"] == [] and again["setup"] == ["loading the cpp toy backend"]
        assert again["so_mtime_ns"] == built["so_mtime_ns"]  # the library was not relinked
        assert again["ninja_log"] == built["ninja_log"]  # ninja ran no compile or link step
    assert str(first) not in (Path(built["build_dir"]) / "build.ninja").read_text()  # it compiled the staged copy
