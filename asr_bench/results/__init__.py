"""Reading a run folder: the public API for the report and for users' own analysis.

    import asr_bench.results as results
    run = results.load("results/quick")
    run.cases    # pandas DataFrame, one row per case: the CaseRecord fields, one column per metric
                 # and `note_<metric>` holding why a metric is n/a
    run.images   # pandas DataFrame, one row per (case, image)
    run.run      # run.json as a dict (environment, resolved config)
    run.pairwise()       # every pair of methods per dataset x scale x protocol x precision x metric: delta = a - b,
                         # its 95 % paired bootstrap interval (low, high), p, p_adjusted (Holm), significant
    run.time_pairwise()  # the same for the timed calls (unpaired: Mann-Whitney U, difference of medians)

Nothing here imports the engine: the store's contract is `asr_bench.results.schema`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .reading import RunData, read_run
from .schema import SCHEMA_VERSION, CaseRecord, ImageRecord
from .stats import Settings

__all__ = ["load", "Results", "read_run", "RunData", "CaseRecord", "ImageRecord", "SCHEMA_VERSION",
           "cases_frame", "images_frame", "Settings"]


@dataclass
class Results:
    """A run's results as DataFrames, plus the records they were built from (for code that wants objects)."""

    run_dir: Path
    run: dict[str, Any]
    cases: Any            # pandas.DataFrame
    images: Any           # pandas.DataFrame
    data: RunData

    @property
    def partial(self) -> list[str]:
        """What is missing from the run (a shard that has not run or finished, unfinished cases); [] if complete."""
        return self.data.partial

    def pairwise(self, metrics: Any = None, settings: Settings = Settings()) -> Any:
        """Columns method_a, method_b, delta (a - b), low, high, p, p_adjusted, significant, and the case keys
        (protocol, precision, dataset, scale, metric), n images, the test's name, seed and resample count."""
        from .stats import pairwise

        return pairwise(self.images, self.cases, metrics, settings)

    def time_pairwise(self, settings: Settings = Settings()) -> Any:
        """The cost counterpart of `pairwise`: delta = median time a - b (ms) on the timed calls."""
        from .stats import time_pairwise

        return time_pairwise(self.cases, settings)


def _flat(record: Any, skip: tuple[str, ...] = ("metrics", "notes")) -> dict[str, Any]:
    row = {k: v for k, v in record.to_dict().items() if k not in skip}
    for key in ("lr_size", "sr_size"):
        if key in row:
            size = row.pop(key)
            row[f"{key[:2]}_h"], row[f"{key[:2]}_w"] = (list(size) + [None, None])[:2]
    for metric, value in record.metrics.items():
        row[metric] = value
    for metric, note in record.notes.items():
        row[f"note_{metric}"] = note
    for name, ms in (row.pop("stages", None) or {}).items():
        row[f"stage_{name}_ms"] = ms
    return row


def cases_frame(cases: list[CaseRecord]) -> Any:
    """One row per case, metrics as columns (NaN where n/a; the reason in `note_<metric>`)."""
    import pandas as pd

    return pd.DataFrame([_flat(c) for c in cases], columns=None if cases else [k for k in CaseRecord.__dataclass_fields__ if k not in ("metrics", "notes")])


def images_frame(images: list[ImageRecord]) -> Any:
    import pandas as pd

    return pd.DataFrame([_flat(i) for i in images],
                        columns=None if images else ["case_id", "image", "lr_h", "lr_w", "sr_h", "sr_w"])


def load(run_dir: str | Path, warn_partial: bool = True) -> Results:
    """Everything a run folder holds, as DataFrames; a folder that is not a run is a one-line UserError. A run
    with planned cases missing (a shard not run) warns, and `Results.partial` lists what is missing."""
    data = read_run(Path(run_dir))
    if data.partial and warn_partial:
        import warnings

        warnings.warn(f"{run_dir} is partial: " + "; ".join(data.partial), UserWarning, stacklevel=2)
    return Results(Path(run_dir), data.run, cases_frame(data.cases), images_frame(data.images), data)
