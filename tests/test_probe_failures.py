"""The probe failures of issue 21, one test each: bad input is one line (exit 2) or the one case's recorded error,
never a traceback, a hang, a file outside the output root, or a number that should not be one."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asr_bench.cli import run_cli
from asr_bench.config import load_config, parse_config
from asr_bench.errors import UserError
from asr_bench.results.schema import SLUG_MAX, label_stem, slug

PLUGIN = '''
import os
import time
import torch
import torch.nn.functional as F
from asr_bench.ops import build
from asr_bench.registry import MethodSpec, Option
from asr_bench.upsampler import Upsampler


class Odd(Upsampler):
    """Bilinear, or an output of one constant value, or a call that never returns, exits, or starts a compile."""

    def __init__(self, value="", hang=False, exit0=False, notice=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.value, self.hang, self.exit0, self.notice = value, hang, exit0, notice

    def forward_size(self, lr, size, scale):
        if self.notice:
            build.compile_notice("toy", "cpp")  # what a first use of a compiled op says, inside a worker
        if self.hang:
            while True:
                time.sleep(1)
        if self.exit0:
            os._exit(0)
        out = F.interpolate(lr, size=size, mode="bilinear", align_corners=False)
        return torch.full_like(out, float(self.value)) if self.value else out


def build_odd(encoder="none", preset=None, weights=None, **kwargs):
    return Odd(**kwargs)


METHODS = [MethodSpec("t-odd", build_odd, ("none",), needs_weights=False,
                      options={name: Option(name) for name in ("value", "hang", "exit0", "notice")})]
'''


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe-data") / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe-plugin") / "probe_methods.py"
    path.write_text(PLUGIN)
    return path


def config_file(tmp_path, images, methods, extra=""):
    path = tmp_path / "c.yml"
    path.write_text(f"methods: {json.dumps(methods)}\ndatasets: [{images}]\nscales: [2]\nmetrics: [psnr, ssim]\n"
                    "device: cpu\nprofiling: {warmup: 0, repeats: 1, memory: false, flops: false}\n"
                    f"visuals: {{crop: 8}}\ncache_dir: {tmp_path / 'cache'}\n{extra}")
    return path


def one_line(err):
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- 2. the run name stays inside results/ --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped_run", "../x", "a/b", "..", ".", "/tmp/abs", "a\\b"])
def test_a_run_name_that_leaves_results_is_refused(tmp_path, images, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    config = config_file(tmp_path, images, ["bicubic"])
    assert run_cli(["--config", str(config), "--set", f"name={name}", "--no-progress"]) == 2
    assert "a run name is one folder name under results/" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yml", "imgs"] or not (tmp_path / "results").exists()
    assert not (tmp_path.parent / "escaped_run").exists()


def test_a_plain_run_name_is_the_folder_under_results():
    config = load_config(data={"methods": ["bicubic"]}, overrides=["name=my run-2"])
    assert config.run_dir() == Path("results") / "my run-2"


# -- 3. file names made from labels are bounded and unique -------------------------------------------------------


def test_slugs_are_bounded_and_long_labels_stay_distinct():
    long_a, long_b = "L" * 10_000, "L" * 9_999 + "M"
    assert len(slug(long_a)) == SLUG_MAX and slug(long_a) != slug(long_b)
    assert len(label_stem(long_a).encode()) < 100 and label_stem(long_a) != label_stem(long_b)
    assert slug("LIIF (edsr-baseline)") == "liif_edsr-baseline"  # short ones unchanged
    assert label_stem("A b") != label_stem("a_b")  # slug alike, files apart
    assert slug("..") not in (".", "..")


def test_a_10000_character_label_is_scored_and_names_short_files(tmp_path, images, capsys):
    methods = [{"method": "bicubic", "label": "L" * 10_000}, {"method": "bicubic", "label": "L" * 9_999 + "M"}]
    from asr_bench.engine.runner import run_benchmark

    config = config_file(tmp_path, images, methods, "save_images: true\n")
    run = tmp_path / "run"
    # the engine's files (crops, outputs, views); the report's plots of 10,000-character labels take a minute
    result = run_benchmark(load_config(config, [f"output={run}"]), progress=False, render=False)
    assert result.failed == 0
    cases = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines()]
    assert [c["status"] for c in cases] == ["ok", "ok"]
    names = [p.name for p in run.rglob("*")]
    assert max(len(n.encode()) for n in names) <= 100
    folders = sorted(p.name for p in (run / "images" / "imgs" / "x2").iterdir())
    assert len(folders) == 2 and len(set(folders)) == 2  # one folder per label: nothing overwritten
    assert all(len(list((run / "images" / "imgs" / "x2" / f).iterdir())) == 2 for f in folders)


# -- 4. a Ray address where nothing listens ----------------------------------------------------------------------


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_where_nothing_listens_fails_fast_in_one_line(tmp_path, images, capsys):
    pytest.importorskip("ray")
    config = config_file(tmp_path, images, ["bicubic"])
    started = time.monotonic()
    code = run_cli(["--config", str(config), "--no-progress", "--output", str(tmp_path / "run"), "--executor", "ray",
                    "--ray-address", f"127.0.0.1:{free_port()}"])
    elapsed = time.monotonic() - started
    assert code == 2 and "no Ray cluster answers at 127.0.0.1:" in one_line(capsys.readouterr().err)
    assert elapsed < 30  # it hung for minutes before


def test_check_reachable_names_a_malformed_address_and_passes_a_listening_one():
    from asr_bench.engine.ray_executor import check_reachable

    with pytest.raises(UserError, match="not host:port"):
        check_reachable("localhost")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")
        check_reachable(f"ray://127.0.0.1:{server.getsockname()[1]}")
    check_reachable(None)
    check_reachable("auto")


# -- 5. a partial sharded run says so ---------------------------------------------------------------------------


def test_a_sharded_run_with_a_shard_missing_is_reported_partial_everywhere(tmp_path, images, capsys):
    from asr_bench import results

    config = config_file(tmp_path, images, ["bicubic"], "").read_text().replace("scales: [2]", "scales: [2, 3, 4]")
    (tmp_path / "c.yml").write_text(config)
    run = tmp_path / "run"
    base = ["--config", str(tmp_path / "c.yml"), "--no-progress", "--output", str(run)]
    assert run_cli([*base, "--shard", "0/2"]) == 0
    expected = "shard 1/2 has not run: 1 of 1 of its cases missing (run it with --shard 1/2)"
    assert f"partial run: {expected}" in capsys.readouterr().err
    assert run_cli(["report", str(run)]) == 0
    assert f"partial run: {expected}" in capsys.readouterr().err
    assert expected in (run / "report.html").read_text()
    with pytest.warns(UserWarning, match="is partial: shard 1/2 has not run"):
        loaded = results.load(run)
    assert loaded.partial == [expected] and len(loaded.cases) == 2
    assert run_cli([*base, "--shard", "1/2"]) == 0
    assert "partial" not in capsys.readouterr().err
    assert results.load(run).partial == [] and "Partial run" not in (run / "report.html").read_text()


def test_missing_parts_names_an_unfinished_shard_and_an_unsharded_gap():
    from asr_bench.results.reading import missing_parts
    from asr_bench.results.schema import CaseRecord

    def case(case_id, status="ok"):
        return CaseRecord(case_id=case_id, label="m", method="m", encoder="none", dataset="d", scale="2",
                          protocol="p", status=status)

    planned = ["a", "b", "c", "d", "e"]
    run = {"cases": planned, "shard": "0/2", "invocations": [{"shard": "0/2"}, {"shard": "1/2"}]}
    assert missing_parts(run, [case("a"), case("c"), case("e"), case("b")]) == [
        "shard 1/2 has not finished: 1 of 2 of its cases missing (run it with --shard 1/2)"]
    assert missing_parts({"cases": planned}, [case(c) for c in planned[:3]]) == [
        "2 of 5 planned cases not finished (e.g. d); rerun the same command to complete the run"]
    assert missing_parts({"cases": planned}, [case(c, "error") for c in planned]) == []


# -- 8. score --out unwritable, prepare with an image smaller than the scale --------------------------------------


@pytest.mark.parametrize("out", ["/proc/nope/x.json", "/proc/version/x.json"])
def test_score_to_an_unwritable_out_is_one_line(images, capsys, out):
    assert run_cli(["score", "--sr", str(images), "--gt", str(images), "--scale", "2", "--out", out]) == 2
    assert f"cannot write --out {out}" in one_line(capsys.readouterr().err)


def test_prepare_with_an_image_smaller_than_the_scale_is_one_line(tmp_path, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.new("RGB", (1, 1)).save(hr / "dot.png")
    assert run_cli(["prepare", "--hr", str(hr), "--scales", "4", "--out", str(tmp_path / "out")]) == 2
    assert "is 1x1 (h x w): too small for scale 4" in one_line(capsys.readouterr().err)


# -- 9. tiling overlap >= tile ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile, overlap", [(8, 100), (8, 8), (4, 8)])
def test_an_overlap_not_smaller_than_the_tile_is_refused(tile, overlap):
    with pytest.raises(UserError, match=f"'tiling.overlap' is {overlap} but tiling.tile is {tile}"):
        parse_config({"methods": ["bicubic"], "tiling": {"tile": tile, "overlap": overlap}})


def test_an_overlap_smaller_than_the_tile_or_no_tiling_is_accepted():
    assert parse_config({"methods": ["bicubic"], "tiling": {"tile": 8, "overlap": 7}}).tiling.overlap == 7
    assert parse_config({"methods": ["bicubic"], "tiling": {"overlap": 100}}).tiling.tile is None


# -- 11. bench-ops --bogus ------------------------------------------------------------------------------------------


def test_bench_ops_with_an_unknown_argument_is_one_line(capsys):
    assert run_cli(["bench-ops", "--bogus"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "unrecognized arguments: --bogus" in err and "usage:" not in err


# -- 10, time limit, os._exit: methods that misbehave in their worker --------------------------------------------


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, images, plugin):
    """One run of misbehaving methods then a good one, with a 3 s case time limit: (cases by label, seconds, err)."""
    root = tmp_path_factory.mktemp("odd-run")
    methods = [{"method": "t-odd", "label": "plus-inf", "kwargs": {"value": "inf"}},
               {"method": "t-odd", "label": "minus-inf", "kwargs": {"value": "-inf"}},
               {"method": "t-odd", "label": "nan", "kwargs": {"value": "nan"}},
               {"method": "t-odd", "label": "hangs", "kwargs": {"hang": True}},
               {"method": "t-odd", "label": "exits", "kwargs": {"exit0": True}},
               {"method": "t-odd", "label": "notes", "kwargs": {"notice": True}},
               {"method": "t-odd", "label": "fine"}]
    config = config_file(root, images, methods, f"plugins: [{plugin}]\n").read_text().replace(
        "flops: false}", "flops: false, case_timeout: 3}")
    (root / "c.yml").write_text(config)
    import contextlib
    import io

    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_cli(["--config", str(root / "c.yml"), "--no-progress", "--output", str(root / "run")])
    seconds = time.monotonic() - started
    assert code == 1  # two cases failed: the hung one and the one that exited
    cases = {row["label"]: row for row in map(json.loads, (root / "run" / "cases.jsonl").read_text().splitlines())}
    return cases, seconds, err.getvalue()


@pytest.mark.parametrize("label", ["plus-inf", "minus-inf", "nan"])
def test_infinite_outputs_read_n_a_like_nan(odd_run, label):
    cases, _, _ = odd_run
    case = cases[label]
    assert case["status"] == "ok" and case["metrics"] == {"psnr": None, "ssim": None}
    assert case["notes"]["psnr"].startswith("n/a (not finite")
    assert cases["fine"]["metrics"]["psnr"] > 10  # the same images score with a finite output


def test_a_method_that_never_returns_is_stopped_at_the_case_time_limit_and_the_run_goes_on(odd_run):
    cases, seconds, _ = odd_run
    assert cases["hangs"]["status"] == "error"
    assert cases["hangs"]["error"].startswith("timed out after 3 s (profiling.case_timeout)")
    assert cases["exits"]["status"] == "error" and cases["fine"]["status"] == "ok"  # the cases after it ran
    assert seconds < 120


def test_a_worker_that_calls_os_exit_0_is_recorded_as_an_error(odd_run):
    cases, _, _ = odd_run
    assert cases["exits"]["status"] == "error"
    assert cases["exits"]["error"] == "worker process died (exit code 0) before the case finished"


def test_a_compile_note_from_a_worker_is_printed_by_the_run_on_its_own_line(odd_run):
    _, _, err = odd_run
    lines = err.splitlines()
    assert "compiling the C++ toy backend (once, about a minute; cached afterwards)..." in lines


def test_case_timeout_is_a_declared_config_key_with_a_default():
    from asr_bench.config import FIELDS

    (field,) = [f for f in FIELDS if f.key == "profiling.case_timeout"]
    assert field.default == 3600.0
    assert parse_config({"methods": ["bicubic"], "profiling": {"case_timeout": None}}).profiling.case_timeout is None
    with pytest.raises(UserError, match="case_timeout"):
        parse_config({"methods": ["bicubic"], "profiling": {"case_timeout": 0}})


# -- smaller ----------------------------------------------------------------------------------------------------------


def test_asr_bench_results_is_an_attribute_after_import_asr_bench():
    import subprocess

    code = "import asr_bench, sys; assert 'asr_bench.results' not in sys.modules; print(asr_bench.results.load.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 0 and done.stdout.strip() == "load", done.stderr
