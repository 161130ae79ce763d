"""Where a call's time goes: methods mark their stages, the profiler times them inside the same timed calls.

    from asr_bench.stages import stage
    with stage("encoder"):
        feat = self.encoder(x)

Outside profiling `stage` does nothing (one context-variable read). While the engine times a call it installs
a recorder: each stage's time is measured with a synchronised `perf_counter` (the device's queue drained at
both ends, so GPU work is counted where it was issued), summed over repeated entries within one call. The
engine stores each stage's median over the timed calls (`CaseRecord.stages`), and the stage times of a call add
up to its total less the unmarked glue.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

import torch

_RECORDER: contextvars.ContextVar["StageRecorder | None"] = contextvars.ContextVar("asr_bench_stages", default=None)


class StageRecorder:
    """Milliseconds per stage name for one call."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self._depth = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage `name` while a recorder is installed (nested stages count in the outer one only)."""
    recorder = _RECORDER.get()
    if recorder is None or recorder._depth:
        yield
        return
    recorder.sync()
    recorder._depth += 1
    begin = time.perf_counter()
    try:
        yield
    finally:
        recorder.sync()
        recorder._depth -= 1
        recorder.totals[name] = recorder.totals.get(name, 0.0) + (time.perf_counter() - begin) * 1000.0


@contextlib.contextmanager
def recording(device: torch.device) -> Iterator[StageRecorder]:
    """Install a recorder for the calls made inside the block."""
    recorder = StageRecorder(device)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)
