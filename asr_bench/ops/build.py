"""Compile and cache the compiled backends of the custom ops (any op with a folder under csrc/).

Every op `<op>` may have two compiled backends beside its PyTorch reference ("torch"):
  "cpp"  from csrc/<op>/cpu.cpp  (C++/OpenMP, -O3 -fopenmp)
  "cuda" from csrc/<op>/cuda.cu  (needs nvcc and a GPU at run time)
Headers in csrc/<op>/ (e.g. a shared binning.h) are on the include path and part of the cache key; so are the
headers in csrc/common/ (shared by several ops, included as "common/<name>.h"), which is not an op.

Each extension is compiled once, at first use, with `torch.utils.cpp_extension.load` into
`$TORCH_EXTENSIONS_DIR/asr_bench/` or `~/.cache/asr_bench/extensions/`, in a folder named after a hash of its
sources, flags, torch and Python versions and CPU: a changed source gets a new build and an unchanged one is
just loaded. The extension module must be named by `TORCH_EXTENSION_NAME` (PYBIND11_MODULE(TORCH_EXTENSION_NAME,
m)) because the name carries the hash.

This module knows no op and no self-test: which backend an op call runs (and whether a build is trusted) is
asr_bench/ops/backends.py, which builds through `load_extension` here.

CLI: `python -m asr_bench.ops.build --check-cuda` compiles every csrc/**/*.cu with nvcc (sm_90) to an object
file, so CI catches CUDA syntax and type errors without a GPU (`python -m asr_bench.ops.backends` prints each
op's backends).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from ..atomic import write_bytes as atomic_write_bytes
from ..errors import UnknownName, UserError
from ..resources import csrc_dir
from ..stages import one_time_setup

CSRC = csrc_dir()  # in the wheel (asr_bench/csrc) or the checkout (csrc/)
SOURCE_OF_BACKEND = {"cpp": "cpu.cpp", "cuda": "cuda.cu"}
CXX_FLAGS = ["-O3", "-fopenmp", "-march=native", "-ffp-contract=off", "-std=c++20"]
LD_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
CHECK_ARCH = "sm_90"  # Hopper: the arch `--check-cuda` compiles for
COMMON = "common"  # csrc/common/: headers shared by several ops (csrc/ is on the include path), not an op

_loaded: dict[tuple[str, str], ModuleType] = {}
_failed: dict[tuple[str, str], str] = {}


class ExtensionUnavailable(UserError):
    """A compiled backend that cannot be used here (no compiler, no GPU, compile error, no source)."""


@dataclass(frozen=True)
class Extension:
    """Where one op's backend comes from and where its build is cached.

    The build compiles copies of the inputs staged in the build folder (`<build dir>/src/<op>/cpu.cpp`,
    `<build dir>/src/common/*.h`), not the checkout's files: ninja records the paths it compiled and rebuilds when
    they change (or are newer than the build), so building from the checkout would make two checkouts of one commit
    that share the cache rebuild each other's builds at every switch. The folder is keyed by the inputs' content,
    so the staged copies are the same bytes whichever checkout staged them."""

    op: str
    backend: str
    sources: tuple[Path, ...]  # in the checkout (or installed package)
    key: str
    headers: tuple[tuple[str, Path], ...] = ()  # (path under the staged src/, file in the checkout)

    @property
    def name(self) -> str:
        return f"asr_bench_{self.op}_{self.backend}_{self.key}"

    @property
    def build_dir(self) -> Path:
        return cache_root() / self.name

    @property
    def staged_root(self) -> Path:
        """The build's own copy of csrc/ (this op's folder and common/): what the compiler reads."""
        return self.build_dir / "src"

    @property
    def inputs(self) -> tuple[tuple[Path, Path], ...]:
        """(staged copy, original) of every source and header the build reads."""
        pairs = [(self.staged_root / self.op / s.name, s) for s in self.sources]
        return (*pairs, *((self.staged_root / relative, origin) for relative, origin in self.headers))

    @property
    def staged_sources(self) -> tuple[Path, ...]:
        return tuple(self.staged_root / self.op / s.name for s in self.sources)

    @property
    def is_cached(self) -> bool:
        return any(self.build_dir.glob(f"{self.name}*.so"))


def cache_root() -> Path:
    """The folder holding every compiled extension of this package."""
    base = os.environ.get("TORCH_EXTENSIONS_DIR")
    if base:
        return Path(base) / "asr_bench"
    return Path.home() / ".cache" / "asr_bench" / "extensions"


def list_ops(root: Path = CSRC) -> list[str]:
    """Ops that have a folder under csrc/ (csrc/common/ holds shared headers, not an op)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != COMMON) if root.is_dir() else []


def _headers(folder: Path) -> list[Path]:
    return [*sorted(folder.glob("*.h")), *sorted(folder.glob("*.cuh"))]


