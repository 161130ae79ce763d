"""bench-ops reports as it goes: each row is printed when it is measured, and a row past the time limit is
reported as skipped (issue 24). A toy op stands in for the real ones, whose workloads take minutes."""
from __future__ import annotations

import time

import torch

from asr_bench.ops import bench
from asr_bench.ops.spec import OpSpec, Workload


def toy_op(seconds_by_workload: dict[str, float], seen: dict[str, str], capsys) -> OpSpec:
    """An op whose front sleeps as long as its workload says; making a workload's inputs notes what had been
    printed by then."""

    def front(name: str, backend: str = "auto") -> torch.Tensor:
        time.sleep(seconds_by_workload[name])
        return torch.zeros(1)

    def maker(name: str):
        def make(device: torch.device) -> list[str]:
            seen[name] = capsys.readouterr().out
            return [name]

        return make

    workloads = tuple(Workload(name, maker(name)) for name in seconds_by_workload)
    return OpSpec("toy", front, reference=lambda name: torch.zeros(1), workloads=workloads)


def test_a_finished_row_is_printed_before_the_next_workload_starts(monkeypatch, capsys):
    seen: dict[str, str] = {}
    monkeypatch.setattr(bench, "op_specs", lambda: [toy_op({"first": 0.0, "second": 0.0}, seen, capsys)])
    assert bench.main(["--repeats", "1", "--no-memory"]) == 0
    rest = capsys.readouterr().out
    assert "toy" not in seen["first"]  # nothing measured yet when the first workload starts: the header alone
    before_second = [line for line in seen["second"].splitlines() if line.startswith("toy")]
    assert len(before_second) == 1 and " first " in before_second[0]  # printed before the second began
    assert " second " in rest


def test_a_row_over_the_limit_is_reported_as_skipped_and_the_run_goes_on(monkeypatch, capsys):
    seen: dict[str, str] = {}
    monkeypatch.setattr(bench, "op_specs", lambda: [toy_op({"slow": 30.0, "quick": 0.0}, seen, capsys)])
    start = time.perf_counter()
    assert bench.main(["--json", "--repeats", "1", "--no-memory", "--workload-limit-s", "0.3"]) == 0
    elapsed = time.perf_counter() - start
    out = seen["quick"] + capsys.readouterr().out
    rows = {row["workload"]: row for row in map(bench_json, out.splitlines())}
    assert elapsed < 10  # the 30 s call was cut short
    assert rows["slow"]["seconds"] is None and rows["slow"]["thread_seconds"] is None
    assert rows["slow"]["note"] == "skipped: over the 0.3 s limit per row (--workload-limit-s)"
    assert rows["quick"]["note"] == "" and rows["quick"]["seconds"] is not None


def test_thread_time_is_cpu_time_of_this_thread_not_wall_time():
    wall, cpu = bench.time_call(lambda: time.sleep(0.05), torch.device("cpu"), repeats=3, warmup=0)
    assert wall >= 0.05 and cpu < 0.02  # sleeping takes wall time and (almost) no CPU


def test_a_negative_limit_is_one_line_and_exit_2(capsys):
    assert bench.main(["--workload-limit-s", "-1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def bench_json(line: str) -> dict:
    import json

    return json.loads(line)
