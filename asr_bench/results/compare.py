"""Several run folders as one: `asr-bench compare RUN_DIR [RUN_DIR ...] --output OUT`.

Runs from other machines, other days or shards are merged into one store (OUT, the JSONL layout every reader
accepts) and rendered as one report. Before merging, every case that appears in more than one run is checked for
what can change its numbers; where anything differs, the case is NOT merged: each run's case stays a separate row
(labelled `<label> [<run folder>]`) and `comparability.md` says, case by case, what differs. Identical cases are
merged (the first run's record and images are kept; the others are named as duplicates).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from .reading import RunData, read_run
from .schema import CaseRecord, ImageRecord

# what must be equal for two records of one case to be one case: (name shown, how to read it from a record)
CHECKS: list[tuple[str, Any]] = [
    ("protocol", lambda c: c.protocol),
    ("protocol version", lambda c: c.provenance.get("protocol_version")),
    ("asr-bench version", lambda c: (c.provenance.get("versions") or {}).get("asr_bench")),
    ("dataset fingerprint", lambda c: c.provenance.get("dataset_fingerprint")),
    ("checkpoint sha256", lambda c: c.provenance.get("checkpoint_sha256")),
    ("precision", lambda c: c.precision),
    ("device", lambda c: c.device),
]


def differences(a: CaseRecord, b: CaseRecord) -> list[str]:
    """'dataset fingerprint: 3f2a9c1d… vs 77b0e412…' for every checked field that differs."""
    out = []
    for name, read in CHECKS:
        left, right = read(a), read(b)
        if left != right:
            out.append(f"{name}: {_short(left)} vs {_short(right)}")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "…" if len(text) > 16 and all(ch in "0123456789abcdef:dir" for ch in text) else text


@dataclass
class Comparison:
    """The merged store's contents and what was found on the way."""

    runs: list[Path]
    cases: list[CaseRecord] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)        # 'bicubic set5 x2: in run_a, run_b (identical)'
    not_comparable: list[str] = field(default_factory=list)  # 'bicubic set5 x2: run_b differs: dataset fingerprint ...'

    def report(self) -> str:
        lines = ["# Comparability", "", "Runs: " + ", ".join(str(r) for r in self.runs), ""]
        if self.not_comparable:
            lines += ["## Not comparable (kept apart, one row per run)", ""]
            lines += [f"- {line}" for line in self.not_comparable] + [""]
        elif self.merged:
            lines += ["Every case present in several runs has the same protocol and version, dataset fingerprint,"
                      " checkpoint sha256, precision and device: merged.", ""]
        else:
            lines += ["No case is in more than one run: nothing to check; the runs' cases are shown side by side.", ""]
        if self.merged:
            lines += ["## Merged (identical in every checked field)", ""] + [f"- {m}" for m in self.merged] + [""]
        return "\n".join(lines)


def _where(case: CaseRecord) -> str:
    return f"{case.label} {case.dataset} x{case.scale}"


def compare_runs(run_dirs: list[Path]) -> Comparison:
    """Merge the runs' cases where they are comparable; keep them apart, and say why, where they are not."""
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run folders (asr-bench compare RUN_A RUN_B ...)")
    datas: list[RunData] = [read_run(Path(d)) for d in run_dirs]
    names = _names(run_dirs)
    result = Comparison([Path(d) for d in run_dirs])
    first: dict[str, tuple[int, CaseRecord]] = {}
    seen_in: dict[str, list[str]] = {}
    for index, data in enumerate(datas):
        images = {}
        for image in data.images:
            images.setdefault(image.case_id, []).append(image)
        for case in data.cases:
            earlier = first.get(case.case_id)
            if earlier is None:
                first[case.case_id] = (index, case)
                seen_in[case.case_id] = [names[index]]
                result.cases.append(case)
                result.images += images.get(case.case_id, [])
                continue
            why = differences(earlier[1], case)
            if not why:
                seen_in[case.case_id].append(names[index])
                continue
            label = f"{case.label} [{names[index]}]"
            case_id = f"{case.case_id}|{names[index]}"
            result.not_comparable.append(f"{_where(case)}: {names[index]} vs {names[earlier[0]]}: " + "; ".join(why))
            result.cases.append(replace(case, label=label, case_id=case_id))
            result.images += [replace(i, case_id=case_id) for i in images.get(case.case_id, [])]
    result.merged = [f"{_where(first[cid][1])}: in {', '.join(runs)}" for cid, runs in seen_in.items() if len(runs) > 1]
    return result


def _names(run_dirs: list[Path]) -> list[str]:
    """Short, distinct names of the run folders (their folder names; the parent added where two are alike)."""
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{Path(d).resolve().parent.name}/{Path(d).resolve().name}" for d in run_dirs]
    return names


def write_comparison(comparison: Comparison, output: Path) -> Path:
    """The merged store in `output` (run.json, cases.jsonl, images.jsonl) and comparability.md; returns output."""
    output = Path(output)
    if output.exists() and any(output.glob("results*.sqlite")):
        raise UserError(f"{output} holds a run database; give compare a new --output folder")
    output.mkdir(parents=True, exist_ok=True)
    first = read_run(comparison.runs[0]).run
    run = {**first, "compare": {"runs": [str(r) for r in comparison.runs],
                                "not_comparable": comparison.not_comparable, "merged": comparison.merged}}
    (output / "run.json").write_text(json.dumps(run, indent=2, default=str), encoding="utf-8")
    (output / "cases.jsonl").write_text("".join(json.dumps(c.to_dict(), default=str) + "\n" for c in comparison.cases),
                                        encoding="utf-8")
    (output / "images.jsonl").write_text("".join(json.dumps(i.to_dict(), default=str) + "\n"
                                                 for i in comparison.images), encoding="utf-8")
    (output / "comparability.md").write_text(comparison.report(), encoding="utf-8")
    return output
