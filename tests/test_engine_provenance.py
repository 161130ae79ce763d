"""Results a paper can rest on: provenance keys decide resume, concurrent runs lose nothing, crashes are data,
shards and Ray give the serial run's results.

Uses the plugin methods and tiny dataset of test_engine_runner (a plugin file the config names).
"""
import multiprocessing
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.cli import run_cli
from asr_bench.config import parse_config
from asr_bench.engine.runner import run_benchmark
from asr_bench.engine.shards import Shard, parse_shard, resolve_shard, select
from asr_bench.errors import UserError
from asr_bench.results import read_run
from test_engine_runner import calls, images, make_config, plugin, rows  # noqa: F401 - fixtures

PROFILE_CALLS = 2 + 1 - 1  # repeats + the FLOPs call (warm-up 0, memory off), less the first image's own call
# (the last timed call on the first image is that image's result)


def by_id(result):
    return {c.case_id: c for c in result.cases}


def outcome(records):
    """What must agree between two ways of running the same cases: status, metrics, notes, n_images."""
    return {c.case_id: (c.status, c.metrics, c.notes, c.n_images) for c in records}


def save_gain(path, gain):
    """A checkpoint of the plugin's 1x1 conv: identity times `gain`."""
    torch.save({"conv.weight": torch.eye(3)[:, :, None, None] * gain, "conv.bias": torch.zeros(3)}, path)


def test_adding_then_swapping_a_checkpoint_recomputes_exactly_that_case(tmp_path, plugin, images):
    ckpt = tmp_path / "w.pth"

    def config(with_checkpoint):
        entry = {"method": "t-weights", "label": "w", **({"checkpoint": str(ckpt)} if with_checkpoint else {})}
        return make_config(tmp_path, plugin, images, scales=[2], methods=["t-smooth", entry])

    first = by_id(run_benchmark(config(False), progress=False, render=False))
    assert first["w|tiny|2"].status == "no-weights"
    save_gain(ckpt, 0.5)
    before = calls(plugin)
    second = by_id(run_benchmark(config(True), progress=False, render=False))
    assert calls(plugin) - before == PROFILE_CALLS + 3  # w only: profile + 3 images; t-smooth untouched
    assert second["t-smooth|tiny|2"] == first["t-smooth|tiny|2"]  # the very same record (time included)
    assert second["w|tiny|2"].status == "ok"
    assert second["w|tiny|2"].provenance["checkpoint_sha256"] is not None
    time.sleep(0.01)
    save_gain(ckpt, 0.25)  # same path, same size, other contents
    before = calls(plugin)
    third = by_id(run_benchmark(config(True), progress=False, render=False))
    assert calls(plugin) - before == PROFILE_CALLS + 3
    assert third["w|tiny|2"].metrics["psnr"] != second["w|tiny|2"].metrics["psnr"]
    assert third["w|tiny|2"].provenance["checkpoint_sha256"] != second["w|tiny|2"].provenance["checkpoint_sha256"]
    assert third["t-smooth|tiny|2"] == first["t-smooth|tiny|2"]
    assert [r["case_id"] for r in rows(tmp_path / "run/cases.jsonl")] == ["t-smooth|tiny|2", "w|tiny|2"]


@pytest.fixture
def two_datasets(tmp_path, images):
    first, second = tmp_path / "data" / "one", tmp_path / "data" / "two"
    shutil.copytree(images, first)
    shutil.copytree(images, second)
    return first, second


def test_adding_or_changing_images_recomputes_only_that_datasets_cases(tmp_path, plugin, two_datasets):
    one, two = two_datasets
    config = make_config(tmp_path, plugin, str(one), datasets=[str(one), str(two)], scales=[2])
    first = by_id(run_benchmark(config, progress=False, render=False))
    Image.fromarray(np.full((20, 28, 3), 90, np.uint8)).save(two / "d.png")  # one more image in `two`
    before = calls(plugin)
    second = by_id(run_benchmark(config, progress=False, render=False))
    assert calls(plugin) - before == PROFILE_CALLS + 4
    assert second["t-smooth|one|2"] == first["t-smooth|one|2"]
    assert second["t-smooth|two|2"].n_images == 4
    # the same file name with other pixels: recomputed, with the new image's number
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(one / "c.png")
    third = by_id(run_benchmark(config, progress=False, render=False))
    assert third["t-smooth|one|2"].metrics["psnr"] != first["t-smooth|one|2"].metrics["psnr"]
    assert third["t-smooth|two|2"] == second["t-smooth|two|2"]
    stored = {(r["case_id"], r["image"]) for r in rows(tmp_path / "run/images.jsonl")}
    assert len(stored) == 3 + 4


