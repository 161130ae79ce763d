"""One allocator setting for every case worker, so that timings repeat.

glibc's malloc serves blocks above a dynamic threshold (up to 32 MiB) with mmap and unmaps them on free, and
trims the heap top back to the OS: a model whose activations are tens of MiB then page-faults its memory in again
on every call (system time of 4-10 % in a GSASR decoder, and fault counts varying 14x between two identical
processes). The steady setting keeps freed memory in the process instead: no mmap for large blocks
(`M_MMAP_MAX` 0), no trimming (`M_TRIM_THRESHOLD` -1, which mallopt(3) defines as "never": the int maximum,
2^31 - 1, still let a free trim a heap top above 2 GiB, and a 480 px GSASR tile frees such blocks) and the heap
grown in 64 MiB steps
(`M_TOP_PAD`; untouched pages cost no RSS), and one arena for every thread (`M_ARENA_MAX` 1): a thread's own
arena lives in mmap'd 64 MiB heaps that the first three settings do not hold, so GSASR's concurrent tiles
(`tile_workers`, one Python thread each) faulted 158 M times (357 s of system time) in one 720p frame. It is
applied with `mallopt` in the case's process right before its timed calls (every method alike;
asr_bench/engine/execute.py measure_cost), the arena limit already when the case starts (`one_arena`), and
recorded in run.json's environment.

The peak-memory call runs before the rest of it, under glibc's defaults but for the arena limit: kept memory
cannot always be reused by a later, differently aligned request, which raised GSASR x4 48x48's peak RSS increase
from 84-87 MB to 103-115 MB when the whole setting was on from the start. The arena limit alone does not
inflate it: the same call at 2 threads, 114 MB under the defaults, 109-110 MB with one arena from the start.
Measured on GSASR x4 48x48 (1 thread): minor faults per call 18.2k -> 1, system time 0.04 s -> 0.0003 s.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

# glibc's mallopt parameter numbers (malloc.h) and the steady values.
_PARAMS = {"M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_MAX": -4, "M_ARENA_MAX": -8}
STEADY = {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1, "M_TOP_PAD": 64 * 2**20, "M_ARENA_MAX": 1}

_applied: dict[str, Any] | None = None


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def one_arena() -> bool:
    """Hold every thread of this process to glibc's main arena from now on (`M_ARENA_MAX` 1); True if applied.

    Why it comes before a case's first call, not with the rest of the setting: a thread takes its arena at its
    first malloc and keeps it, and `M_ARENA_MAX` only stops new arenas. The memory call's intra-op threads made one,
    later threads (GSASR's tile workers) were then handed it in turn, and it serves multi-MiB blocks with mmap
    whatever `M_MMAP_MAX` says: one 720p frame still faulted 81.8 M times (196 s of system time)."""
    libc = _libc()
    return libc is not None and libc.mallopt(_PARAMS["M_ARENA_MAX"], ctypes.c_int(STEADY["M_ARENA_MAX"])) == 1


def apply_steady() -> dict[str, Any]:
    """Apply the steady setting to this process once; returns what was applied (or why nothing was)."""
    global _applied
    if _applied is not None:
        return _applied
    libc = _libc()
    if libc is None:
        _applied = {"allocator": "system default", "setting": None,
                    "note": "not glibc: the system allocator runs with its defaults"}
        return _applied
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    failed = [name for name, value in STEADY.items() if libc.mallopt(_PARAMS[name], ctypes.c_int(value)) != 1]
    _applied = {"allocator": f"glibc {libc.gnu_get_libc_version().decode()} malloc",
                "setting": {k: v for k, v in STEADY.items() if k not in failed},
                **({"note": f"mallopt refused {', '.join(failed)}"} if failed else {})}
    return _applied


def describe() -> dict[str, Any]:
    """What the workers apply (for run.json), without applying it here."""
    libc = _libc()
    if libc is None:
        return {"allocator": "system default", "setting": None}
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    return {"allocator": f"glibc {libc.gnu_get_libc_version().decode()} malloc", "setting": dict(STEADY),
            "applied_by": "mallopt: M_ARENA_MAX when each case starts, the rest before its timed calls, after its "
                          "memory call (asr_bench/engine/allocator.py)"}
