"""Read a run folder (the result store) for the report: run.json, cases.jsonl, images.jsonl.

The report never reaches back into the engine: everything it shows comes from these files, so any past
run can be re-rendered. A run that crashed mid-write may end with a truncated line; that line is skipped.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .schema import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord, ImageRecord
from ..errors import MissingFile, UserError


@dataclass
class RunData:
    run_dir: Path
    run: dict[str, Any] = field(default_factory=dict)
    cases: list[CaseRecord] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)

    @property
    def partial(self) -> list[str]:
        """What the run has not finished, one line each ('shard 1/2 has not run: 3 of 6 cases missing'); [] when
        every planned case is stored."""
        return missing_parts(self.run, self.cases)


FINISHED = (OK, ERROR, UNSUPPORTED, NO_WEIGHTS)  # a case stored with one of these is done


def missing_parts(run: dict[str, Any], cases: list[CaseRecord]) -> list[str]:
    """The planned cases (run.json's `cases`: every case of the latest invocation's config, in plan order) that
    are not stored as finished, grouped by the shard that owns them. A shard i/n owns every n-th planned case from
    the i-th (asr_bench.engine.shards.select); the shard count is the latest invocation's, or any shard's seen."""
    planned = run.get("cases")
    if not isinstance(planned, list) or not planned:
        return []
    done = {c.case_id for c in cases if c.status in FINISHED}
    missing = [case_id for case_id in planned if case_id not in done]
    if not missing:
        return []
    labels = [run.get("shard")] + [i.get("shard") for i in reversed(run.get("invocations") or []) if isinstance(i, dict)]
    count = next((int(str(label).split("/")[1]) for label in labels
                  if isinstance(label, str) and label.count("/") == 1 and label.split("/")[1].isdigit()), 0)
    if count < 2:
        return [f"{len(missing)} of {len(planned)} planned cases not finished (e.g. {missing[0]}); rerun the same "
                "command to complete the run"]
    ran = {str(i.get("shard")) for i in run.get("invocations") or [] if isinstance(i, dict)} | {str(run.get("shard"))}
    lines = []
    for index in range(count):
        owned = planned[index::count]
        absent = [case_id for case_id in owned if case_id not in done]
        if absent:
            label = f"{index}/{count}"
            state = "has not run" if label not in ran else "has not finished"
            lines.append(f"shard {label} {state}: {len(absent)} of {len(owned)} of its cases missing "
                         f"(run it with --shard {label})")
    return lines


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # an interrupted append: the rest of the store is intact
            raise UserError(f"{path}:{number} is not valid JSON; the store is damaged there. "
                            "Delete that line (the case will be re-run on resume) and render again.") from None
    return rows


def _last_per_key(records: list[Any], key: Any) -> list[Any]:
    """A resumed run may append a case again; the latest record wins, first position kept."""
    latest: dict[Any, Any] = {}
    for record in records:
        latest[key(record)] = record
    return list(latest.values())


def read_run(run_dir: Path) -> RunData:
    """The store's contents: the SQLite database(s) when present, else the JSONL files of an older run folder.

    A folder with neither is a UserError (it is not a run folder)."""
    from .database import database_files, read_database

    run_dir = Path(run_dir)
    if database_files(run_dir):
        run, case_rows, image_rows = read_database(run_dir)
        return RunData(run_dir, run, [_record(CaseRecord, r, "case") for r in case_rows],
                       [_record(ImageRecord, r, "image") for r in image_rows])
    cases_path = run_dir / "cases.jsonl"
    if not cases_path.exists():
        raise MissingFile("run results (results.sqlite or cases.jsonl)", run_dir / "results.sqlite",
                          "Give the folder a run wrote (the one holding run.json and results.sqlite).")
    run: dict[str, Any] = {}
    run_json = run_dir / "run.json"
    if run_json.exists():
        try:
            run = json.loads(run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UserError(f"{run_json} is not valid JSON ({error}); restore it or delete it to render without run metadata.") from None
    cases = _last_per_key([_record(CaseRecord, r, f"{cases_path.name} row") for r in _read_jsonl(cases_path)],
                          lambda c: c.case_id)
    images_path = run_dir / "images.jsonl"
    images = _last_per_key([_record(ImageRecord, r, f"{images_path.name} row") for r in _read_jsonl(images_path)],
                           lambda i: (i.case_id, i.image))
    return RunData(run_dir, run if isinstance(run, dict) else {"run": run}, cases, images)


def _record(cls: type, row: Any, what: str) -> Any:
    """A stored row as a record; valid JSON that is not a record (a number, a list, keys missing) is named, not a traceback."""
    required = [name for name, f in cls.__dataclass_fields__.items()
                if f.default is MISSING and f.default_factory is MISSING]
    if not isinstance(row, dict) or any(k not in row for k in required):
        shown = json.dumps(row)[:60] if not isinstance(row, dict) else f"keys {sorted(row)[:6]}"
        raise UserError(f"a {what} in the store is not a {cls.__name__} ({shown}); the store was edited by hand: "
                        "remove that line (the case is re-run on resume) and render again.")
    try:
        return cls.from_dict(row)
    except (TypeError, ValueError) as exc:
        raise UserError(f"a {what} in the store is malformed ({exc}); remove it and render again.") from None
