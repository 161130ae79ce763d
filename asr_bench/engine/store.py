"""The result store: one run folder, written so that a crash at any moment leaves it readable.

Layout (the report reads exactly this): `run.json` (environment, resolved config, config hash),
`images.jsonl` + `images.csv` (ImageRecord rows), `cases.jsonl` + `cases.csv` (CaseRecord rows),
`profiles.jsonl` (the engine's own resume notes: cost measured for a case not yet finished), `visuals/`.
Every file is replaced whole (write a temp file beside it, then rename), so a reader never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..results.csv_views import csv_text
from .records import CaseRecord, ImageRecord

FINAL_STATUSES = ("ok", "error", "unsupported", "no-weights")


def atomic_write_text(path: Path, text: str) -> None:
    """Write temp + fsync + rename: the old or the new contents, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a damaged line (only possible if someone edited it) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, sort_keys=False) + "\n" for row in rows)


class RunStore:
    """In-memory mirror of a run folder; every change is written through at once."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.run_dir.glob(".*.tmp"):  # a write cut short by a kill; its target is intact
            leftover.unlink(missing_ok=True)
        self.reload()

    def reload(self) -> None:
        """Re-read the files (another process, e.g. a case worker, may have written them)."""
        self.images: list[ImageRecord] = [ImageRecord.from_dict(r) for r in read_jsonl(self.path("images.jsonl"))]
        cases: dict[str, CaseRecord] = {}
        for row in read_jsonl(self.path("cases.jsonl")):
            record = CaseRecord.from_dict(row)
            cases[record.case_id] = record
        self.cases = cases
        self.profiles: dict[str, dict[str, Any]] = {r["case_id"]: r for r in read_jsonl(self.path("profiles.jsonl"))}

    def path(self, name: str) -> Path:
        return self.run_dir / name

    # ---- queries

    def finished(self, case_id: str) -> CaseRecord | None:
        record = self.cases.get(case_id)
        return record if record is not None and record.status in FINAL_STATUSES else None

    def images_of(self, case_id: str) -> dict[str, ImageRecord]:
        return {r.image: r for r in self.images if r.case_id == case_id}

    def read_run(self) -> dict[str, Any]:
        path = self.path("run.json")
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is damaged ({exc}); delete it (the results beside it are kept and the run "
                            "rewrites it) or write elsewhere with --output.") from None

    # ---- writes

    def add_image(self, record: ImageRecord) -> None:
        self.images = [r for r in self.images if (r.case_id, r.image) != (record.case_id, record.image)]
        self.images.append(record)
        atomic_write_text(self.path("images.jsonl"), jsonl([r.to_dict() for r in self.images]))

    def put_case(self, record: CaseRecord) -> None:
        """Store a case (replacing an earlier record of it in place), then refresh the CSV views."""
        self.cases[record.case_id] = record
        atomic_write_text(self.path("cases.jsonl"), jsonl([r.to_dict() for r in self.cases.values()]))
        self.profiles.pop(record.case_id, None)
        self.write_profiles()
        self.write_csvs()

    def drop_case(self, case_id: str) -> None:
        """Forget a case entirely (used to retry failed cases)."""
        self.cases.pop(case_id, None)
        self.images = [r for r in self.images if r.case_id != case_id]
        self.profiles.pop(case_id, None)
        atomic_write_text(self.path("cases.jsonl"), jsonl([r.to_dict() for r in self.cases.values()]))
        atomic_write_text(self.path("images.jsonl"), jsonl([r.to_dict() for r in self.images]))
        self.write_profiles()
        self.write_csvs()

    def put_profile(self, case_id: str, profile: dict[str, Any]) -> None:
        self.profiles[case_id] = {"case_id": case_id, **profile}
        self.write_profiles()

    def write_profiles(self) -> None:
        atomic_write_text(self.path("profiles.jsonl"), jsonl(list(self.profiles.values())))

    def write_run(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.path("run.json"), json.dumps(data, indent=2, sort_keys=True) + "\n")

    def write_csvs(self) -> None:
        atomic_write_text(self.path("cases.csv"), cases_csv(list(self.cases.values())))
        atomic_write_text(self.path("images.csv"), images_csv(self.images))


# ---------------------------------------------------------------- CSV views (flat: one column per metric)


def _metric_names(records: list[Any]) -> list[str]:
    names: list[str] = []
    for record in records:
        for name in list(record.metrics) + list(record.notes):
            if name not in names:
                names.append(name)
    return names


def _cell(value: Any) -> Any:
    return "" if value is None else value


def cases_csv(cases: list[CaseRecord]) -> str:
    metrics = _metric_names(cases)
    scalar = [k for k in CaseRecord.__dataclass_fields__ if k not in ("metrics", "notes")]
    header = scalar + metrics + [f"note_{m}" for m in metrics]
    rows = [[_cell(getattr(c, k)) for k in scalar] + [_cell(c.metrics.get(m)) for m in metrics]
            + [c.notes.get(m, "") for m in metrics] for c in cases]
    return csv_text(header, rows)


def images_csv(images: list[ImageRecord]) -> str:
    metrics = _metric_names(images)
    header = ["case_id", "image", "lr_h", "lr_w", "sr_h", "sr_w"] + metrics + [f"note_{m}" for m in metrics]
    rows = [[r.case_id, r.image, *r.lr_size, *r.sr_size] + [_cell(r.metrics.get(m)) for m in metrics]
            + [r.notes.get(m, "") for m in metrics] for r in images]
    return csv_text(header, rows)
