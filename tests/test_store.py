"""The result store: a SQLite database per run folder, claims, provenance keys, exported views, the reading API."""
import csv
import json
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr_bench.engine.records import CaseRecord, ImageRecord
from asr_bench.engine.store import RunStore, atomic_write_text, export_views
from asr_bench.errors import UserError
from asr_bench.results import load, read_run

KEY = "k1"


def case(case_id="a|set5|4", status="ok", **kw):
    return CaseRecord(case_id=case_id, label="a", method="a", encoder="e", dataset="set5", scale="4",
                      protocol="gsasr", status=status, **kw)


def test_records_round_trip_and_are_readable_by_the_report(tmp_path):
    store = RunStore(tmp_path)
    store.add_image(ImageRecord("a|set5|4", "baby", {"psnr": 30.5, "lpips": None},
                                {"lpips": "n/a (weights missing: x)"}, (64, 64), (256, 256)), KEY)
    store.put_case(case(metrics={"psnr": 30.5, "lpips": None}, notes={"lpips": "n/a"}, n_images=1), KEY)
    store.write_run({"name": "t"})
    store.close()
    again = RunStore(tmp_path)
    assert again.finished("a|set5|4", KEY).metrics == {"psnr": 30.5, "lpips": None}
    assert list(again.images_of("a|set5|4", KEY)) == ["baby"]
    data = read_run(tmp_path)  # the report's reader sees the same records
    assert [c.case_id for c in data.cases] == ["a|set5|4"] and data.images[0].metrics["psnr"] == 30.5
    assert data.run["name"] == "t" and json.loads((tmp_path / "run.json").read_text())["name"] == "t"
    # the exported views hold the same rows as the database
    assert [json.loads(line)["image"] for line in (tmp_path / "images.jsonl").read_text().splitlines()] == ["baby"]


def test_a_case_of_another_provenance_key_is_not_finished_and_its_images_are_not_reused(tmp_path):
    store = RunStore(tmp_path)
    store.add_image(ImageRecord("a|set5|4", "baby", {"psnr": 1.0}), "old")
    store.put_case(case(metrics={"psnr": 1.0}), "old")
    assert store.finished("a|set5|4", "old") is not None
    assert store.finished("a|set5|4", "new") is None
    assert store.images_of("a|set5|4", "new") == {}
    assert store.claim("a|set5|4", "new")  # claiming under a new key clears the old numbers
    assert store.record("a|set5|4") is None and store.images_of("a|set5|4", "old") == {}


def test_case_rewrite_replaces_in_place_and_csv_is_flat(tmp_path):
    store = RunStore(tmp_path)
    store.put_case(case("x|d|2", status="error", error="boom"), KEY)
    store.put_case(case("y|d|2", metrics={"psnr": 1.0}), KEY)
    store.put_case(case("x|d|2", metrics={"psnr": 2.0}), KEY)
    lines = (tmp_path / "cases.jsonl").read_text().splitlines()
    assert [json.loads(line)["case_id"] for line in lines] == ["x|d|2", "y|d|2"]
    rows = list(csv.DictReader((tmp_path / "cases.csv").open()))
    assert [r["psnr"] for r in rows] == ["2.0", "1.0"] and rows[0]["status"] == "ok"


def test_unfinished_statuses_are_not_final(tmp_path):
    store = RunStore(tmp_path)
    store.put_case(case(status="running"), KEY)
    assert store.finished("a|set5|4", KEY) is None


