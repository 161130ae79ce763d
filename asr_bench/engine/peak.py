"""This machine's fp32 GEMM rate: the yardstick beside each time in the cost table ("% of GEMM peak").

Measured once per run (when run.json is written) with `torch.mm` on square fp32 matrices at the thread count
the cases run with, the best of a few calls per size; a case's "% of peak" is then its FLOPs per second
(asr_bench.engine.execute.count_flops) over this rate. It is a practical peak (what the BLAS reaches), not the
datasheet's.
"""
from __future__ import annotations

import functools
import time
from typing import Any

import torch

SIZES = (1024, 2048)
CALLS = 3


@functools.lru_cache(maxsize=4)
def gemm_peak(device: str) -> dict[str, Any] | None:
    """{'gflops', 'device', 'threads', 'how'} for `device` ('cpu' or 'cuda[:i]'); None where not measurable."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        return None
    best = 0.0
    try:
        for n in SIZES:
            a = torch.randn(n, n, device=dev)
            b = torch.randn(n, n, device=dev)
            torch.mm(a, b)  # warm-up: BLAS/oneDNN initialisation
            for _ in range(CALLS):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                start = time.perf_counter()
                torch.mm(a, b)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    except RuntimeError:  # e.g. out of memory on a busy GPU: no yardstick, nothing else lost
        return None
    tf32 = dev.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return {"gflops": round(best, 1), "device": str(dev), "threads": torch.get_num_threads() if dev.type == "cpu" else None,
            "how": f"torch.mm fp32{' (TF32 allowed)' if tf32 else ''} {'/'.join(map(str, SIZES))} squares, "
                   f"best of {CALLS} calls per size, wall time"}
