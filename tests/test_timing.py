"""Timing statistics: the stopping rule (scripted call times, no real timing), the median's interval, the summary."""
import math
import random

import numpy as np
import pytest
import torch

from asr_bench.engine import timing
from asr_bench.engine.timing import median_interval, time_until_stable, timing_stats

CPU = torch.device("cpu")


def scripted(monkeypatch, times):
    """Each 'call' takes the next of `times` ms: the rule is tested, not this machine's clock."""
    sequence = iter(times)
    calls = []

    def fake_timed(fn, device):
        calls.append(1)
        return next(sequence), len(calls)

    monkeypatch.setattr(timing, "timed", fake_timed)
    return calls


def test_steady_calls_stop_at_the_minimum_number_of_repeats(monkeypatch):
    calls = scripted(monkeypatch, [10.0] * 100)
    times, last, _ = time_until_stable(lambda: None, CPU, 0, repeats=5, max_repeats=50, rel_ci=0.05, max_seconds=60)
    assert len(times) == 5 and last == 5  # the last call's output comes back
    assert len(calls) == 5


def test_noisy_calls_repeat_until_the_median_is_known_or_max_repeats(monkeypatch):
    scripted(monkeypatch, [1.0, 10.0] * 100)
    times, _, _ = time_until_stable(lambda: None, CPU, 0, repeats=3, max_repeats=20, rel_ci=0.05, max_seconds=60)
    assert len(times) == 20
    scripted(monkeypatch, [100.0, 101.0, 300.0] + [100.0, 101.0] * 50)  # one outlier, then steady
    times, _, _ = time_until_stable(lambda: None, CPU, 0, repeats=3, max_repeats=50, rel_ci=0.05, max_seconds=60)
    assert 3 < len(times) < 50 and statistics_median(times) == pytest.approx(100.5, abs=0.6)


def test_the_time_budget_stops_the_repeats(monkeypatch):
    scripted(monkeypatch, [400.0, 800.0] * 50)  # noisy and slow: 1.2 s per pair
    times, _, _ = time_until_stable(lambda: None, CPU, 0, repeats=2, max_repeats=50, rel_ci=0.01, max_seconds=2.0)
    assert sum(times) >= 2000 and sum(times) - times[-1] < 2000


def statistics_median(values):
    return float(np.median(values))


@pytest.mark.parametrize("n", [8, 15, 30, 60])
def test_the_median_interval_covers_the_true_median_about_95_percent(n):
    """A property of the definition: for a continuous distribution the interval holds the median >= 95% of draws."""
    rng = random.Random(n)
    draws = 3000
    hits = sum(lo <= math.log(2) <= hi for lo, hi in
               (median_interval([rng.expovariate(1.0) for _ in range(n)]) for _ in range(draws)))
    assert 0.94 <= hits / draws <= 0.999


def test_timing_summary_equals_numpy():
    times = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    stats = timing_stats(times)
    q1, q3 = np.percentile(times, [25, 75])
    assert stats == {"time_ms": float(np.median(times)), "time_min_ms": 1.0, "time_max_ms": 9.0,
                     "time_iqr_ms": pytest.approx(q3 - q1), "time_repeats": 6,
                     "time_samples_ms": times}  # every timed call kept: the paired statistics test them
    assert timing_stats([4.0])["time_iqr_ms"] == 0.0 and timing_stats([])["time_ms"] is None


def test_one_time_setup_inside_a_timed_call_is_taken_out_and_named():
    """A call that compiles an op on first use (here: sleeps inside `one_time_setup`) is timed without it: the
    real clock, the known sleeps, and the setup reported back so the case can say what was left out."""
    import time as clock

    from asr_bench.stages import describe_setup, one_time_setup

    state = {"first": True}

    def call():
        clock.sleep(0.05)
        if state["first"]:
            state["first"] = False
            with one_time_setup("compiling the cpp test backend"):
                clock.sleep(0.6)

    times, _, setup = time_until_stable(call, CPU, 0, repeats=2, max_repeats=2, rel_ci=1.0, max_seconds=60)
    assert [e.what for e in setup] == ["compiling the cpp test backend"] and setup[0].seconds >= 0.6
    assert all(45.0 <= t < 300.0 for t in times)  # 50 ms of work each; the 600 ms of setup is not in the first
    assert describe_setup(setup).startswith("excludes 0.6 s of one-time setup")
    times, _, setup = time_until_stable(call, CPU, 0, repeats=1, max_repeats=1, rel_ci=1.0, max_seconds=60)
    assert setup == []  # once per process: the next measurement has nothing to take out
