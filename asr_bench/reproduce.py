"""`asr-bench reproduce <table>`: a paper's table (or a reference measurement) in one command.

A table is a shipped config (`configs/paper/*.yml`, and `set5_liif.yml` for the reference numbers of the
official LIIF code on Set5) plus the published numbers in `asr_bench/published/`. `reproduce` first checks
everything the run needs and names all that is missing at once (weights with their fetch commands, datasets
with where to get them and the `--data-root` they need), then runs (resuming like any run), then prints ours
beside the published number with the delta. It exits 1 when any reproduced number lies outside the precision
the number was printed with (half a unit of its last digit), so a researcher can put it in their own CI.

Where both a paper's number and a reference number (the official code, run by us: `kind=reference`) exist for
a cell, the reference is what the reproduction is held to: it has the precision to tell a real difference.
Rows without official weights (LIIF's MetaSR baselines) cannot reproduce anything and are left out, said so.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .config import SHIPPED, Config, load_config, shipped_configs
from .errors import UnknownName, UserError

EXTRA = {"liif-set5": "set5_liif"}   # tables that are not under configs/paper/


@dataclass(frozen=True)
class Table:
    name: str
    config: str       # a shipped config's name
    about: str        # its first comment line


def tables() -> dict[str, Table]:
    """Every reproducible table: one per paper config (`paper/liif_table1` -> `liif-table1`) and `liif-set5`."""
    names = {**EXTRA, **{c.removeprefix("paper/").replace("_", "-"): c
                         for c in shipped_configs() if c.startswith("paper/")}}
    return {name: Table(name, config, _about(config)) for name, config in sorted(names.items())}


def _about(config: str, limit: int = 110) -> str:
    """The first sentence of the config's leading comment, cut at a word (with an ellipsis) past `limit` characters:
    a comment line ends wherever the YAML was wrapped, so the first line alone stops mid-sentence."""
    words: list[str] = []
    for line in (SHIPPED / f"{config}.yml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or not line.lstrip("# ").strip():
            if words:
                break
            continue
        words += line.lstrip("# ").split()
    text = " ".join(words)
    end = text.find(". ")
    sentence = text if end < 0 else text[:end + 1]
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + " …"


def list_lines() -> list[str]:
    found = tables()
    width = max(len(n) for n in found)
    return [f"{t.name:<{width}}  {t.about} (config {t.config})" for t in found.values()]


def table_config(name: str, overrides: Sequence[str] = ()) -> Config:
    found = tables()
    if name not in found:
        raise UnknownName("table", name, found, hint="`asr-bench reproduce --list` names them.")
    return load_config(found[name].config, list(overrides))


# ---------------------------------------------------------------------------------------- checks


def reproducible(config: Config) -> tuple[Config, list[str]]:
    """The config without rows that have no official weights at all (they reproduce nothing), and their labels."""
    from .engine.cases import resolve_entries

    entries = resolve_entries(replace(config, require_weights=False))
    if config.methods == "all":
        return config, []
    keep, dropped = [], []
    for given, (entry, choice) in zip(config.methods, entries):  # type: ignore[arg-type]
        if choice.state == "undeclared":
            dropped.append(str(entry.label))
        else:
            keep.append(given)
    return replace(config, methods=tuple(keep)), dropped


def missing(config: Config) -> list[str]:
    """Everything the run needs and does not find: each preset's weights, each dataset."""
    from .data.catalogue import CATALOGUE, resolve_dataset
    from .engine.cases import resolve_entries

    problems = []
    seen: set[str] = set()
    for _, choice in resolve_entries(replace(config, require_weights=False)):
        if choice.state == "missing" and choice.preset not in seen and choice.found is not None:
            seen.add(str(choice.preset))
            problems.append(f"weights of {choice.preset} ({', '.join(choice.found.missing)}): "
                            f"`{choice.found.fetch}`, or put them in a folder given by --checkpoint-dir")
    for dataset in config.datasets:
        try:
            resolve_dataset(dataset, data_root=config.data_root)
        except UserError:
            entry = CATALOGUE.get(dataset.lower())
            if entry is None:
                problems.append(f"dataset folder {dataset}")
                continue
            problems.append(f"dataset {dataset}: {entry.how_to_get.rstrip('.')}; then pass --data-root <folder "
                            f"holding {entry.folders[0]}/> (or set $ASR_BENCH_DATA)")
    return problems


