"""The run folder's database: one SQLite file (stdlib `sqlite3`), the single source of truth of a run.

Why SQLite: appends are O(1) transactions (the JSONL store rewrote whole files per image), several processes can
write one run folder at once (WAL, busy timeout, unique keys), and a claim row lets each case be computed once.
The engine writes it (`asr_bench.engine.store`); the report and users read it through `asr_bench.results.load`.
`cases.jsonl/csv` and `images.jsonl/csv` are views exported from it.

Files: `results.sqlite`, or one `results.shard-<i>-of-<n>.sqlite` per shard where the folder is on a network file
system whose locking SQLite cannot trust; readers merge every `results*.sqlite` in the folder.

Tables (schema version in `meta`):
  runs      one row per invocation (run.json contents, host, pid, shard)
  cases     one row per case id: the latest record, its provenance key (`case_key`) and status
  images    one row per (case id, case_key, image): rows of an older key are never shown for a newer one
  profiles  cost measured for a case that has not finished (resume without measuring again)
  claims    which process is computing which case (taken over when that process is dead)
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..jsontext import dumps, finite  # noqa: F401 - the store writes strict JSON like every other writer
from .schema import SCHEMA_VERSION

DB_NAME = "results.sqlite"
DB_GLOB = "results*.sqlite"
BUSY_TIMEOUT_S = 60.0

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, host TEXT, pid INTEGER, shard TEXT,
    run_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY, case_key TEXT NOT NULL, status TEXT NOT NULL, record TEXT NOT NULL,
    updated REAL NOT NULL, run_seq INTEGER);
CREATE TABLE IF NOT EXISTS images (
    case_key TEXT NOT NULL, image TEXT NOT NULL, case_id TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (case_id, case_key, image));
CREATE INDEX IF NOT EXISTS images_by_case ON images (case_id);
CREATE TABLE IF NOT EXISTS profiles (
    case_id TEXT NOT NULL, case_key TEXT NOT NULL, profile TEXT NOT NULL, PRIMARY KEY (case_id, case_key));
CREATE TABLE IF NOT EXISTS claims (
    case_id TEXT PRIMARY KEY, case_key TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL, heartbeat REAL NOT NULL);
"""


def connect(path: Path, create: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, a generous busy timeout."""
    if not create and not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT_S * 1000))
        if create:
            _create_tables(conn)
        check_schema(conn, path)
        return conn
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path} is not a readable results database ({exc}); move it away to start the run "
                        "folder afresh, or restore it from a copy.") from None


def _create_tables(conn: sqlite3.Connection) -> None:
    """WAL mode and any missing table, retried while another process does the same.

    Why a loop: two processes opening a new database at once can get "database is locked" at once, not after the
    busy timeout (switching a fresh file to WAL takes an exclusive lock, and SQLite gives up there without calling the
    busy handler): 49 of 600 simultaneous opens failed in a scratch test, and a CI run lost a writer to it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            with transaction(conn):
                for statement in filter(str.strip, DDL.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


TABLES = ("meta", "runs", "cases", "images", "profiles", "claims")


class UnreadableRow(ValueError):
    """A stored JSON text that is not a strict JSON object (torn, edited, or holding 1e999 / NaN / Infinity)."""


def _refuse_constant(token: str) -> Any:
    raise UnreadableRow(f"holds {token}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise UnreadableRow(f"holds {text}, which is not a finite number")
    return value


def parse_row(text: Any) -> dict[str, Any]:
    """A stored record: strict JSON (what the store writes; a number too large for a float, NaN and Infinity are
    refused) holding an object; UnreadableRow says why not."""
    if not isinstance(text, str):
        raise UnreadableRow(f"is {type(text).__name__}, not JSON text")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnreadableRow:
        raise
    except ValueError as exc:
        raise UnreadableRow(f"is not valid JSON ({exc})") from None
    except RecursionError:
        raise UnreadableRow("is nested too deeply") from None
    if not isinstance(value, dict):
        raise UnreadableRow(f"holds a JSON {type(value).__name__}, not an object")
    return value


def _damaged(path: Path, what: str) -> UserError:
    return UserError(f"{path}: {what}; rerun the same command to repair the store (unreadable rows are dropped and "
                     "their cases recomputed), or restore the file from a copy.")


def missing_tables(path: Path) -> list[str]:
    """Tables an existing database lacks (a writer creates them and says so); [] for a new or unreadable file."""
    if not Path(path).is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return []  # connect() says what is wrong with it
    return [t for t in TABLES if t not in present] if present else []


def check_tables(conn: sqlite3.Connection, path: Path) -> None:
    """A reader's check: every table is there (a dropped one would fail later with a traceback)."""
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in present]
    if missing:
        raise _damaged(path, f"table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing")


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise UserError(f"{path} was written by a newer asr-bench (schema {version}, this one reads up to "
                        f"{SCHEMA_VERSION}); upgrade asr-bench to read it.")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: the write lock is taken up front, so two writers never deadlock on upgrade."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def database_files(run_dir: Path) -> list[Path]:
    """Every results database of a run folder (one, or one per shard), in a stable order."""
    return sorted(p for p in Path(run_dir).glob(DB_GLOB) if p.is_file())


def read_database(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(run.json of the latest invocation + every invocation, case rows, image rows) merged over all files.

    Images are those of each case's current provenance key only; where two files hold one case id, the one
    updated last wins."""
    cases: dict[str, tuple[float, dict[str, Any]]] = {}
    keys: dict[str, str] = {}
    images: dict[tuple[str, str, str], dict[str, Any]] = {}
    runs: list[tuple[float, dict[str, Any]]] = []
    for path in database_files(run_dir):
        conn = connect(path, create=False)
        try:
            check_tables(conn, path)
            where = ""
            try:
                for seq, started, text in conn.execute("SELECT seq, started, run_json FROM runs ORDER BY seq"):
                    where = f"the runs row {seq}"
                    runs.append((started, parse_row(text)))
                for case_id, key, record, updated in conn.execute(
                        "SELECT case_id, case_key, record, updated FROM cases ORDER BY rowid"):
                    where = f"the cases row of {case_id!r}"
                    if case_id not in cases or updated >= cases[case_id][0]:
                        cases[case_id] = (updated, parse_row(record))
                        keys[case_id] = key
                for case_id, key, image, record in conn.execute(
                        "SELECT case_id, case_key, image, record FROM images ORDER BY rowid"):
                    where = f"the images row of {case_id!r} image {image!r}"
                    images[(case_id, key, image)] = parse_row(record)
            except UnreadableRow as exc:
                raise _damaged(path, f"{where} {exc}") from None
            except (sqlite3.DatabaseError, TypeError) as exc:
                raise _damaged(path, f"cannot be read ({exc})") from None
        finally:
            conn.close()
    run: dict[str, Any] = {}
    if runs:
        runs.sort(key=lambda r: r[0])
        run = dict(runs[-1][1])
        run["invocations"] = [{k: r.get(k) for k in ("started", "config_hash", "shard", "host", "name")}
                              for _, r in runs]
    case_rows = [record for _, record in cases.values()]
    image_rows = [row for (case_id, key, _), row in images.items() if keys.get(case_id) == key]
    return run, case_rows, image_rows
