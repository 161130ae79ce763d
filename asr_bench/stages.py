"""Where a call's time goes: methods mark their stages, the profiler times them inside the same timed calls.

    from asr_bench.stages import stage
    with stage("encoder"):
        feat = self.encoder(x)

Outside profiling `stage` does nothing (one context-variable read). While the engine times a call it installs
a recorder: each stage's time is measured with a synchronised `perf_counter` (the device's queue drained at
both ends, so GPU work is counted where it was issued), summed over repeated entries within one call. The
engine stores each stage's median over the timed calls (`CaseRecord.stages`), and the stage times of a call add
up to its total less the unmarked glue.

Work a call does once per process (building or loading a compiled op, its self-test) is marked with
`one_time_setup`: its time is taken out of the stage it happened in and out of the timed call
(asr_bench.engine.timing), and the case says how much was taken out. Otherwise a run's first call, with
`profiling.warmup: 0`, would store a minute of compiling as the method's time.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

_RECORDER: contextvars.ContextVar["StageRecorder | None"] = contextvars.ContextVar("asr_bench_stages", default=None)


@dataclass(frozen=True)
class SetupEvent:
    """One piece of one-time work: what it was and how long it took."""

    what: str
    seconds: float


_SETUP: list[SetupEvent] = []


@contextlib.contextmanager
def one_time_setup(what: str) -> Iterator[None]:
    """Mark work done once per process ('compiling the cpp rasterize backend'): not counted in any timing."""
    begin = time.perf_counter()
    try:
        yield
    finally:
        _SETUP.append(SetupEvent(what, time.perf_counter() - begin))


def setup_seconds() -> float:
    """Seconds of one-time setup so far in this process (a timer subtracts the change across its call)."""
    return sum(event.seconds for event in _SETUP)


def setup_events() -> list[SetupEvent]:
    """Every one-time setup so far, in order (a caller slices off the ones before its own start)."""
    return list(_SETUP)


def describe_setup(events: list[SetupEvent]) -> str:
    """'excludes 53.1 s of one-time setup (compiling the cpp rasterize backend)': the note a timed figure gets."""
    seconds = sum(event.seconds for event in events)
    what = ", ".join(dict.fromkeys(event.what for event in events))
    return f"excludes {seconds:.1f} s of one-time setup inside the timed calls ({what})"


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
    begin, setup = time.perf_counter(), setup_seconds()
    try:
        yield
    finally:
        recorder.sync()
        recorder._depth -= 1
        seconds = time.perf_counter() - begin - (setup_seconds() - setup)
        recorder.totals[name] = recorder.totals.get(name, 0.0) + max(seconds, 0.0) * 1000.0


@contextlib.contextmanager
def recording(device: torch.device) -> Iterator[StageRecorder]:
    """Install a recorder for the calls made inside the block."""
    recorder = StageRecorder(device)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)