# ---------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Comparison:
    label: str
    dataset: str
    scale: str
    metric: str
    ours: float
    published: float
    places: int
    kind: str
    source: str

    @property
    def delta(self) -> float:
        return self.ours - self.published

    @property
    def tolerance(self) -> float:
        """Half a unit of the published number's last printed digit: ours rounds to the same printed value."""
        return 0.5 * 10 ** -self.places

    @property
    def within(self) -> bool:
        return abs(self.delta) <= self.tolerance + 1e-9


def compare(cases: Sequence[Any], rows: Sequence[Any]) -> tuple[list[Comparison], list[str]]:
    """Ours beside the published/reference number of the same protocol, per scored case and metric; and the
    scored cells that have no published number."""
    from .report.published import match_published

    out, unmatched = [], []
    for case in cases:
        if case.status != "ok":
            continue
        for metric, ours in case.metrics.items():
            if ours is None or not math.isfinite(ours):
                continue
            matches = [m for m in match_published(case, metric, ours, rows) if m.same_protocol]
            if not matches:
                unmatched.append(f"{case.label} {case.dataset} x{case.scale} {metric}")
                continue
            references = [m for m in matches if m.row.kind == "reference"]
            for match in references or matches:
                out.append(Comparison(case.label, case.dataset, case.scale, metric, float(ours), match.row.value,
                                      match.row.places if match.row.places is not None else 2, match.row.kind,
                                      match.row.source))
    return out, unmatched


def comparison_lines(comparisons: Sequence[Comparison]) -> list[str]:
    header = ("method", "dataset", "scale", "metric", "ours", "published", "delta", "kind", "within")
    rows = [(c.label, c.dataset, f"x{c.scale}", c.metric, f"{c.ours:.{c.places + 2}f}",
             f"{c.published:.{c.places}f}", f"{c.delta:+.{c.places + 2}f}", c.kind,
             "yes" if c.within else f"NO (±{c.tolerance:g})") for c in comparisons]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]


# ---------------------------------------------------------------------------------------- the command


def reproduce(name: str, overrides: Sequence[str] = (), progress: bool = True, say: Any = print) -> int:
    """Check, run, compare; 0 when every reproduced number is within the published precision, else 1."""
    from .engine.runner import published_dir, run_benchmark
    from .report.published import load_published

    config = table_config(name, overrides)
    config, dropped = reproducible(config)
    problems = missing(config)
    if problems:
        raise UserError(f"cannot reproduce {name} yet, {len(problems)} thing(s) missing: " + "; ".join(problems) + ".")
    if not config.output:
        config = replace(config, output=str(Path("results") / f"reproduce-{name}"))
    if dropped:
        say(f"left out (no official weights released, nothing to reproduce): {', '.join(dropped)}")
    result = run_benchmark(config, progress=progress)
    comparisons, unmatched = compare(result.cases, load_published(published_dir()))
    say("\n".join(comparison_lines(comparisons)))
    if unmatched:
        say(f"no published number to compare: {', '.join(unmatched)}")
    say(f"results: {result.run_dir}/")
    failed = [c for c in comparisons if not c.within]
    errors = [c for c in result.cases if c.status == "error"]
    if errors:
        say(f"{len(errors)} case(s) failed: " + "; ".join(f"{c.case_id}: {c.error}" for c in errors))
        return 1
    if not comparisons:
        say(f"nothing of {name} could be compared with a published number.")
        return 1
    if failed:
        say(f"{len(failed)} of {len(comparisons)} number(s) outside the published precision: "
            + "; ".join(f"{c.label} {c.dataset} x{c.scale} {c.metric} {c.ours:.{c.places + 2}f} vs "
                        f"{c.published:.{c.places}f} ({c.delta:+.{c.places + 2}f})" for c in failed))
        return 1
    say(f"reproduced: all {len(comparisons)} number(s) of {name} within the published precision.")
    return 0