def test_the_same_folder_under_another_path_is_another_dataset(tmp_path, plugin, two_datasets):
    """Same name and files, another resolved folder: the provenance (and so the key) differs."""
    one, _ = two_datasets
    moved = tmp_path / "elsewhere" / "one"
    shutil.copytree(one, moved)
    a = run_benchmark(make_config(tmp_path, plugin, str(one), scales=[2]), progress=False, render=False).cases[0]
    b = run_benchmark(make_config(tmp_path, plugin, str(moved), scales=[2]), progress=False, render=False).cases[0]
    assert a.case_id == b.case_id and a.case_key != b.case_key
    assert b.provenance["dataset_folder"] == str(moved.resolve())


def _run_in_child(raw, delay):
    time.sleep(delay)
    run_benchmark(parse_config(raw, default_name="t"), progress=False, render=False)


def _raw(tmp_path, plugin, images, methods):
    return {"methods": methods, "datasets": [images], "scales": [2, 3.5], "metrics": ["psnr"], "device": "cpu",
            "profiling": {"warmup": 0, "repeats": 1, "max_repeats": 1, "memory": False, "flops": False}, "visuals": {"crop": 0},
            "plugins": [plugin], "output": str(tmp_path / "shared-run"), "cache_dir": str(tmp_path / "cache")}


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5])
def test_two_concurrent_runs_with_different_methods_keep_every_case_of_both(tmp_path, plugin, images, delay):
    ctx = multiprocessing.get_context("spawn")
    first = ctx.Process(target=_run_in_child, args=(_raw(tmp_path, plugin, images, ["t-smooth"]), 0.0))
    second = ctx.Process(target=_run_in_child,
                         args=(_raw(tmp_path, plugin, images, [{"method": "t-smooth", "label": "other",
                                                                "kwargs": {"sleep": 0.01}}, "t-smooth-x2"]), delay))
    for process in (first, second):
        process.start()
    for process in (first, second):
        process.join(300)
        assert process.exitcode == 0
    stored = {c.case_id: c.status for c in read_run(tmp_path / "shared-run").cases}
    assert stored == {"t-smooth|tiny|2": "ok", "t-smooth|tiny|3.5": "ok", "other|tiny|2": "ok",
                      "other|tiny|3.5": "ok", "t-smooth-x2|tiny|2": "ok", "t-smooth-x2|tiny|3.5": "unsupported"}
    assert {r["case_id"] for r in rows(tmp_path / "shared-run/cases.jsonl")} == set(stored)
    assert len(read_run(tmp_path / "shared-run").images) == 3 * 5


def test_two_concurrent_runs_of_one_config_compute_each_case_once(tmp_path, plugin, images):
    raw = _raw(tmp_path, plugin, images, [{"method": "t-smooth", "kwargs": {"sleep": 0.05}}])
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_run_in_child, args=(raw, delay)) for delay in (0.0, 0.2)]
    before = calls(plugin)
    for process in processes:
        process.start()
    for process in processes:
        process.join(300)
        assert process.exitcode == 0
    assert calls(plugin) - before == 2 * 3  # two cases, each: one timed call (image a's too) + 2 images, computed once
    assert len(read_run(tmp_path / "shared-run").cases) == 2


