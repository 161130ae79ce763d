"""How a failed case is described: a crash names its signal; an allocator failure is called out of memory.

Issue 9 list 8: a segfault used to read "killed by signal 11 (out of memory?)" while torch's own CPU
allocation failure ("DefaultCPUAllocator: can't allocate memory") was not called out of memory.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.config import parse_config
from asr_bench.engine.runner import exit_reason, one_line, run_benchmark


@pytest.mark.parametrize("code,expect", [(-11, "killed by signal 11 (SIGSEGV)"), (-6, "killed by signal 6 (SIGABRT)"),
                                         (1, "exit code 1"), (None, "exit code None")])
def test_exit_reason_names_the_signal(code, expect):
    assert exit_reason(code) == expect and "memory" not in exit_reason(code)


def test_only_sigkill_hints_at_the_out_of_memory_killer():
    assert exit_reason(-9).startswith("killed by signal 9 (SIGKILL") and "out-of-memory" in exit_reason(-9)


def test_a_real_cpu_allocator_failure_is_called_out_of_memory():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2 ** 50, dtype=torch.uint8)  # 1 PiB: the allocator refuses, nothing is allocated
    text = one_line(info.value)
    assert text.startswith("out of memory: DefaultCPUAllocator: can't allocate memory") and "\n" not in text


def test_memory_error_is_out_of_memory_and_other_errors_keep_their_type():
    assert one_line(MemoryError()) == "out of memory"
    assert one_line(ValueError("bad\nsecond line")) == "ValueError: bad"


PLUGIN = '''
import os
import signal
import torch.nn.functional as F
from asr_bench.registry import MethodSpec
from asr_bench.upsampler import Upsampler


class Crashes(Upsampler):
    def forward_size(self, lr, size, scale):
        os.kill(os.getpid(), signal.SIGSEGV)  # what a segfaulting extension does to its process


class Fine(Upsampler):
    def forward_size(self, lr, size, scale):
        return F.interpolate(lr, size=size, mode="bilinear", align_corners=False)


METHODS = [MethodSpec("t-segfault", lambda encoder="none", preset=None, weights=None: Crashes(), ("none",),
                      needs_weights=False),
           MethodSpec("t-fine", lambda encoder="none", preset=None, weights=None: Fine(), ("none",),
                      needs_weights=False)]
'''


def test_a_segfaulting_case_in_its_worker_is_recorded_with_the_signal_named(tmp_path):
    plugin = tmp_path / "segfault_methods.py"
    plugin.write_text(PLUGIN)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "a.png")
    config = parse_config({"methods": ["t-segfault", "t-fine"], "datasets": [str(tmp_path / "imgs")], "scales": [2],
                           "metrics": ["psnr"], "device": "cpu", "plugins": [str(plugin)], "visuals": {"crop": 0},
                           "profiling": {"warmup": 0, "repeats": 1, "memory": True, "flops": False},
                           "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})
    result = run_benchmark(config, progress=False, isolate=True, render=False)
    by_method = {c.method: c for c in result.cases}
    assert by_method["t-segfault"].status == "error"
    assert "killed by signal 11 (SIGSEGV)" in by_method["t-segfault"].error
    assert "memory" not in by_method["t-segfault"].error
    assert by_method["t-fine"].status == "ok"  # the run went on
    stored = [json.loads(line) for line in (tmp_path / "run" / "cases.jsonl").read_text().splitlines()]
    assert any("SIGSEGV" in row["error"] for row in stored)
