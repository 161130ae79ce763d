"""The steady malloc setting: a freed large block is reused without page faults, and run.json records it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asr_bench.engine.allocator import STEADY, describe
from asr_bench.engine.environment import environment

PROBE = r"""
import json, resource, sys
import torch
if sys.argv[1] == "steady":
    from asr_bench.engine.allocator import apply_steady
    apply_steady()
def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # 64 MiB, written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(4):  # warm-up: the heap settles within a few calls
    faults_of_one_block()
print(json.dumps([faults_of_one_block() for _ in range(3)]))
"""


def faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or describe()["setting"] is None, reason="needs glibc")
def test_steady_setting_reuses_freed_memory_without_page_faults():
    # A 64 MiB block is 16384 pages: glibc's default mmaps and unmaps it, faulting every page in again each time;
    # the steady setting keeps it in the heap once warm.
    default, steady = faults("default"), faults("steady")
    assert min(default) > 8000, default
    assert max(steady) < 200, steady


def test_run_json_environment_records_the_setting():
    record = environment(__import__("torch").device("cpu"))["allocator"]
    assert record == describe()
    if record["setting"] is not None:
        assert record["setting"] == STEADY
