"""Which backend each op call actually ran, so that a run can store it per case.

A compiled backend can be skipped at call time (not built here, wrong dtype, failed its self-test), so the
backend a case asked for ("auto") is not the one it got. Every op front calls `record(op, backend)`; a caller reads

    with ops.backend_log() as used:      # {op: backend} of the calls inside the block
        ...                              # e.g. {"meta_upscale": "cpp"}; "cpp,torch" when calls differed
    used_backends(); reset_used_backends()   # the same, process-wide since the last reset
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_used: dict[str, str] = {}
_open_logs: list[dict[str, str]] = []


def _add(log: dict[str, str], op: str, backend: str) -> None:
    known = log.get(op)
    if known is None:
        log[op] = backend
    elif backend not in known.split(","):
        log[op] = f"{known},{backend}"  # in order of first use


def record(op: str, backend: str) -> None:
    """Note that a call of `op` ran on `backend` (the op fronts call this; cheap: a dict update)."""
    _add(_used, op, backend)
    for log in _open_logs:
        _add(log, op, backend)


def used_backends() -> dict[str, str]:
    """{op: backend} of every op call since the last `reset_used_backends` (or since the process started)."""
    return dict(_used)


def reset_used_backends() -> None:
    """Forget what `used_backends` has seen (e.g. at the start of a case)."""
    _used.clear()


@contextmanager
def backend_log() -> Iterator[dict[str, str]]:
    """A dict filled with {op: backend} by the op calls made inside the block (blocks may nest)."""
    log: dict[str, str] = {}
    _open_logs.append(log)
    try:
        yield log
    finally:
        _open_logs.remove(log)


# -- FLOPs of custom ops ------------------------------------------------------------------------------------------
# torch's FLOP counter sees no FLOPs inside a compiled op (and only some of a torch fallback's): inside an open
# count, an op call books what its spec declares instead of what the counter saw of it.
_flop_counts: list[tuple[dict[str, float], Callable[[], float]]] = []


@contextmanager
def counting_flops(total: Callable[[], float]) -> Iterator[dict[str, float]]:
    """A dict filled with {op: declared FLOPs minus what `total()` (the torch counter) saw inside its calls}."""
    log: dict[str, float] = {}
    entry = (log, total)
    _flop_counts.append(entry)
    try:
        yield log
    finally:
        _flop_counts.remove(entry)


@contextmanager
def op_flops(op: str, declared: Callable[[], float]) -> Iterator[None]:
    """Wrap one op call: inside an open count, the call counts `declared()` FLOPs (cheap: nothing when no count)."""
    if not _flop_counts:
        yield
        return
    before = [total() for _, total in _flop_counts]
    yield
    flops = declared()
    for (log, total), start in zip(_flop_counts, before):
        log[op] = log.get(op, 0.0) + flops - (total() - start)