def _cpu_signature() -> str:
    """CPU flags, so a cache shared between machines never loads a -march=native build on the wrong CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def extension(op: str, backend: str, root: Path = CSRC) -> Extension | None:
    """The extension description for (op, backend), or None when the op has no source for that backend."""
    source = root / op / SOURCE_OF_BACKEND[backend]
    if not source.is_file():
        return None
    digest = hashlib.sha256()
    for path in [source, *_headers(root / op)]:
        digest.update(path.name.encode() + path.read_bytes())
    for path in _headers(root / COMMON):
        digest.update(f"{COMMON}/{path.name}".encode() + path.read_bytes())
    flags = CXX_FLAGS + LD_FLAGS + (NVCC_FLAGS if backend == "cuda" else [])
    digest.update(" ".join([*flags, torch.__version__, sys.version, _cpu_signature()]).encode())
    headers = [*((f"{op}/{h.name}", h) for h in _headers(root / op)),
               *((f"{COMMON}/{h.name}", h) for h in _headers(root / COMMON))]
    return Extension(op, backend, (source,), digest.hexdigest()[:12], tuple(headers))


def stage_inputs(ext: Extension) -> None:
    """Copy the sources and headers into the build folder where missing or different (call under `build_lock`).
    An unchanged copy keeps its old mtime, so ninja sees nothing newer than the build and only loads it."""
    for staged, origin in ext.inputs:
        data = origin.read_bytes()
        try:
            if staged.read_bytes() == data:
                continue
        except OSError:
            pass
        atomic_write_bytes(staged, data)


def has_compiler() -> bool:
    return shutil.which(os.environ.get("CXX", "c++")) is not None


def cpp_extension():
    """`torch.utils.cpp_extension`, imported without its import-time "No CUDA runtime is found" log line: on a
    CPU machine with nvcc installed every run would print it, and our errors are one line on stderr."""
    import logging

    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as module
    finally:
        quiet.setLevel(level)
    return module


def has_cuda_toolchain() -> bool:
    return torch.cuda.is_available() and (cpp_extension().CUDA_HOME is not None or shutil.which("nvcc") is not None)


def _why_not_buildable(ext: Extension) -> str | None:
    if not has_compiler():
        return "no C++ compiler found (set CXX or install g++)"
    if ext.backend == "cuda" and not has_cuda_toolchain():
        return "no CUDA device or no nvcc/CUDA_HOME"
    return None


def load_extension(op: str, backend: str) -> ModuleType:
    """The compiled module of (op, backend), compiling it on first use; ExtensionUnavailable says why not."""
    if backend not in SOURCE_OF_BACKEND:
        raise UnknownName("compiled backend", backend, SOURCE_OF_BACKEND)
    cache_key = (op, backend)
    if cache_key in _loaded:
        return _loaded[cache_key]
    if cache_key in _failed:
        raise ExtensionUnavailable(_failed[cache_key])
    try:
        module = _compile(op, backend)
    except ExtensionUnavailable as error:
        _failed[cache_key] = str(error)
        raise
    _loaded[cache_key] = module
    return module


def compile_text(op: str, backend: str) -> str:
    return (f"compiling the {'C++' if backend == 'cpp' else backend.upper()} {op} backend "
            "(once, about a minute; cached afterwards)...")


def _default_compile_notice(op: str, backend: str) -> None:
    """A minute of silence looks like a hang: say what is happening (above any tqdm bars, via tqdm.write). A run's
    worker process replaces this with a message to its supervisor, which owns the console and its bars."""
    text = compile_text(op, backend)
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    except ImportError:
        print(text, file=sys.stderr, flush=True)


# Called with (op, backend) just before a backend is compiled (not when it loads from the cache); replaceable.
compile_notice: Callable[[str, str], None] = _default_compile_notice


def will_compile(ext: Extension) -> bool:
    """Whether loading `ext` will run the compiler: nothing cached, the cache was built from another checkout's
    sources (the build dir is shared, keyed by source content; ninja rebuilds when the source paths differ), or a
    source or header is newer than the build (ninja goes by mtimes: a fresh clone of the same code rebuilds)."""
    if not ext.is_cached:
        return True
    ninja = ext.build_dir / "build.ninja"
    if not ninja.exists():
        return True
    text = ninja.read_text(encoding="utf-8", errors="replace")
    if not all(str(source) in text for source in ext.staged_sources):
        return True  # built before sources were staged (from a checkout's path): ninja rebuilds
    built = min(p.stat().st_mtime for p in ext.build_dir.glob(f"{ext.name}*.so"))
    for staged, origin in ext.inputs:
        try:
            if staged.stat().st_mtime > built or staged.read_bytes() != origin.read_bytes():
                return True
        except OSError:
            return True  # a staged copy is missing: staging writes it anew, newer than the build
    return False


def _compile(op: str, backend: str, root: Path | None = None) -> ModuleType:
    ext = extension(op, backend) if root is None else extension(op, backend, root)
    if ext is None:
        raise ExtensionUnavailable(
            f"op '{op}' has no {backend} backend (no csrc/{op}/{SOURCE_OF_BACKEND[backend]}); use backend='torch'."
        )
    reason = _why_not_buildable(ext)
    if reason:
        raise ExtensionUnavailable(f"cannot build the {backend} backend of '{op}': {reason}; use backend='torch'.")
    compiling = will_compile(ext)
    if compiling:
        compile_notice(op, backend)
    ext.build_dir.mkdir(parents=True, exist_ok=True)
    include = [str(ext.staged_root / op), str(ext.staged_root)]  # src/ so that "common/<name>.h" resolves
    setup = f"{'compiling' if compiling else 'loading'} the {backend} {op} backend"
    try:
        with one_time_setup(setup), build_lock(ext.build_dir):
            stage_inputs(ext)
            load = cpp_extension().load
            return load(
                name=ext.name,
                sources=[str(s) for s in ext.staged_sources],
                extra_cflags=list(CXX_FLAGS),  # copies: torch appends its libraries to these lists, and the flags
                extra_cuda_cflags=list(NVCC_FLAGS),  # are part of every later cache key
                extra_ldflags=list(LD_FLAGS),
                extra_include_paths=include,
                build_directory=str(ext.build_dir),
                verbose=os.environ.get("ASR_BENCH_VERBOSE_BUILD") == "1",
            )
    except Exception as error:  # compiler errors arrive as RuntimeError/CalledProcessError/ImportError
        first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ExtensionUnavailable(
            f"compiling the {backend} backend of '{op}' failed ({first}); build log in {ext.build_dir}, "
            "rerun with ASR_BENCH_VERBOSE_BUILD=1 to see it, or use backend='torch'."
        ) from error


@contextlib.contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """One builder per build folder, held with flock (the kernel releases it when its process dies).

    torch's own lock is a plain `lock` file that a process killed mid-compile leaves behind, after which every
    later load waits forever; holding our flock means nobody else is building, so such a file is stale and
    is removed before torch looks for it."""
    with open(build_dir / ".asr-bench-build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (build_dir / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------ CUDA syntax check (CI, no GPU needed)


def _nvcc_command(source: Path, output: Path, nvcc: str, root: Path | None = None) -> list[str]:
    include_paths = cpp_extension().include_paths

    root = source.parent.parent if root is None else root  # csrc/, so that "common/<name>.h" resolves
    includes = [*include_paths(), sysconfig.get_paths()["include"], str(source.parent), str(root)]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        nvcc, "-c", str(source), "-o", str(output), f"-arch={CHECK_ARCH}", *NVCC_FLAGS,
        "-Xcompiler", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DTORCH_EXTENSION_NAME=asr_bench_check",
        "-DTORCH_API_INCLUDE_EXTENSION_H", "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
        "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
        *[f"-I{p}" for p in includes],
    ]


def check_cuda(root: Path = CSRC, nvcc: str | None = None) -> int:
    """Compile every .cu under `root` to an object file; 0 if all compile, 1 otherwise (naming each failure)."""
    sources = sorted(root.glob("**/*.cu"))
    if not sources:
        print(f"check-cuda: no .cu files under {root}; nothing to check.")
        return 0
    nvcc = nvcc or shutil.which("nvcc") or "/usr/local/bin/nvcc"
    if not Path(nvcc).exists() and shutil.which(nvcc) is None:
        print(f"check-cuda: nvcc not found (looked on PATH and at {nvcc}); install the CUDA toolkit.", file=sys.stderr)
        return 1
    failed = []
    with tempfile.TemporaryDirectory() as scratch:
        for source in sources:
            result = subprocess.run(
                _nvcc_command(source, Path(scratch) / (source.stem + ".o"), nvcc, root), capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                print(f"check-cuda: ok     {source}")
            else:
                failed.append(source)
                print(f"check-cuda: FAILED {source}\n{result.stdout}{result.stderr}", file=sys.stderr)
    if failed:
        print(f"check-cuda: {len(failed)} of {len(sources)} file(s) failed: {', '.join(map(str, failed))}",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_bench.ops.build", description=__doc__.split("\n")[0])
    parser.add_argument("--check-cuda", action="store_true", help="compile every csrc/**/*.cu with nvcc (no GPU)")
    parser.add_argument("--root", type=Path, default=CSRC, help="the csrc folder (default: the repository's)")
    args = parser.parse_args(argv)
    if args.check_cuda:
        return check_cuda(args.root)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
