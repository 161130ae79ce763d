"""A damaged store is said, never a traceback (issue 21, probes 1, 6, 7): readers (`report`, `results.load`) stop
with one line naming the file and row, exit 2; a rerun's integrity check on open drops what cannot be trusted,
says so, and computes it again."""
from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from asr_bench.cli import run_cli
from asr_bench.engine.store import RunStore
from asr_bench.errors import UserError
from asr_bench.results import load
from asr_bench.results.database import UnreadableRow, parse_row


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small finished run (bicubic x2 on 3 images) and its config; tests damage copies of it."""
    root = tmp_path_factory.mktemp("integrity")
    images = root / "imgs"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    config = root / "c.yml"
    config.write_text(f"methods: [bicubic]\ndatasets: [{images}]\nscales: [2]\nmetrics: [psnr]\ndevice: cpu\n"
                      "profiling: {warmup: 0, repeats: 1, memory: false, flops: false}\nvisuals: {crop: 8}\n"
                      f"cache_dir: {root / 'cache'}\n")
    assert run_cli(["--config", str(config), "--no-progress", "--output", str(root / "run")]) == 0
    return root / "run", config


@pytest.fixture
def damaged(finished_run, tmp_path, capsys):
    """A copy of the finished run, and a function running SQL on its database."""
    source, config = finished_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    capsys.readouterr()

    def sql(statement, *args):
        conn = sqlite3.connect(run / "results.sqlite")
        conn.execute(statement, args)
        conn.commit()
        conn.close()
    return run, config, sql


def rerun(run, config, capsys):
    code = run_cli(["--config", str(config), "--no-progress", "--output", str(run)])
    return code, capsys.readouterr().err


def one_line_error(run, capsys):
    assert run_cli(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    with pytest.raises(UserError):
        load(run)
    return err


CASE = "bicubic|imgs|2"


@pytest.mark.parametrize("record, why", [("{bad", "is not valid JSON"), ('{"psnr": 1e999}', "1e999"),
                                         ('{"psnr": NaN}', "NaN"), ("[1, 2]", "not an object")])
def test_an_unreadable_image_row_is_one_line_for_readers_and_recomputed_by_a_rerun(damaged, capsys, record, why):
    run, config, sql = damaged
    sql("UPDATE images SET record = ? WHERE image = '1'", record)
    err = one_line_error(run, capsys)
    assert "results.sqlite" in err and "images row of 'bicubic|imgs|2' image '1'" in err and why in err
    code, err = rerun(run, config, capsys)
    assert code == 0
    assert "dropped the unreadable images row of bicubic|imgs|2 image 1" in err
    assert "records 3 images but 2 are stored" in err
    results = load(run)
    assert sorted(results.images.image) == ["0", "1", "2"] and results.cases.n_images.tolist() == [3]


def test_a_case_row_holding_1e999_is_refused_and_recomputed(damaged, capsys):
    run, config, sql = damaged
    sql("UPDATE cases SET record = replace(record, '\"n_images\": 3', '\"n_images\": 3, \"x\": 1e999')")
    err = one_line_error(run, capsys)
    assert "cases row of 'bicubic|imgs|2' holds 1e999" in err
    code, err = rerun(run, config, capsys)
    assert code == 0 and "dropped the unreadable cases row of bicubic|imgs|2" in err
    assert load(run).cases.status.tolist() == ["ok"]


def test_a_dropped_table_is_one_line_for_readers_and_recreated_by_a_rerun(damaged, capsys):
    run, config, sql = damaged
    sql("DROP TABLE images")
    assert "table images missing" in one_line_error(run, capsys)
    code, err = rerun(run, config, capsys)
    assert code == 0 and "table images was missing: created empty" in err
    assert "records 3 images but 0 are stored" in err
    assert len(load(run).images) == 3


def test_deleted_image_rows_make_the_case_recomputed_not_kept_with_a_wrong_count(damaged, capsys):
    run, config, sql = damaged
    sql("DELETE FROM images WHERE image != '0'")
    code, err = rerun(run, config, capsys)
    assert code == 0 and "bicubic|imgs|2 records 3 images but 1 are stored" in err
    results = load(run)
    assert len(results.images) == 3 and results.cases.n_images.tolist() == [3]
    assert len((run / "images.csv").read_text().splitlines()) == 1 + 3


def test_a_claim_of_a_dead_process_and_a_case_left_running_are_released(damaged, capsys):
    run, config, sql = damaged
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    sql("INSERT INTO claims VALUES (?, 'k', ?, ?, '1', 0)", CASE, socket.gethostname(), dead)
    sql("UPDATE cases SET status = 'running'")
    code, err = rerun(run, config, capsys)
    assert code == 0
    assert f"case {CASE} was claimed by {socket.gethostname()} pid {dead}, which is gone: claim released" in err
    assert f"case {CASE} was left 'running': it will be computed again" in err
    conn = sqlite3.connect(run / "results.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM cases").fetchall() == [("ok",)]


def test_a_live_claim_is_kept_and_an_intact_store_is_not_touched(damaged):
    run, config, sql = damaged
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from asr_bench.atomic import process_start
        sql("INSERT INTO claims VALUES ('other|imgs|2', 'k', ?, ?, ?, 0)", socket.gethostname(), child.pid,
            process_start(child.pid))
        store = RunStore(run)
        assert store.repairs == []
        assert store.claimed_elsewhere("other|imgs|2") == f"{socket.gethostname()} pid {child.pid}"
        store.close()
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("text", ["{", "1e999", '{"a": 1e999}', '{"a": -Infinity}', '{"a": NaN}', "[]", "3", None,
                                  "[" * 100_000])
def test_parse_row_refuses_what_the_store_never_writes(text):
    with pytest.raises(UnreadableRow):
        parse_row(text)


def test_parse_row_reads_what_the_store_writes():
    row = {"psnr": 32.5, "n": 3, "note": None, "x": [1e308, -0.0]}
    assert parse_row(json.dumps(row)) == row
