"""The engine's side of the result store: writing a run folder's SQLite database, claiming cases, exporting views.

Layout of a run folder: `results.sqlite` (the truth; see `asr_bench.results.database`), `run.json` (the latest
invocation's environment and config, exported), `cases.jsonl/csv` and `images.jsonl/csv` (views, refreshed after
each case and by `report`), `visuals/`. A case is stored under its id ("<label>|<dataset>|<scale>") together with
its provenance key (a hash of everything that can change its numbers); a rerun skips a case only when the stored
key equals the planned one, and images or measured cost of another key are never reused.

Several processes may write one folder at once: every write is one transaction, and a process computes a case
only after claiming it (`claim`); a claim whose process is dead (same host: the pid is gone or was reused; another
host: no heartbeat for `STALE_AFTER_S`) is taken over.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import atomic
from ..results.csv_views import csv_text
from ..results.database import (DB_NAME, UnreadableRow, connect, dumps, missing_tables, parse_row, read_database,
                                transaction)
from .records import CaseRecord, ImageRecord

FINAL_STATUSES = ("ok", "error", "unsupported", "no-weights")
STALE_AFTER_S = 600.0       # a claim from another host without a heartbeat for this long is taken over
HEARTBEAT_S = 30.0


def atomic_write_text(path: Path, text: str) -> None:
    """Write temp + fsync + rename (asr_bench.atomic): the old or the new contents, never a mix."""
    atomic.write_text(path, text)


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(dumps(row) + "\n" for row in rows)


process_start = atomic.process_start
process_alive = atomic.process_alive


class RunStore:
    """A run folder's database, opened for writing by this process."""

    def __init__(self, run_dir: str | Path, db_name: str = DB_NAME) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic.clean(self.run_dir)  # our writes cut short by a kill (targets intact); never a live writer's
        self.db_path = self.run_dir / db_name
        missing = missing_tables(self.db_path)
        self.conn = connect(self.db_path)  # creates any table that is missing
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.run_seq: int | None = None
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self.repairs = [f"{self.db_path}: table {t} was missing: created empty" for t in missing]
        self.repairs += self.check_and_repair()

    def check_and_repair(self) -> list[str]:
        """The integrity check on open: what cannot be trusted is dropped, so a rerun computes it again, and each
        repair is said (one line each, for the console). Dropped: rows that are not strict JSON objects (torn or
        edited; 1e999, NaN), case rows of an unknown status (e.g. 'running'), `ok` cases with fewer image rows
        than their `n_images` (their images stay: the recompute resumes from them), and claims whose process is
        dead (this host: pid gone or reused; another host: no heartbeat for STALE_AFTER_S)."""
        said: list[str] = []
        now = time.time()
        with self._lock, transaction(self.conn):
            for table, column, key in (("runs", "run_json", "seq"), ("cases", "record", "case_id"),
                                       ("images", "record", "case_id || ' image ' || image"),
                                       ("profiles", "profile", "case_id")):
                for rowid, name, text in self.conn.execute(f"SELECT rowid, {key}, {column} FROM {table}").fetchall():
                    try:
                        parse_row(text)
                    except UnreadableRow as exc:
                        self.conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
                        said.append(f"dropped the unreadable {table} row of {name} (it {exc})")
            for case_id, status in self.conn.execute(
                    "SELECT case_id, status FROM cases WHERE status NOT IN (%s)" % ",".join("?" * len(FINAL_STATUSES)),
                    FINAL_STATUSES).fetchall():
                self.conn.execute("DELETE FROM cases WHERE case_id = ?", (case_id,))
                said.append(f"case {case_id} was left '{status}': it will be computed again")
            for case_id, key, text in self.conn.execute(
                    "SELECT case_id, case_key, record FROM cases WHERE status = 'ok'").fetchall():
                expected = parse_row(text).get("n_images")
                stored = self.conn.execute("SELECT COUNT(*) FROM images WHERE case_id = ? AND case_key = ?",
                                           (case_id, key)).fetchone()[0]
                if isinstance(expected, int) and stored < expected:
                    self.conn.execute("DELETE FROM cases WHERE case_id = ?", (case_id,))
                    said.append(f"case {case_id} records {expected} images but {stored} are stored: "
                                "the missing ones will be computed")
            for case_id, host, pid, start, beat in self.conn.execute(
                    "SELECT case_id, host, pid, pid_start, heartbeat FROM claims").fetchall():
                alive = process_alive(pid, start) if host == self.host else now - beat < STALE_AFTER_S
                if not alive and not (host == self.host and pid == self.pid):
                    self.conn.execute("DELETE FROM claims WHERE case_id = ?", (case_id,))
                    said.append(f"case {case_id} was claimed by {host} pid {pid}, which is gone: claim released")
        return [f"{self.db_path}: {line}" for line in said]

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def close(self) -> None:
        self.conn.close()

    # ---- queries

    def record(self, case_id: str) -> tuple[str, CaseRecord] | None:
        row = self.conn.execute("SELECT case_key, record FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        return (row[0], CaseRecord.from_dict(parse_row(row[1]))) if row else None

    def finished(self, case_id: str, case_key: str | None = None) -> CaseRecord | None:
        """The stored final record of a case; with `case_key`, only if it was computed under that provenance."""
        found = self.record(case_id)
        if found is None or found[1].status not in FINAL_STATUSES:
            return None
        return found[1] if case_key is None or found[0] == case_key else None

    def images_of(self, case_id: str, case_key: str) -> dict[str, ImageRecord]:
        rows = self.conn.execute("SELECT image, record FROM images WHERE case_id = ? AND case_key = ?",
                                 (case_id, case_key)).fetchall()
        return {image: ImageRecord.from_dict(parse_row(text)) for image, text in rows}

    def profile_of(self, case_id: str, case_key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT profile FROM profiles WHERE case_id = ? AND case_key = ?",
                                (case_id, case_key)).fetchone()
        return parse_row(row[0]) if row else None

    @property
    def cases(self) -> dict[str, CaseRecord]:
        return {case_id: CaseRecord.from_dict(parse_row(text))
                for case_id, text in self.conn.execute("SELECT case_id, record FROM cases ORDER BY rowid")}

    # ---- claims

    def claim(self, case_id: str, case_key: str) -> bool:
        """Take the case for this process unless a live process holds it or it is already stored under this key
        (then False: nothing to compute). Rows of other keys are cleared, in the same transaction."""
        now = time.time()
        with self._lock, transaction(self.conn):
            done = self.conn.execute("SELECT status FROM cases WHERE case_id = ? AND case_key = ?",
                                     (case_id, case_key)).fetchone()
            if done is not None and done[0] in FINAL_STATUSES:
                return False
            row = self.conn.execute("SELECT host, pid, pid_start, heartbeat FROM claims WHERE case_id = ?",
                                    (case_id,)).fetchone()
            if row is not None and not (row[0] == self.host and row[1] == self.pid):
                host, pid, start, beat = row
                alive = process_alive(pid, start) if host == self.host else now - beat < STALE_AFTER_S
                if alive:
                    return False
            self.conn.execute("INSERT OR REPLACE INTO claims (case_id, case_key, host, pid, pid_start, heartbeat) "
                              "VALUES (?, ?, ?, ?, ?, ?)", (case_id, case_key, self.host, self.pid, self.pid_start, now))
            # numbers of another provenance are never mixed into this one
            self.conn.execute("DELETE FROM images WHERE case_id = ? AND case_key != ?", (case_id, case_key))
            self.conn.execute("DELETE FROM profiles WHERE case_id = ? AND case_key != ?", (case_id, case_key))
            self.conn.execute("DELETE FROM cases WHERE case_id = ? AND case_key != ?", (case_id, case_key))
        return True

    def claimed_elsewhere(self, case_id: str) -> str | None:
        """'host pid N' of a live claim by another process, else None."""
        row = self.conn.execute("SELECT host, pid, pid_start, heartbeat FROM claims WHERE case_id = ?",
                                (case_id,)).fetchone()
        if row is None or (row[0] == self.host and row[1] == self.pid):
            return None
        host, pid, start, beat = row
        alive = process_alive(pid, start) if host == self.host else time.time() - beat < STALE_AFTER_S
        return f"{host} pid {pid}" if alive else None

    def release(self, case_id: str) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM claims WHERE case_id = ? AND host = ? AND pid = ?",
                              (case_id, self.host, self.pid))

    def start_heartbeat(self) -> None:
        """Keep this process's claims fresh for processes on other hosts (shared folders)."""
        if self._heartbeat is not None:
            return

        def beat() -> None:
            while True:
                time.sleep(HEARTBEAT_S)
                try:
                    with self._lock:
                        self.conn.execute("UPDATE claims SET heartbeat = ? WHERE host = ? AND pid = ?",
                                          (time.time(), self.host, self.pid))
                except Exception:  # noqa: BLE001 - closed at exit; a missed beat only makes the claim older
                    return

        self._heartbeat = threading.Thread(target=beat, name="asr-bench-heartbeat", daemon=True)
        self._heartbeat.start()

    # ---- writes (each one transaction)

    def add_image(self, record: ImageRecord, case_key: str) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("INSERT INTO images (case_key, image, case_id, record) VALUES (?, ?, ?, ?) "
                              "ON CONFLICT (case_id, case_key, image) DO UPDATE SET record = excluded.record",
                              (case_key, record.image, record.case_id, dumps(record.to_dict())))

    def put_profile(self, case_id: str, case_key: str, profile: dict[str, Any]) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO profiles (case_id, case_key, profile) VALUES (?, ?, ?)",
                              (case_id, case_key, dumps(profile)))

    def put_case(self, record: CaseRecord, case_key: str | None = None, export: bool = True) -> None:
        """Store a case's final record and release its claim (one transaction), then refresh the views."""
        key = case_key if case_key is not None else (record.case_key or record.case_id)
        if record.case_key != key:
            record = replace(record, case_key=key)
        with self._lock, transaction(self.conn):
            self.conn.execute(
                "INSERT INTO cases (case_id, case_key, status, record, updated, run_seq) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (case_id) DO UPDATE SET case_key = excluded.case_key, status = excluded.status, "
                "record = excluded.record, updated = excluded.updated, run_seq = excluded.run_seq",
                (record.case_id, key, record.status, dumps(record.to_dict()), time.time(), self.run_seq))
            self.conn.execute("DELETE FROM profiles WHERE case_id = ?", (record.case_id,))
            self.conn.execute("DELETE FROM claims WHERE case_id = ? AND host = ? AND pid = ?",
                              (record.case_id, self.host, self.pid))
        if export:
            self.export_views()

    def drop_case(self, case_id: str) -> None:
        """Forget a case entirely (used to retry failed cases)."""
        with self._lock, transaction(self.conn):
            for table in ("cases", "images", "profiles"):
                self.conn.execute(f"DELETE FROM {table} WHERE case_id = ?", (case_id,))
        self.export_views()

    def write_run(self, data: dict[str, Any], shard: str = "") -> None:
        """Record this invocation (config, environment) and export run.json; a rerun adds a row, never edits one."""
        with self._lock, transaction(self.conn):
            if self.run_seq is None:
                cursor = self.conn.execute("INSERT INTO runs (started, host, pid, shard, run_json) VALUES (?, ?, ?, ?, ?)",
                                           (time.time(), self.host, self.pid, shard, dumps(data)))
                self.run_seq = cursor.lastrowid
            else:
                self.conn.execute("UPDATE runs SET run_json = ? WHERE seq = ?", (dumps(data), self.run_seq))
        self.export_run()

    def read_run_row(self) -> dict[str, Any]:
        """This invocation's run record (as last written by `write_run`)."""
        if self.run_seq is None:
            return {}
        row = self.conn.execute("SELECT run_json FROM runs WHERE seq = ?", (self.run_seq,)).fetchone()
        return parse_row(row[0]) if row else {}

    # ---- exported views

    def export_run(self) -> None:
        run, _, _ = read_database(self.run_dir)
        atomic_write_text(self.path("run.json"), json.dumps(run, indent=2, sort_keys=True, allow_nan=False) + "\n")

    def export_views(self) -> None:
        """cases/images as JSONL and CSV, from every database in the folder (other shards' too)."""
        export_views(self.run_dir)