@pytest.mark.parametrize("memory", [False, True])
def test_a_segfaulting_method_is_recorded_and_the_next_method_still_runs(tmp_path, plugin, images, memory):
    config = make_config(tmp_path, plugin, images, methods=["t-crash", "t-smooth"],
                         profiling={"warmup": 0, "repeats": 1, "memory": memory, "flops": False})
    result = by_id(run_benchmark(config, progress=False, render=False))
    for scale in ("2", "3.5"):
        crashed = result[f"t-crash|tiny|{scale}"]
        assert crashed.status == "error" and "killed by signal 11 (SIGSEGV)" in crashed.error
        assert "out of memory" not in crashed.error
        assert result[f"t-smooth|tiny|{scale}"].status == "ok"
    assert result["t-smooth|tiny|2"].metrics["psnr"] > 20


def test_shards_into_one_folder_give_the_serial_results(tmp_path, plugin, images):
    methods = ["t-smooth", "t-smooth-x2", "t-random"]
    serial = run_benchmark(make_config(tmp_path, plugin, images, methods=methods, output=str(tmp_path / "serial")),
                           progress=False, render=False)
    for per_shard in (False, True):
        folder = tmp_path / f"sharded-{per_shard}"
        parts = [run_benchmark(make_config(tmp_path, plugin, images, methods=methods, output=str(folder)),
                               progress=False, render=False, shard=f"{i}/2", db_per_shard=per_shard)
                 for i in range(2)]
        assert sorted(len(p.cases) for p in parts) == [3, 3]
        assert {c.case_id for c in parts[0].cases}.isdisjoint({c.case_id for c in parts[1].cases})
        assert outcome(read_run(folder).cases) == outcome(serial.cases)
        files = sorted(p.name for p in folder.glob("results*.sqlite"))
        assert files == (["results.shard-0-of-2.sqlite", "results.shard-1-of-2.sqlite"] if per_shard
                         else ["results.sqlite"])


def test_shard_comes_from_slurm_or_torchrun_when_not_given(monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "RANK", "WORLD_SIZE",
                 "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_shard(None) is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_shard(None) == Shard(3, 8, "RANK/WORLD_SIZE (torchrun)", 1)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert (resolve_shard(None).index, resolve_shard(None).count) == (1, 3)
    assert resolve_shard("0/2") == Shard(0, 2)
    assert select(list(range(7)), Shard(1, 3)) == [1, 4]


@pytest.mark.parametrize("text", ["2/2", "x/2", "1", "3/-1", "0/0"])
def test_a_bad_shard_is_a_one_line_error(text, tmp_path, capsys):
    with pytest.raises(UserError):
        parse_shard(text)
    config = tmp_path / "c.yml"
    config.write_text("methods: [bicubic]\n")
    assert run_cli(["run", "--config", str(config), "--shard", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --shard") and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the Ray executor test needs `pip install ray` (the cluster extra)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_the_ray_executor_gives_the_serial_results(tmp_path, plugin, images, ray_cluster):
    methods = ["t-smooth", "t-smooth-x2", "t-random", "t-crash"]
    serial = run_benchmark(make_config(tmp_path, plugin, images, methods=methods, output=str(tmp_path / "serial")),
                           progress=False, render=False)
    on_ray = run_benchmark(make_config(tmp_path, plugin, images, methods=methods, output=str(tmp_path / "ray")),
                           progress=False, render=False, executor="ray")
    assert outcome(on_ray.cases) == outcome(serial.cases)
    assert outcome(read_run(tmp_path / "ray").cases) == outcome(serial.cases)
    assert "SIGSEGV" in by_id(on_ray)["t-crash|tiny|2"].error
    assert len(read_run(tmp_path / "ray").images) == len(read_run(tmp_path / "serial").images)


def test_files_a_ray_worker_writes_have_the_runs_umask_not_the_workers(tmp_path, plugin, images, ray_cluster):
    """The Ray workers started under the test process's umask (the module's cluster); the run is made under 077,
    so the outputs its workers write must be 0600, as the serial executor's are."""
    previous = os.umask(0o077)
    try:
        run_benchmark(make_config(tmp_path, plugin, images, scales=[2], save_images=True,
                                  output=str(tmp_path / "ray")), progress=False, render=False, executor="ray")
    finally:
        os.umask(previous)
    written = list((tmp_path / "ray" / "images").rglob("*.png"))
    assert written and {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o600}
