"""`run --dry-run`: the cases a config would run, and whether each one's weights and data are found.

Nothing is written and no model is built: it answers "will this config do what I think" in a second.
"""
from __future__ import annotations

from pathlib import Path

from ..config import Config
from .cases import Case, plan_cases


def _weights(case: Case) -> str:
    """What the run would load, from the same resolution (`asr_bench.weights`): file and where it was found."""
    if case.weights is not None:
        return case.weights.text()
    checkpoint = case.entry.checkpoint
    return "found" if checkpoint and Path(str(checkpoint)).expanduser().exists() else "random weights (cost only)"


def _data(case: Case, config: Config, seen: dict[str, str]) -> str:
    if case.dataset_ref not in seen:
        from ..data.catalogue import resolve_dataset

        try:
            dataset = resolve_dataset(case.dataset_ref, data_root=config.data_root)
            seen[case.dataset_ref] = f"found ({len(list(dataset.image_ids()))} images)"
        except Exception as exc:  # noqa: BLE001 - a missing dataset is what a dry run is for
            seen[case.dataset_ref] = f"MISSING ({str(exc).splitlines()[0][:80]})"
    return seen[case.dataset_ref]


def dry_run_lines(config: Config) -> list[str]:
    """One line per case: 'k/N label  dataset  xS  weights: ...  data: ...', then where results would go."""
    from ..registry import get_method
    from ..upsampler import supports

    cases = plan_cases(config)
    seen: dict[str, str] = {}
    width = max((len(c.label) for c in cases), default=0)
    lines = [f"{len(cases)} cases (dry run: nothing is run or written)"]
    for k, case in enumerate(cases, start=1):
        supported = supports(get_method(case.entry.method).scales, case.scale)
        status = (f"weights: {_weights(case)}; data: {_data(case, config, seen)}" if supported
                  else "unsupported scale (will be recorded, not run)")
        name = Path(case.dataset).name if ("/" in case.dataset or "\\" in case.dataset) else case.dataset
        lines.append(f"{k:>3}/{len(cases)}  {case.label:<{width}}  {name}  x{case.scale_label}  {status}")
    lines.append(f"results would go to {config.run_dir()}/")
    return lines
