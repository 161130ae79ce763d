"""Paired statistics (asr_bench.results.stats): checked by simulation and by hand arithmetic, not by stored outputs."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from asr_bench.results.stats import (EXACT_MAX_N, Settings, bootstrap_interval, holm, min_sign_flip_p, paired_test,
                                     pairwise, sign_flip_p, time_pairwise)


def test_bootstrap_interval_covers_the_true_mean_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(2025)
    true_delta, n, samples = 0.12, 20, 1000
    # skewed per-image differences (a gamma around the true mean), as PSNR gains are: harder than normal data
    diffs = true_delta + (rng.gamma(4.0, 0.05, size=(samples, n)) - 0.2)
    low, high = bootstrap_interval(diffs, resamples=2000, seed=7)
    coverage = np.mean((low <= true_delta) & (true_delta <= high))
    assert 0.93 <= coverage <= 0.97, coverage


def test_bootstrap_interval_is_seeded_and_shrinks_to_a_point_for_constant_differences():
    d = np.random.default_rng(1).normal(size=15)
    assert bootstrap_interval(d, 500, seed=3) == bootstrap_interval(d, 500, seed=3)
    low, high = bootstrap_interval(np.full(20, 0.05), 500, seed=0)
    assert low == pytest.approx(0.05) and high == pytest.approx(0.05)


@pytest.mark.parametrize("n", [8, 20])
def test_p_values_are_uniform_under_the_null(n):
    """Sign-flip (n <= 12) and Wilcoxon (n > 12) p-values of symmetric null differences: KS test against U(0, 1)."""
    rng = np.random.default_rng(100 + n)
    p = np.array([paired_test(rng.standard_t(5, size=n))[0] for _ in range(1000)])
    assert paired_test(np.ones(n))[1] == ("sign-flip" if n <= EXACT_MAX_N else "wilcoxon")
    # the exact test's p lives on a grid of step 2/2^n (2/256 for n = 8): finer than the KS test can see at 1000
    assert sps.kstest(p, "uniform").pvalue > 0.01
    assert abs(np.mean(p <= 0.05) - 0.05) < 0.025  # the rejection rate at 0.05 is about 0.05


def test_sign_flip_p_matches_a_slow_enumeration():
    d = np.array([0.3, -0.1, 0.25, 0.4, -0.05, 0.2])
    count = sum(abs(sum(s * x for s, x in zip(signs, d))) >= abs(d.sum()) - 1e-12
                for signs in itertools.product((1, -1), repeat=len(d)))
    assert sign_flip_p(d) == pytest.approx(count / 2 ** len(d))
    assert min_sign_flip_p(5) == 2 / 32 and sign_flip_p(np.full(5, 1.0)) == pytest.approx(2 / 32)


def _store(values: dict[str, np.ndarray], dataset: str = "set5", scale: str = "4") -> tuple[pd.DataFrame, pd.DataFrame]:
    cases = pd.DataFrame([{"case_id": f"{label}|{dataset}|{scale}", "label": label, "dataset": dataset,
                           "scale": scale, "protocol": "gsasr", "precision": "fp32", "status": "ok"}
                          for label in values])
    images = pd.DataFrame([{"case_id": f"{label}|{dataset}|{scale}", "image": f"img{i}", "psnr": float(v)}
                           for label, vals in values.items() for i, v in enumerate(vals)])
    return cases, images


def test_plus_five_hundredths_of_a_db_on_every_one_of_20_images_is_significant():
    base = np.random.default_rng(3).uniform(25, 35, size=20)
    cases, images = _store({"ours": base + 0.05, "theirs": base})
    row = pairwise(images, cases, ["psnr"], Settings(resamples=2000)).iloc[0]
    assert row["test"] == "wilcoxon" and row["n"] == 20
    assert row["delta"] == pytest.approx(0.05) and row["low"] == pytest.approx(0.05, abs=1e-9)
    assert row["p"] < 1e-3 and bool(row["significant"])


def test_identical_outputs_are_tied():
    base = np.random.default_rng(4).uniform(25, 35, size=20)
    cases, images = _store({"ours": base.copy(), "theirs": base.copy()})
    row = pairwise(images, cases, ["psnr"], Settings(resamples=500)).iloc[0]
    assert row["delta"] == 0 and row["p"] == 1.0 and not bool(row["significant"])
    assert row["low"] == 0 and row["high"] == 0


def test_five_images_can_never_be_significant_at_005():
    cases, images = _store({"ours": np.arange(5) + 3.0, "theirs": np.arange(5) + 0.0})
    row = pairwise(images, cases, ["psnr"], Settings(resamples=500)).iloc[0]
    assert row["test"] == "sign-flip" and row["p"] == pytest.approx(0.0625) and not bool(row["significant"])
    assert row["low"] == pytest.approx(3.0) and row["seed"] == 0 and row["resamples"] == 500


def test_holm_by_hand():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 = 1.0; 0.9 x 1 raised to 1.0 (monotone)


def test_holm_runs_across_the_whole_table():
    rng = np.random.default_rng(5)
    base = rng.uniform(25, 35, size=20)
    cases_a, images_a = _store({"a": base + 0.05, "b": base, "c": base + rng.normal(0, 0.2, 20)}, scale="2")
    cases_b, images_b = _store({"a": base + 0.05, "b": base, "c": base + rng.normal(0, 0.2, 20)}, scale="3")
    frame = pairwise(pd.concat([images_a, images_b]), pd.concat([cases_a, cases_b]), ["psnr"],
                     Settings(resamples=200))
    assert len(frame) == 6 and set(frame["family_size"]) == {6}
    assert frame["p_adjusted"].to_numpy() == pytest.approx(holm(frame["p"].to_numpy()))


def test_times_are_compared_on_the_timed_calls():
    cases = pd.DataFrame([
        {"label": "fast", "time_samples_ms": [10.0, 10.2, 9.9, 10.1, 10.3], "time_ms": 10.1},
        {"label": "slow", "time_samples_ms": [12.0, 12.4, 11.9, 12.2, 12.1], "time_ms": 12.1},
        {"label": "noisy", "time_samples_ms": [1.7, 547.0, 9.0, 30.0, 11.0], "time_ms": 11.0},
    ]).assign(status="ok", protocol="gsasr", precision="fp32", device="cpu", dataset="set5", scale="4")
    frame = time_pairwise(cases, Settings(resamples=500)).set_index(["method_a", "method_b"])
    # two groups of five, all 'fast' below all 'slow': exact p = 2 / C(10, 5) = 2/252; Holm x3
    assert frame.loc[("fast", "slow"), "p"] == pytest.approx(2 / 252)
    assert frame.loc[("fast", "slow"), "p_adjusted"] == pytest.approx(3 * 2 / 252)
    assert bool(frame.loc[("fast", "slow"), "significant"])
    assert not bool(frame.loc[("fast", "noisy"), "significant"])  # median 11.0 vs 10.1, but the range 1.7-547 ms
