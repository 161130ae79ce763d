"""The steady malloc setting: a freed large block is reused without page faults, and run.json records it."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

from asr_bench.engine.allocator import STEADY, describe
from asr_bench.engine.environment import environment

PROBE = r"""
import ctypes, json, sys
import torch
if sys.argv[1] == "steady":
    from asr_bench.engine.allocator import apply_steady
    apply_steady()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
mib = int(sys.argv[2])
if mib == 64:
    block = torch.ones(64 * 2**20 // 4)
    held = libc.mallinfo2()
    del block
else:  # malloc and free straight away, so the block lies at the heap's top; untouched, it costs no memory
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(mib * 2**20)
    if not block:
        print(json.dumps(None))
        raise SystemExit
    held = libc.mallinfo2()
    libc.free(block)
freed = libc.mallinfo2()
print(json.dumps({"mmapped_while_held": held.hblkhd, "heap_while_held": held.arena, "heap_after_free": freed.arena}))
"""


def allocator_state(mode: str, mib: int = 64) -> dict[str, int] | None:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(mib)], capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or describe()["setting"] is None or not has_mallinfo2(),
                    reason="needs glibc >= 2.33 (mallinfo2)")
def test_steady_setting_keeps_large_blocks_in_the_heap_after_free():
    """glibc's default serves a 64 MiB block by mmap and unmaps it on free (every page faulted in again on the
    next call); the steady setting serves it from the heap and keeps the heap when it is freed."""
    default, steady = allocator_state("default"), allocator_state("steady")
    mib = 64 * 2**20
    assert default["mmapped_while_held"] >= mib
    assert steady["mmapped_while_held"] < mib and steady["heap_while_held"] >= mib
    assert steady["heap_after_free"] >= mib  # not trimmed back to the OS


@pytest.mark.skipif(not sys.platform.startswith("linux") or describe()["setting"] is None or not has_mallinfo2(),
                    reason="needs glibc >= 2.33 (mallinfo2)")
def test_steady_setting_keeps_a_block_above_2_gib_after_free():
    """A heap top above 2 GiB is not trimmed either (mallopt's int maximum as the threshold still trimmed it: a
    720p GSASR frame's tiles free such blocks)."""
    state = allocator_state("steady", 2300)
    if state is None:
        pytest.skip("this machine refused 2.3 GiB of address space")
    assert state["mmapped_while_held"] < 2300 * 2**20 and state["heap_while_held"] >= 2300 * 2**20
    assert state["heap_after_free"] >= 2300 * 2**20


def test_run_json_environment_records_the_setting():
    record = environment(__import__("torch").device("cpu"))["allocator"]
    assert record == describe()
    if record["setting"] is not None:
        assert record["setting"] == STEADY


ARENAS = r"""
import ctypes, sys, threading
if sys.argv[1] == "one":
    from asr_bench.engine.allocator import one_arena
    assert one_arena()
blocks = []
worker = threading.Thread(target=lambda: blocks.append(bytearray(8 * 2**20)))  # a new thread's first mallocs
worker.start()
worker.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" section per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or describe()["setting"] is None,
                    reason="glibc's malloc_stats")
def test_one_arena_keeps_a_new_thread_on_the_main_heap():
    """Under glibc's defaults a new thread's allocations make it an arena of its own (mmap'd heaps, which the rest
    of the setting does not hold); after `one_arena` they come from the main one."""
    def arenas(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, timeout=120,
                             check=True)
        return out.stderr.count("Arena ")
    assert arenas("default") >= 2
    assert arenas("one") == 1
