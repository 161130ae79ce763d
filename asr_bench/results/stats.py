"""Paired statistics: is a difference between two methods larger than the images (or the timer) explain?

Every accuracy number we store is a mean over per-image rows, so two methods run on the same images can be compared
image by image. For every pair of methods on the same dataset x scale x protocol x precision this gives:

- `delta`: the mean per-image difference a - b (for a metric; direction-free: the report knows which way is better);
- `low`, `high`: a 95 % paired bootstrap interval of that mean (resampling images; seeded, the seed and resample
  count are columns of the frame). It is the "expanded percentile" interval (Hesterberg 2015, "What teachers should
  know about the bootstrap", section 3.4): the plain percentile interval is too narrow on few images, so its level is
  widened to what a t interval on n - 1 degrees of freedom would need;
- `p`: a paired test of "no difference": the exact sign-flip permutation test of the mean difference when there are
  at most `EXACT_MAX_N` images (all 2^n sign patterns), the Wilcoxon signed-rank test (scipy) above that;
- `p_adjusted`: Holm's step-down correction across the family (one table: one protocol and precision, every
  dataset, scale, metric and pair in it), so bolding many columns does not find differences by chance.

Times are not paired (each timed call of a method is a separate call, not the same call of another method): the
timed calls of two cases are compared with the Mann-Whitney U test (exact for small counts), the difference of
medians with an independent bootstrap interval; Holm across one cost table.

What few images can establish: with n images the smallest two-sided sign-flip p is 2 / 2^n (n = 5: 0.0625), so on
Set5 no difference is significant at 0.05 however large and consistent it is; the interval still says how large.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_MAX_N = 12          # sign-flip exactly up to 2^12 = 4096 patterns; Wilcoxon signed-rank above
DEFAULT_SEED = 0
DEFAULT_RESAMPLES = 10_000
LEVEL = 0.95
ALPHA = 0.05

PAIR_COLUMNS = ["protocol", "precision", "dataset", "scale", "metric", "method_a", "method_b", "n", "mean_a",
                "mean_b", "delta", "low", "high", "p", "test", "p_adjusted", "family", "family_size",
                "significant", "seed", "resamples", "level"]


@dataclass(frozen=True)
class Settings:
    """How the statistics were made; stored with every row so a table can be reproduced exactly."""

    seed: int = DEFAULT_SEED
    resamples: int = DEFAULT_RESAMPLES
    level: float = LEVEL
    alpha: float = ALPHA


def min_sign_flip_p(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give on n images: 2 / 2^n (1 for n = 0)."""
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2 ** n)


def _expanded_alpha(n: int, level: float) -> float:
    """The percentile level that makes a percentile bootstrap interval as wide as a t interval would be."""
    from scipy import stats

    if n < 2:
        return 1.0 - level
    t = stats.t.ppf(0.5 + level / 2, n - 1)
    return float(2 * stats.norm.sf(math.sqrt(n / (n - 1)) * t))


