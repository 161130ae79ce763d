"""The run's console: one line per finished case (always; the only output without a terminal), an overall
case k/N bar on a terminal, no per-image bar for cost-only cases, a ticking timer, the compile notice."""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from asr_bench.engine import console as C
from asr_bench.engine.records import NO_WEIGHTS, OK, CaseRecord
from asr_bench.ops import build


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(status: str = OK, **kw) -> CaseRecord:
    return CaseRecord("liif|set5|2", "liif", "liif", "edsr", "set5", "2", "gsasr", status=status, **kw)


def test_the_case_line_says_what_finished_and_fits_a_narrow_terminal():
    line = C.case_line(_record(metrics={"psnr": 33.456}, time_ms=12.34), 3, 12, 4.21)
    assert line == "case 3/12  liif|set5|2  scored  PSNR 33.46  12.3 ms  [4.2 s]"
    cost_only = C.case_line(_record(NO_WEIGHTS, time_ms=31.5), 4, 12, None)
    assert cost_only == "case 4/12  liif|set5|2  cost only (random weights)  31.5 ms"
    failed = C.case_line(_record("error", error="RuntimeError: " + "x" * 200), 5, 12, 1.0)
    assert len(failed) < 100 and "FAILED" in failed


def test_without_a_terminal_there_are_no_bars_only_one_line_per_case():
    stream = io.StringIO()
    run = C.RunConsole(2, enabled=True, stream=stream)
    assert run.bar is None
    run.skip()
    run.start_case("a|set5|2")
    run.finish_case(_record(time_ms=1.0))
    run.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("case 2/2  liif|set5|2  scored  1.0 ms  [")
    assert "\r" not in stream.getvalue()
    assert isinstance(C.image_bar("a", 5, enabled=True), C._NullBar)  # pytest's stderr is not a terminal


def test_on_a_terminal_an_overall_case_bar_counts_the_cases():
    stream = _Terminal()
    run = C.RunConsole(3, enabled=True, stream=stream)
    assert run.bar is not None
    run.start_case("liif|set5|2")
    run.finish_case(_record(time_ms=2.0))
    run.close()
    text = stream.getvalue()
    assert "cases 1/3" in text and "case 1/3  liif|set5|2  scored" in text
    assert C.RunConsole(3, enabled=False, stream=_Terminal()).bar is None  # --no-progress: lines only


def test_cost_only_cases_get_no_image_bar(monkeypatch):
    monkeypatch.setattr(C, "is_terminal", lambda stream=None: True)
    assert isinstance(C.image_bar("rt4ksr|set5|2", 0, enabled=True), C._NullBar)
    bar = C.image_bar("liif|set5|2", 5, enabled=True)
    try:
        assert not isinstance(bar, C._NullBar) and bar.total == 5
    finally:
        bar.close()


def test_ticking_refreshes_the_bar_while_a_call_blocks(monkeypatch):
    monkeypatch.setattr(C, "TICK_S", 0.01)
    refreshed = threading.Event()

    class Bar:
        def refresh(self) -> None:
            refreshed.set()

    with C.ticking(Bar()):
        assert refreshed.wait(10)  # the work "blocks" here; the ticker still refreshes


def test_a_first_compile_is_announced_and_a_cached_one_is_not(monkeypatch, tmp_path: Path, capsys):
    import torch.utils.cpp_extension as cpp

    source = tmp_path / "cpu.cpp"
    source.write_text("// nothing")
    ext = build.Extension("rasterize", "cpp", (source,), "k1")
    monkeypatch.setattr(build, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(build, "extension", lambda op, backend: ext)
    monkeypatch.setattr(build, "_why_not_buildable", lambda e: None)
    monkeypatch.setattr(cpp, "load", lambda **kwargs: "module")
    assert build._compile("rasterize", "cpp") == "module"
    assert "compiling the C++ rasterize backend (once, about a minute" in capsys.readouterr().err
    (ext.build_dir / f"{ext.name}.so").write_text("")  # cached, but built from another checkout's sources:
    (ext.build_dir / "build.ninja").write_text("build cpu.o: compile /elsewhere/csrc/rasterize/cpu.cpp\n")
    build._compile("rasterize", "cpp")  # built before sources were staged, from a checkout's path: ninja rebuilds
    assert "compiling the C++ rasterize backend" in capsys.readouterr().err
    staged = ext.staged_sources[0]
    (ext.build_dir / "build.ninja").write_text(f"build cpu.o: compile {staged}\n")  # cached from its staged copy
    os.utime(staged, (1_000_000, 1_000_000))
    build._compile("rasterize", "cpp")
    assert "compiling" not in capsys.readouterr().err