def export_views(run_dir: Path) -> None:
    run, case_rows, image_rows = read_database(run_dir)
    cases = [CaseRecord.from_dict(r) for r in case_rows]
    images = [ImageRecord.from_dict(r) for r in image_rows]
    atomic_write_text(run_dir / "cases.jsonl", jsonl([c.to_dict() for c in cases]))
    atomic_write_text(run_dir / "images.jsonl", jsonl([i.to_dict() for i in images]))
    atomic_write_text(run_dir / "cases.csv", cases_csv(cases))
    atomic_write_text(run_dir / "images.csv", images_csv(images))


# ---------------------------------------------------------------- CSV views (flat: one column per metric)


def _metric_names(records: list[Any]) -> list[str]:
    names: list[str] = []
    for record in records:
        for name in list(record.metrics) + list(record.notes):
            if name not in names:
                names.append(name)
    return names


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def cases_csv(cases: list[CaseRecord]) -> str:
    metrics = _metric_names(cases)
    stages = list(dict.fromkeys(name for c in cases for name in c.stages))
    scalar = [k for k in CaseRecord.__dataclass_fields__ if k not in ("metrics", "notes")]
    header = scalar + metrics + [f"note_{m}" for m in metrics] + [f"stage_{s}_ms" for s in stages]
    rows = [[_cell(getattr(c, k)) for k in scalar] + [_cell(c.metrics.get(m)) for m in metrics]
            + [c.notes.get(m, "") for m in metrics] + [_cell(c.stages.get(s)) for s in stages] for c in cases]
    return csv_text(header, rows)


def images_csv(images: list[ImageRecord]) -> str:
    metrics = _metric_names(images)
    header = ["case_id", "image", "lr_h", "lr_w", "sr_h", "sr_w"] + metrics + [f"note_{m}" for m in metrics]
    rows = [[r.case_id, r.image, *r.lr_size, *r.sr_size] + [_cell(r.metrics.get(m)) for m in metrics]
            + [r.notes.get(m, "") for m in metrics] for r in images]
    return csv_text(header, rows)
