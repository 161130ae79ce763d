"""The result store: atomic writes, round trips, resume bookkeeping, flat CSV views."""
import csv
import json
import os
from pathlib import Path

import pytest

from asr_bench.engine.records import CaseRecord, ImageRecord
from asr_bench.engine.store import RunStore, atomic_write_text
from asr_bench.report.reading import read_run


def case(case_id="a|set5|4", status="ok", **kw):
    return CaseRecord(case_id=case_id, label="a", method="a", encoder="e", dataset="set5", scale="4",
                      protocol="gsasr", status=status, **kw)


def test_records_round_trip_and_are_readable_by_the_report(tmp_path):
    store = RunStore(tmp_path)
    store.add_image(ImageRecord("a|set5|4", "baby", {"psnr": 30.5, "lpips": None},
                                {"lpips": "n/a (weights missing: x)"}, (64, 64), (256, 256)))
    store.put_case(case(metrics={"psnr": 30.5, "lpips": None}, notes={"lpips": "n/a"}, n_images=1))
    store.write_run({"name": "t"})
    again = RunStore(tmp_path)
    assert again.finished("a|set5|4").metrics == {"psnr": 30.5, "lpips": None}
    assert list(again.images_of("a|set5|4")) == ["baby"]
    data = read_run(tmp_path)  # the report engineer's reader sees the same records
    assert [c.case_id for c in data.cases] == ["a|set5|4"] and data.images[0].metrics["psnr"] == 30.5


def test_case_rewrite_replaces_in_place_and_csv_is_flat(tmp_path):
    store = RunStore(tmp_path)
    store.put_case(case("x|d|2", status="error", error="boom"))
    store.put_case(case("y|d|2", metrics={"psnr": 1.0}))
    store.put_case(case("x|d|2", metrics={"psnr": 2.0}))
    lines = (tmp_path / "cases.jsonl").read_text().splitlines()
    assert [json.loads(line)["case_id"] for line in lines] == ["x|d|2", "y|d|2"]
    rows = list(csv.DictReader((tmp_path / "cases.csv").open()))
    assert [r["psnr"] for r in rows] == ["2.0", "1.0"] and rows[0]["status"] == "ok"


def test_unfinished_statuses_are_not_final(tmp_path):
    store = RunStore(tmp_path)
    store.put_case(case(status="running"))
    assert store.finished("a|set5|4") is None


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
    store.add_image(ImageRecord("a|set5|4", "baby"))
    store.add_image(ImageRecord("b|set5|4", "baby"))
    store.put_case(case())
    store.drop_case("a|set5|4")
    again = RunStore(tmp_path)
    assert again.finished("a|set5|4") is None and [r.case_id for r in again.images] == ["b|set5|4"]


def test_temp_files_of_an_interrupted_write_are_cleaned_on_open(tmp_path):
    (tmp_path / ".images.jsonl.abc123.tmp").write_text('{"half": ')
    RunStore(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


def test_results_load_gives_dataframes_of_what_was_stored(tmp_path: Path) -> None:
    """The public reading API: one DataFrame row per stored case/image, metrics as columns, n/a as NaN + note."""

    from asr_bench.results import load

    store = RunStore(tmp_path)
    store.put_case(CaseRecord(case_id="a|set5|4", label="a", method="a", encoder="e", dataset="set5", scale="4",
                              protocol="gsasr", metrics={"psnr": 30.5, "lpips": None},
                              notes={"lpips": "n/a (weights missing: x.pth)"}))
    store.add_image(ImageRecord(case_id="a|set5|4", image="baby", metrics={"psnr": 31.0}, lr_size=(2, 3), sr_size=(8, 12)))
    run = load(tmp_path)
    assert list(run.cases["case_id"]) == ["a|set5|4"]
    assert run.cases.loc[0, "psnr"] == 30.5 and run.cases["lpips"].isna().all()
    assert run.cases.loc[0, "note_lpips"] == "n/a (weights missing: x.pth)"
    assert (run.images.loc[0, "sr_h"], run.images.loc[0, "sr_w"], run.images.loc[0, "psnr"]) == (8, 12, 31.0)