def test_non_finite_numbers_are_stored_as_null_never_as_nan(tmp_path):
    store = RunStore(tmp_path)
    store.put_case(case(metrics={"psnr": float("inf"), "ssim": float("nan")}, time_ms=float("nan")), KEY)
    text = (tmp_path / "cases.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    row = json.loads(text)
    assert row["metrics"] == {"psnr": None, "ssim": None} and row["time_ms"] is None


def test_atomic_write_leaves_old_contents_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old\n")

    def explode(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_drop_case_forgets_its_images(tmp_path):
    store = RunStore(tmp_path)
    store.add_image(ImageRecord("a|set5|4", "baby"), KEY)
    store.add_image(ImageRecord("b|set5|4", "baby"), KEY)
    store.put_case(case(), KEY)
    store.drop_case("a|set5|4")
    assert store.finished("a|set5|4", KEY) is None
    assert [i.case_id for i in read_run(tmp_path).images] == []  # b has no case record: not exported
    assert list(store.images_of("b|set5|4", KEY)) == ["baby"]


def test_only_abandoned_temp_files_of_ours_are_cleaned_on_open(tmp_path):
    """A write cut short by a kill leaves our temp file; on opening the folder it is deleted when its owner is on
    this host and dead (pid gone, or reused by a process started later). A live writer's temp file, any from
    another host (its writer may be alive there), an unowned one and a user's own `.notes.tmp` stay."""
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from asr_bench.engine.store import process_start
        live = tmp_path / f".asr-bench-{child.pid}-{process_start(child.pid)}@{host}@run.json.x1.tmp"
        killed = tmp_path / f".asr-bench-{dead_pid}-1@{host}@images.jsonl.x2.tmp"
        reused = tmp_path / f".asr-bench-{child.pid}-1@{host}@cases.csv.x5.tmp"  # the pid now names another process
        elsewhere = tmp_path / ".asr-bench-77-1@another-host@cases.csv.x3.tmp"
        old_elsewhere = tmp_path / ".asr-bench-78-1@another-host@cases.csv.x4.tmp"
        old_unowned = tmp_path / ".asr-bench-images.jsonl.abc123.tmp"  # named before temp files carried an owner
        for path in (live, killed, reused, elsewhere, old_elsewhere, old_unowned):
            path.write_text('{"half": ')
        hour_ago = time.time() - 3600
        for path in (old_elsewhere, old_unowned):
            os.utime(path, (hour_ago, hour_ago))
        (tmp_path / ".notes.tmp").write_text("mine")
        RunStore(tmp_path)
        assert sorted(p.name for p in tmp_path.glob(".asr-bench-*.tmp")) == sorted(
            [live.name, elsewhere.name, old_elsewhere.name, old_unowned.name])
        assert (tmp_path / ".notes.tmp").read_text() == "mine"
    finally:
        child.kill()
        child.wait()


WRITER = """
import sys
import time
from pathlib import Path
from asr_bench.engine.store import atomic_write_text
target = Path(sys.argv[1]) / "run.json"
for i in range(150):
    atomic_write_text(target, str(i) * 400_000)
"""


def test_opening_a_folder_never_deletes_a_concurrent_writers_temp_file(tmp_path):
    """Two runs share a folder: one opening it (cleaning leftovers) must not pull a temp file from under the
    other's rename (the writer would fail with FileNotFoundError and lose its write)."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stderr=subprocess.PIPE, text=True)
    opened = 0
    while writer.poll() is None:
        RunStore(tmp_path).close()
        opened += 1
    assert writer.returncode == 0, writer.stderr.read()
    assert opened > 10  # the folder was opened while the writer wrote, many times
    assert (tmp_path / "run.json").read_text() == "149" * 400_000


def test_claims_keep_a_case_to_one_live_process_and_a_dead_claim_is_taken_over(tmp_path):
    first = RunStore(tmp_path)
    assert first.claim("a|set5|4", KEY)
    # another live process (here: a child that sleeps) holding the claim
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        conn = sqlite3.connect(tmp_path / "results.sqlite")
        from asr_bench.engine.store import process_start
        conn.execute("UPDATE claims SET pid = ?, pid_start = ? WHERE case_id = 'a|set5|4'",
                     (child.pid, process_start(child.pid)))
        conn.commit()
        second = RunStore(tmp_path)
        assert not second.claim("a|set5|4", KEY)
        assert second.claimed_elsewhere("a|set5|4") == f"{second.host} pid {child.pid}"
    finally:
        child.kill()
        child.wait()
    assert second.claimed_elsewhere("a|set5|4") is None
    assert second.claim("a|set5|4", KEY)  # the holder died: taken over


def _write_rows(run_dir: str, name: str, count: int) -> None:
    store = RunStore(run_dir)
    for i in range(count):
        store.add_image(ImageRecord(f"{name}|d|2", f"img{i}", {"psnr": float(i)}), KEY)
    store.put_case(case(f"{name}|d|2", n_images=count), KEY)


def test_concurrent_writers_lose_nothing(tmp_path):
    """Two processes writing one run folder at once: every row of both is kept."""
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_rows, args=(str(tmp_path), name, 150)) for name in ("p", "q")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    data = read_run(tmp_path)
    assert sorted(c.case_id for c in data.cases) == ["p|d|2", "q|d|2"]
    assert len(data.images) == 300


def test_storing_an_image_does_not_rewrite_earlier_rows(tmp_path, monkeypatch):
    """O(1) per image: adding images touches the database only; the views are exported once per case."""
    store = RunStore(tmp_path)
    exports = []
    monkeypatch.setattr("asr_bench.engine.store.export_views", lambda run_dir: exports.append(run_dir))
    for i in range(50):
        store.add_image(ImageRecord("a|set5|4", f"i{i}"), KEY)
    assert exports == [] and not (tmp_path / "images.jsonl").exists()
    store.put_case(case(), KEY)
    assert len(exports) == 1


def test_shard_databases_are_merged_by_readers(tmp_path):
    one, two = RunStore(tmp_path, "results.shard-0-of-2.sqlite"), RunStore(tmp_path, "results.shard-1-of-2.sqlite")
    one.put_case(case("a|d|2"), KEY)
    two.put_case(case("b|d|2"), KEY)
    two.add_image(ImageRecord("b|d|2", "x", {"psnr": 3.0}), KEY)
    export_views(tmp_path)
    data = read_run(tmp_path)
    assert sorted(c.case_id for c in data.cases) == ["a|d|2", "b|d|2"] and len(data.images) == 1


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    RunStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    with pytest.raises(UserError, match="newer asr-bench"):
        read_run(tmp_path)


def test_a_damaged_database_is_a_one_line_error(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a readable results database"):
        read_run(tmp_path)


@pytest.mark.parametrize("line", ["5", "[1, 2]", '{"image": "x"}'])
def test_valid_json_that_is_not_a_record_in_an_old_jsonl_store_is_named(tmp_path, line):
    good = json.dumps(case().to_dict())
    (tmp_path / "cases.jsonl").write_text(good + "\n" + line + "\n" + good + "\n")
    with pytest.raises(UserError, match="is not a CaseRecord"):
        read_run(tmp_path)


def test_results_load_gives_dataframes_of_what_was_stored(tmp_path: Path) -> None:
    """The public reading API: one DataFrame row per stored case/image, metrics as columns, n/a as NaN + note."""
    store = RunStore(tmp_path)
    store.put_case(CaseRecord(case_id="a|set5|4", label="a", method="a", encoder="e", dataset="set5", scale="4",
                              protocol="gsasr", metrics={"psnr": 30.5, "lpips": None},
                              notes={"lpips": "n/a (weights missing: x.pth)"}), KEY)
    store.add_image(ImageRecord(case_id="a|set5|4", image="baby", metrics={"psnr": 31.0}, lr_size=(2, 3),
                                sr_size=(8, 12)), KEY)
    run = load(tmp_path)
    assert list(run.cases["case_id"]) == ["a|set5|4"]
    assert run.cases.loc[0, "psnr"] == 30.5 and run.cases["lpips"].isna().all()
    assert run.cases.loc[0, "note_lpips"] == "n/a (weights missing: x.pth)"
    assert (run.images.loc[0, "sr_h"], run.images.loc[0, "sr_w"], run.images.loc[0, "psnr"]) == (8, 12, 31.0)


def _open_at_once(path: str, barrier: "multiprocessing.synchronize.Barrier",
                  errors: "multiprocessing.Queue[str]") -> None:
    from asr_bench.results.database import connect
    barrier.wait()
    try:
        connect(Path(path)).close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(str(exc))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork for a tight start")
def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    """Three processes released together open one new results database, 30 times over. Before the retry, SQLite
    refused about one open in twelve with 'database is locked' at once (WAL switch), which lost a whole writer."""
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for i in range(30):
        barrier = ctx.Barrier(3)
        procs = [ctx.Process(target=_open_at_once, args=(str(tmp_path / f"r{i}.sqlite"), barrier, errors))
                 for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found[:3]