def bootstrap_interval(diffs: Any, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                       level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the mean of `diffs` along its last axis, for every leading index at once.

    One set of resampling weights (multinomial counts, seeded) is drawn for all rows, so a whole table (or a
    simulation of a thousand samples) is one matrix product."""
    values = np.asarray(diffs, dtype=float)
    n = values.shape[-1]
    if n == 0:
        nan = np.full(values.shape[:-1], np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) / n        # (resamples, n)
    means = values @ weights.T                                                  # (..., resamples)
    alpha = _expanded_alpha(n, level)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=-1)
    return low, high


def _sign_patterns(n: int) -> np.ndarray:
    return np.array(list(itertools.product((1.0, -1.0), repeat=n))) if n else np.ones((1, 0))


def sign_flip_p(diffs: Any) -> np.ndarray:
    """Exact two-sided sign-flip permutation p of the mean difference, for every row of `diffs` (..., n)."""
    values = np.asarray(diffs, dtype=float)
    n = values.shape[-1]
    if n == 0:
        return np.ones(values.shape[:-1])
    patterns = _sign_patterns(n)                                  # (2^n, n)
    observed = np.abs(values.sum(axis=-1, keepdims=True))        # (..., 1)
    flipped = np.abs(values @ patterns.T)                        # (..., 2^n)
    tolerance = 1e-12 * np.maximum(1.0, np.abs(values).sum(axis=-1, keepdims=True))
    return (flipped >= observed - tolerance).mean(axis=-1)


def wilcoxon_p(diffs: Any) -> float:
    """Two-sided Wilcoxon signed-rank p (scipy); 1.0 when every difference is zero (nothing to rank)."""
    from scipy import stats

    values = np.asarray(diffs, dtype=float)
    if not np.any(values != 0):
        return 1.0
    return float(stats.wilcoxon(values, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_test(diffs: Any) -> tuple[float, str]:
    """(p, test name) of one set of per-image differences: exact sign-flip up to EXACT_MAX_N images, else Wilcoxon."""
    values = np.asarray(diffs, dtype=float)
    if len(values) <= EXACT_MAX_N:
        return float(sign_flip_p(values)), "sign-flip"
    return wilcoxon_p(values), "wilcoxon"


def holm(pvalues: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values: the i-th smallest times (m - i + 1), kept monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def _adjust(frame: Any, alpha: float) -> Any:
    """Holm per family (NaN p-values, pairs with nothing to test, are left out of the count)."""
    frame["p_adjusted"] = np.nan
    frame["family_size"] = 0
    for _, index in frame.groupby("family", sort=False).groups.items():
        p = frame.loc[index, "p"]
        tested = p.notna()
        frame.loc[p[tested].index, "p_adjusted"] = holm(p[tested].to_numpy())
        frame.loc[index, "family_size"] = int(tested.sum())
    frame["significant"] = frame["p_adjusted"] < alpha
    return frame


def pairwise(images: Any, cases: Any, metrics: Any = None, settings: Settings = Settings()) -> Any:
    """The pairwise frame of a run: one row per (protocol, precision, dataset, scale, metric, method a < method b).

    `images` and `cases` are `asr_bench.results.load(...)`'s frames. Only scored cases ("ok") with per-image values
    of the metric take part; images are paired by id and only images both methods have count (`n`). Method names
    are the case labels (the row names of the tables); a and b keep run order."""
    import pandas as pd

    if cases is None or len(cases) == 0 or images is None or len(images) == 0:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    scored = cases[cases["status"] == "ok"]
    known = set(images.columns) - {"case_id", "image", "lr_h", "lr_w", "sr_h", "sr_w"}
    names = [m for m in (metrics or sorted(known)) if m in known and not str(m).startswith("note_")]
    merged = images.merge(scored[["case_id", "label", "dataset", "scale", "protocol", "precision"]], on="case_id")
    labels = list(dict.fromkeys(scored["label"]))
    rows = []
    batches: dict[int, list[tuple[int, np.ndarray]]] = {}
    for (protocol, precision, dataset, scale), group in merged.groupby(
            ["protocol", "precision", "dataset", "scale"], sort=False):
        for metric in names:
            wide = group.pivot_table(index="image", columns="label", values=metric, aggfunc="first")
            present = [label for label in labels if label in wide.columns]
            for a, b in itertools.combinations(present, 2):
                pair = wide[[a, b]].astype(float).dropna()
                diffs = (pair[a] - pair[b]).to_numpy()
                row = {"protocol": protocol, "precision": precision, "dataset": dataset, "scale": scale,
                       "metric": metric, "method_a": a, "method_b": b, "n": len(diffs),
                       "mean_a": float(pair[a].mean()) if len(pair) else np.nan,
                       "mean_b": float(pair[b].mean()) if len(pair) else np.nan,
                       "delta": float(diffs.mean()) if len(diffs) else np.nan, "low": np.nan, "high": np.nan,
                       "p": np.nan, "test": "", "family": f"{protocol} | {precision}",
                       "seed": settings.seed, "resamples": settings.resamples, "level": settings.level}
                if len(diffs):
                    row["p"], row["test"] = paired_test(diffs)
                    batches.setdefault(len(diffs), []).append((len(rows), diffs))
                rows.append(row)
    for n, items in batches.items():  # one matrix product per image count, in blocks that keep memory small
        for start in range(0, len(items), 256):
            block = items[start:start + 256]
            low, high = bootstrap_interval(np.stack([d for _, d in block]), settings.resamples, settings.seed,
                                           settings.level)
            for (position, _), lo, hi in zip(block, low, high):
                rows[position]["low"], rows[position]["high"] = float(lo), float(hi)
    frame = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in ("p_adjusted", "family_size",
                                                                           "significant")])
    return _adjust(frame, settings.alpha)[PAIR_COLUMNS]


TIME_COLUMNS = ["protocol", "precision", "device", "dataset", "scale", "method_a", "method_b", "n_a", "n_b",
                "median_a", "median_b", "delta", "low", "high", "p", "test", "p_adjusted", "family",
                "family_size", "significant", "seed", "resamples", "level"]


def median_difference_interval(a: Any, b: Any, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                               level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of median(a) - median(b), each sample resampled on its own (unpaired)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    low, high = np.quantile(ma - mb, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def time_test(a: Any, b: Any) -> tuple[float, str]:
    """Two-sided Mann-Whitney U p of two sets of timed calls (exact when small and untied); NaN below 2 calls each."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), ""
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue), "mann-whitney"


def time_pairwise(cases: Any, settings: Settings = Settings(), intervals: bool = True) -> Any:
    """Pairs of measured cases (same dataset x scale x protocol x precision x device) compared on their timed calls
    (`time_samples_ms`); delta = median a - median b in ms. Cases stored without their timed calls have NaN p.
    `intervals=False` skips the bootstrap (the cost table's marks need only the tests)."""
    import pandas as pd

    if cases is None or len(cases) == 0 or "time_samples_ms" not in cases.columns:
        return pd.DataFrame(columns=TIME_COLUMNS)
    measured = cases[cases["status"].isin(["ok", "no-weights"]) & cases["time_ms"].notna()]
    rows = []
    for (protocol, precision, device, dataset, scale), group in measured.groupby(
            ["protocol", "precision", "device", "dataset", "scale"], sort=False):
        records = list(group[["label", "time_samples_ms", "time_ms"]].itertuples(index=False))
        for (a, sa, ta), (b, sb, tb) in itertools.combinations(records, 2):
            sa, sb = list(sa or []), list(sb or [])
            p, test = time_test(sa, sb)
            low, high = (median_difference_interval(sa, sb, settings.resamples, settings.seed, settings.level)
                         if intervals and len(sa) >= 2 and len(sb) >= 2 else (np.nan, np.nan))
            rows.append({"protocol": protocol, "precision": precision, "device": device, "dataset": dataset,
                         "scale": scale, "method_a": a, "method_b": b, "n_a": len(sa), "n_b": len(sb),
                         "median_a": float(ta), "median_b": float(tb), "delta": float(ta) - float(tb),
                         "low": low, "high": high, "p": p, "test": test,
                         "family": f"{protocol} | {precision} | {device}", "seed": settings.seed,
                         "resamples": settings.resamples, "level": settings.level})
    frame = pd.DataFrame(rows, columns=[c for c in TIME_COLUMNS if c not in ("p_adjusted", "family_size",
                                                                           "significant")])
    return _adjust(frame, settings.alpha)[TIME_COLUMNS]
