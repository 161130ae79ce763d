"""What a run prints while it works: an overall `case k/N` bar with ETA over the per-image bar, one line per
finished case, a timer that keeps ticking while a case is being profiled.

On a terminal: bars (tqdm) plus one line per finished case written above them. When stderr is not a
terminal (CI logs, `> log.txt`) or with `--no-progress`: no bars, no redraws, just the line per finished case,
so a log reads like a log. Cost-only cases (random weights) get no per-image bar: only their line.

The runner calls `RunConsole.start_case` / `finish_case` around each case and takes the per-image bar from
`image_bar`; everything about how it looks lives here.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

TICK_S = 1.0  # how often a bar's elapsed-time display is refreshed while nothing else moves it


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _NullBar:
    """The per-image bar's interface, doing nothing (log mode, cost-only cases)."""

    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


def case_line(record: Any, k: int, n: int, seconds: float | None) -> str:
    """'case 3/12 done  rt4ksr|embedded|2  cost only (random weights)  31.5 ms  [4.2 s]' (at most ~100 columns)."""
    status = {"ok": "scored", "no-weights": "cost only (random weights)", "unsupported": "unsupported scale",
              "error": "FAILED"}.get(record.status, record.status)
    parts = [f"case {k}/{n}", record.case_id, status]
    metrics = getattr(record, "metrics", {}) or {}
    if record.status == "ok" and metrics.get("psnr") is not None:
        parts.append(f"PSNR {metrics['psnr']:.2f}")
    if record.status in ("ok", "no-weights") and record.time_ms is not None:
        parts.append(f"{record.time_ms:.1f} ms")
    if record.status == "error" and record.error:
        parts.append(record.error[:50] + ("…" if len(record.error) > 50 else ""))
    if seconds is not None:
        parts.append(f"[{seconds:.1f} s]")
    return "  ".join(parts)


class _Ticker:
    """Refreshes a bar every TICK_S seconds from a daemon thread, so its elapsed time moves while work blocks."""

    def __init__(self, bar: Any) -> None:
        self.bar, self.stop = bar, threading.Event()
        self.thread = threading.Thread(target=self._run, name="asr-bench-ticker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(TICK_S):
            with contextlib.suppress(Exception):
                self.bar.refresh()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2 * TICK_S)


@contextlib.contextmanager
def ticking(bar: Any) -> Iterator[None]:
    """Keep `bar`'s timer moving during a long call that does not update it (profiling, a first compile)."""
    if isinstance(bar, _NullBar):
        yield
        return
    ticker = _Ticker(bar)
    try:
        yield
    finally:
        ticker.close()


def bars_wanted(enabled: bool, stream: TextIO | None = None) -> bool:
    return enabled and is_terminal(stream)


def image_bar(case_id: str, total: int, enabled: bool) -> Any:
    """The per-image bar under the overall one; none for cost-only cases (total 0) or without a terminal."""
    if not bars_wanted(enabled) or total <= 0:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=case_id, unit="img", position=1, leave=False, dynamic_ncols=True)


def write(text: str) -> None:
    """A line above the bars (tqdm.write keeps them intact), or a plain line on stderr in log mode."""
    if is_terminal():
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


class RunConsole:
    """The run's overall progress: one bar `case k/N` with ETA (terminal only) and a line per finished case."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.done, self.stream = total, 0, stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.bar: Any = None
        self._ticker: _Ticker | None = None
        self._started: float | None = None
        if bars_wanted(enabled, self.stream) and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="cases", unit="case", position=0, leave=True, dynamic_ncols=True,
                            file=self.stream, bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| "
                                                         "[{elapsed}<{remaining}]{postfix}")

    def skip(self) -> None:
        """A case finished in an earlier run: counted, not timed (so the ETA is about the work left)."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def start_case(self, case_id: str) -> None:
        self._started = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(case_id)
            self._ticker = _Ticker(self.bar)

    def finish_case(self, record: Any) -> str:
        """Count the case and print its line; returns the line."""
        if self._ticker is not None:
            self._ticker.close()
            self._ticker = None
        self.done += 1
        seconds = time.perf_counter() - self._started if self._started is not None else None
        line = case_line(record, self.done, self.total, seconds)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
            self.bar.update(1)
        else:
            print(line, file=self.stream, flush=True)
        return line

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.close()
        if self.bar is not None:
            self.bar.set_postfix_str("")
            self.bar.close()


_SHOWN: set[str] = set()


def show_once(messages: list[str]) -> None:
    """Warnings from case workers: each distinct one once per run, not once per case."""
    for text in messages:
        if text not in _SHOWN:
            _SHOWN.add(text)
            print(f"warning: {text}", file=sys.stderr)


def forget_shown() -> None:
    """A new run shows each worker warning again (`show_once` remembers them per run)."""
    _SHOWN.clear()
