"""The runner end to end on small real inputs: statuses, stored values, resume, isolation, visuals.

Methods come from a plugin file written here (the config's `plugins:` key), so these tests pin the engine's
behaviour without depending on any particular method's code; the dataset is a folder of small PNGs.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.config import parse_config
from asr_bench.data import imresize, read_image, to_tensor
from asr_bench.engine.records import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, slug
from asr_bench.results.schema import label_stem
from asr_bench.engine.runner import run_benchmark
from asr_bench.errors import UserError
from asr_bench.metrics import psnr, ssim
from asr_bench.protocols import get_protocol

REPO = Path(__file__).resolve().parent.parent

PLUGIN = '''
import os
import time
import warnings
import torch
import torch.nn.functional as F
from asr_bench.registry import MethodSpec, Option
from asr_bench.upsampler import Upsampler

CALLS_FILE = 'CALLS_PATH'  # counted in a file: cases run in worker processes
INTERRUPT_FILE = CALLS_FILE + '.interrupt'  # holds N: the N-th call raises KeyboardInterrupt (not a kwarg: kwargs are provenance)


class Smooth(Upsampler):
    """1x1 conv (identity at init) + bilinear; options to sleep, allocate or fail (t-random: no weights)."""

    def __init__(self, sleep=0.0, alloc_mb=0, fail=False, interrupt_at=0, pid_file=None,
                 wrong_size=False, warn=False):
        super().__init__()
        self.wrong_size, self.warn = wrong_size, warn
        self.calls, self.interrupt_at = 0, interrupt_at
        if pid_file:
            with open(pid_file, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()
        self.sleep, self.alloc_mb, self.fail = sleep, alloc_mb, fail

    def forward_size(self, lr, size, scale):
        with open(CALLS_FILE, 'a') as handle:
            handle.write('x')
        self.calls += 1
        if self.calls == self.interrupt_at or (os.path.exists(INTERRUPT_FILE)
                                               and self.calls == int(open(INTERRUPT_FILE).read())):
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a case
        if self.sleep:
            time.sleep(self.sleep)
        if self.alloc_mb:
            torch.ones(self.alloc_mb * 2 ** 18).sum()
        if self.fail:
            raise RuntimeError("injected failure")
        if self.warn:
            warnings.warn("t-smooth says hi")
        if self.wrong_size:
            size = (size[0] + 1, size[1])
        return F.interpolate(self.conv(lr), size=size, mode="bilinear", align_corners=False)


class X2Only(Smooth):
    scales = (2,)


def build(encoder="none", preset=None, weights=None, **kwargs):
    return Smooth(**kwargs)


def build_x2(encoder="none", preset=None, weights=None, **kwargs):
    return X2Only(**kwargs)


def build_random(encoder="tiny", preset=None, weights=None, **kwargs):
    return Smooth(**kwargs)


def build_weighted(encoder="none", preset=None, weights=None, **kwargs):
    """Loaded strictly by the registry from a checkpoint of conv.weight/conv.bias: another file, another number."""
    return Smooth(**kwargs)


class Crash(Smooth):
    def forward_size(self, lr, size, scale):
        import ctypes

        ctypes.string_at(0)  # a segfault, as a broken compiled op would cause


def build_crash(encoder="none", preset=None, weights=None, **kwargs):
    return Crash(**kwargs)


OPTIONS = {name: Option(name) for name in ("sleep", "alloc_mb", "fail", "interrupt_at", "pid_file", "wrong_size",
                                           "warn")}
METHODS = [
    MethodSpec("t-weights", build_weighted, ("none",), needs_weights=True, options=OPTIONS),
    MethodSpec("t-crash", build_crash, ("none",), needs_weights=False, options=OPTIONS),
    MethodSpec("t-smooth", build, ("none",), needs_weights=False, options=OPTIONS),
    MethodSpec("t-smooth-x2", build_x2, ("none",), scales=(2,), needs_weights=False, options=OPTIONS),
    MethodSpec("t-smooth-bf16", build, ("none",), needs_weights=False, options=OPTIONS, dtypes=("fp32", "bf16")),
    MethodSpec("t-random", build_random, ("tiny",), needs_weights=True, options=OPTIONS),
]
'''


@pytest.fixture(scope="session")
def plugin(tmp_path_factory):
    # One file per session, whichever module asks (test_engine_provenance imports this fixture: a second fixture
    # instance must not write a second plugin, since plugins are cached by file stem and count calls beside it).
    folder = tmp_path_factory.getbasetemp() / "engine-plugin"
    path = folder / "engine_test_methods.py"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(PLUGIN.replace("CALLS_PATH", str(folder / "calls.txt")))
    return str(path)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Three smooth-ish 8-bit images of different sizes (a plain-folder dataset)."""
    folder = tmp_path_factory.mktemp("data") / "tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (36, 48), "b": (40, 30), "c": (24, 24)}.items():
        noise = rng.random((h // 4 + 2, w // 4 + 2, 3))
        img = np.asarray(Image.fromarray((noise * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
        Image.fromarray(img).save(folder / f"{name}.png")
    return str(folder)


def make_config(tmp_path, plugin, images, **overrides):
    raw = {"methods": ["t-smooth"], "datasets": [images], "scales": [2, 3.5], "metrics": ["psnr", "ssim"],
           "device": "cpu", "profiling": {"warmup": 0, "repeats": 2, "memory": False, "flops": True},
           "plugins": [plugin], "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")}
    raw.update(overrides)
    raw["profiling"] = {"max_repeats": raw["profiling"].get("repeats", 5), **raw["profiling"]}  # exact call counts
    return parse_config(raw, default_name="t")


def calls(plugin):
    """Model calls so far, by every process (the plugin counts them in a file beside itself)."""
    path = Path(plugin).parent / "calls.txt"
    return len(path.read_text()) if path.exists() else 0


def stored_images(run_dir):
    """(case id, image) rows in the run's database, finished case or not (read with sqlite3 directly)."""
    import sqlite3

    with sqlite3.connect(Path(run_dir) / "results.sqlite") as conn:
        try:
            return conn.execute("SELECT case_id, image FROM images ORDER BY rowid").fetchall()
        except sqlite3.OperationalError as error:  # polled while the run is still creating its tables
            if "no such table" in str(error):
                return []
            raise


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_stored_values_equal_a_direct_computation(tmp_path, plugin, images):
    result = run_benchmark(make_config(tmp_path, plugin, images), progress=False, render=False)
    assert [c.status for c in result.cases] == [OK, OK]
    case = result.cases[1]
    assert (case.case_id, case.scale, case.n_images) == ("t-smooth|tiny|3.5", "3.5", 3)
    # Independent: the protocol's LR (MATLAB bicubic, BasicSR float), bilinear upscaling, uint8 levels,
    # then the metrics called directly on the Y channel with border int(3.5) = 3.
    hr = to_tensor(read_image(Path(images) / "a.png"))
    lr = to_tensor((imresize(read_image(Path(images) / "a.png"), scale=1 / 3.5, mode="float")))[..., :10, :13]
    sr = torch.nn.functional.interpolate(lr, size=(35, 45), mode="bilinear", align_corners=False)
    sr = (sr.clamp(0, 1) * 255).round() / 255
    image = {r["image"]: r for r in rows(tmp_path / "run/images.jsonl") if r["case_id"] == case.case_id}["a"]
    assert image["lr_size"] == [10, 13] and image["sr_size"] == [35, 45]
    assert image["metrics"]["psnr"] == pytest.approx(psnr(sr, hr[..., :35, :45], crop=3, y_channel=True), abs=1e-6)
    assert image["metrics"]["ssim"] == pytest.approx(ssim(sr, hr[..., :35, :45], crop=3, y_channel=True), abs=1e-6)
    per_image = [r["metrics"]["psnr"] for r in rows(tmp_path / "run/images.jsonl") if r["case_id"] == case.case_id]
    assert case.metrics["psnr"] == pytest.approx(np.mean(per_image), abs=1e-12)
    # Cost: params of the 1x1 conv, FLOPs of one call on the first image (2*3*3 per LR pixel), timing fields.
    assert case.params == 12 and case.flops == 2 * 3 * 3 * 10 * 13
    assert case.time_ms > 0 and (case.time_repeats, case.time_warmup) == (2, 0)
    assert case.output_mpix == pytest.approx(35 * 45 / 1e6)


def test_statuses_unsupported_no_weights_and_error(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, methods=[
        "t-smooth-x2", "t-random", {"method": "t-smooth", "kwargs": {"fail": True}, "label": "broken"},
        {"method": "t-smooth", "kwargs": {"wrong_size": True}, "label": "misfit"}, "t-smooth"])
    result = run_benchmark(config, progress=False, render=False)
    status = {c.case_id: c for c in result.cases}
    assert status["t-smooth-x2|tiny|2"].status == OK
    unsupported = status["t-smooth-x2|tiny|3.5"]
    assert unsupported.status == UNSUPPORTED and unsupported.notes["psnr"] == "n/a (unsupported scale)"
    assert unsupported.metrics == {"psnr": None, "ssim": None} and "x2" in unsupported.error
    random = status["t-random (tiny)|tiny|2"]
    assert random.status == NO_WEIGHTS and random.metrics["psnr"] is None
    assert random.notes["psnr"] == "n/a (no weights)"
    assert random.time_ms > 0 and random.params == 12 and random.flops > 0  # cost still measured
    broken = status["broken|tiny|2"]
    assert broken.status == ERROR and "injected failure" in broken.error and "\n" not in broken.error
    misfit = status["misfit|tiny|2"]  # a method's own complaint (output size) fails its case, not the run
    assert misfit.status == ERROR and "differs from the target" in misfit.error
    assert status["t-smooth|tiny|3.5"].status == OK  # the run went on after the failures
    assert result.failed == 4


def test_rerun_recomputes_nothing_and_retry_errors_reruns_failures(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, methods=[
        "t-smooth", {"method": "t-smooth", "kwargs": {"fail": True}, "label": "broken"}])
    run_benchmark(config, progress=False, render=False)
    before = calls(plugin)
    cases_text = (tmp_path / "run/cases.jsonl").read_text()
    run_benchmark(config, progress=False, render=False)
    assert calls(plugin) == before and (tmp_path / "run/cases.jsonl").read_text() == cases_text
    run_benchmark(config, progress=False, retry_errors=True, render=False)
    assert calls(plugin) > before  # only the failed cases ran again


def test_a_changed_protocol_recomputes_the_case_never_mixes(tmp_path, plugin, images):
    """The protocol is part of the provenance key: the stored case is recomputed, not kept or mixed."""
    first = run_benchmark(make_config(tmp_path, plugin, images, scales=[2]), progress=False, render=False)
    before = calls(plugin)
    second = run_benchmark(make_config(tmp_path, plugin, images, scales=[2], protocol={"name": "gsasr", "crop": 1}),
                           progress=False, render=False)
    assert calls(plugin) > before
    (old,), (new,) = first.cases, second.cases
    assert old.protocol == "gsasr" and new.protocol == "gsasr (crop=1)" and new.case_key != old.case_key
    assert new.metrics["psnr"] != old.metrics["psnr"]  # a smaller border: another number
    stored = rows(tmp_path / "run/cases.jsonl")
    assert [r["protocol"] for r in stored] == ["gsasr (crop=1)"]
    assert {r["image"] for r in rows(tmp_path / "run/images.jsonl")} == {"a", "b", "c"}


def test_tiled_run_matches_untiled_at_integer_scale(tmp_path, plugin, images):
    whole = run_benchmark(make_config(tmp_path, plugin, images, scales=[2]), progress=False, render=False)
    tiled = run_benchmark(make_config(tmp_path, plugin, images, scales=[2], output=str(tmp_path / "tiled"),
                                      tiling={"tile": 8, "overlap": 4}), progress=False, render=False)
    assert tiled.cases[0].metrics["psnr"] == pytest.approx(whole.cases[0].metrics["psnr"], abs=1e-9)


def test_visual_crops_share_one_box(tmp_path, plugin, images):
    run_benchmark(make_config(tmp_path, plugin, images, scales=[2], visuals={"crop": 16}), progress=False, render=False)
    folder = tmp_path / "run/visuals/tiny/2/a"
    names = sorted(p.name for p in folder.iterdir() if p.name not in ("thumb.png", "box.json"))
    assert names == ["GT.png", "bicubic.png", f"{label_stem('t-smooth')}.png"]
    assert {read_image(folder / n).shape for n in names} == {(16, 16, 3)}
    top, left, bottom, right = json.loads((folder / "box.json").read_text())["box"]
    gt = read_image(Path(images) / "a.png")[top:bottom, left:right]
    assert np.array_equal(read_image(folder / "GT.png"), gt)


def test_save_images_writes_every_output_and_crop_at_moves_the_crop(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, scales=[2], save_images=True, visuals={"crop": 8, "crop_at": [3, 5]})
    run_benchmark(config, progress=False, render=False)
    written = sorted(p.relative_to(tmp_path / "run/images").as_posix() for p in (tmp_path / "run/images").rglob("*.png"))
    assert written == [f"tiny/x2/{label_stem('t-smooth')}/{name}.png" for name in ("a", "b", "c")]
    folder = tmp_path / "run/visuals/tiny/2/a"
    assert json.loads((folder / "box.json").read_text())["box"] == [3, 5, 11, 13]
    assert np.array_equal(read_image(folder / "GT.png"), read_image(Path(images) / "a.png")[3:11, 5:13])


def test_run_json_records_environment_and_config(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, scales=[2])
    run_benchmark(config, progress=False)
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["config"]["scales"] == [2.0] and len(run["config_hash"]) == 16
    assert run["cases"] == ["t-smooth|tiny|2"]
    env = run["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and "op_backends" in env
    assert (tmp_path / "run/report.html").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fresh-process RSS peaks are measured on Linux")
def test_cpu_memory_is_measured_in_a_fresh_process_per_case(tmp_path, plugin, images, capfd):
    config = make_config(tmp_path, plugin, images, scales=[2], profiling={"warmup": 0, "repeats": 1, "memory": True},
                         methods=[{"method": "t-smooth", "kwargs": {"alloc_mb": 48, "warn": True}, "label": "big"},
                                  {"method": "t-smooth", "kwargs": {"alloc_mb": 8, "warn": True}, "label": "small"}])
    result = run_benchmark(config, progress=False, render=False)
    big, small = result.cases
    assert big.memory_kind == "cpu peak RSS increase"
    assert 44 <= big.memory_mb <= 80 and 6 <= small.memory_mb <= 30  # the bigger case does not hide the small one
    assert capfd.readouterr().err.count("t-smooth says hi") == 1  # the workers' warnings, shown once per run


def comparable(path):
    """The stored rows minus what legitimately changes between two runs: the measured time and memory, and the
    number of timed calls (repeats stop when the median's interval is narrow enough, which depends on the noise)."""
    out = []
    for row in rows(path):
        for key in ("time_ms", "time_min_ms", "time_max_ms", "time_iqr_ms", "time_repeats", "time_samples_ms",
                    "time_setup_ms", "memory_mb"):
            row.pop(key, None)
        out.append(row)
    return out


def test_an_interrupted_run_resumes_mid_case_to_the_same_results(tmp_path, plugin, images):
    """Ctrl-C inside a case (after its profile and first image are stored), rerun, compare with a clean run."""
    def config(output, **kwargs):
        return make_config(tmp_path, plugin, images, output=str(tmp_path / output), visuals={"crop": 0},
                           profiling={"warmup": 0, "repeats": 1, "memory": False, "flops": True},
                           methods=["t-random", {"method": "t-smooth", "label": "s", "kwargs": kwargs}])
    flag = Path(plugin).parent / "calls.txt.interrupt"
    flag.write_text("4")
    try:
        with pytest.raises(KeyboardInterrupt):  # calls: timing (= image a's), FLOPs, image b, image c <- interrupted
            run_benchmark(config("resumed"), progress=False, render=False, isolate=False)
    finally:
        flag.unlink()
    assert stored_images(tmp_path / "resumed") == [("s|tiny|2", "a"), ("s|tiny|2", "b")]
    before = calls(plugin)
    run_benchmark(config("resumed"), progress=False, render=False)
    assert calls(plugin) - before == 1 + (2 + 2)  # s|2: image c only; s|3.5: profile (2, one is image a's) + b, c
    run_benchmark(config("clean"), progress=False, render=False)
    for name in ("cases.jsonl", "images.jsonl"):
        assert comparable(tmp_path / "resumed" / name) == comparable(tmp_path / "clean" / name)


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\tZ" not in state.split("State:")[1].splitlines()[0]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_run_resumes_to_the_same_results(tmp_path, plugin, images):
    """SIGKILL the run's main process mid-case: its worker stops too; a rerun gives an uninterrupted run's results."""
    pids = tmp_path / "pids.txt"
    raw = {"methods": [{"method": "t-smooth", "label": "slow", "kwargs": {"sleep": 0.5, "pid_file": str(pids)}},
                       "t-smooth-x2", "t-random"],
           "datasets": [images], "scales": [2, 3.5], "metrics": ["psnr", "ssim"], "device": "cpu",
           "profiling": {"warmup": 0, "repeats": 1, "memory": True, "flops": False}, "visuals": {"crop": 0},
           "plugins": [plugin], "cache_dir": str(tmp_path / "cache")}
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    config_path = tmp_path / "cfg.json"  # JSON is YAML
    config_path.write_text(json.dumps({**raw, "output": str(killed_dir)}))
    command = [sys.executable, str(REPO / "run_bench.py"), "--config", str(config_path), "--no-progress"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (killed_dir / "results.sqlite").exists() and stored_images(killed_dir):  # first image stored
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    worker = int(pids.read_text().split()[0])
    deadline = time.time() + 5
    while alive(worker) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(worker), "the case worker outlived the killed run"
    assert len(stored_images(killed_dir)) < 3  # killed inside the first case
    assert not (killed_dir / "cases.jsonl").exists() or not rows(killed_dir / "cases.jsonl")
    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    run_benchmark(parse_config({**raw, "output": str(clean_dir)}), progress=False, render=False)
    for name in ("cases.jsonl", "images.jsonl"):
        assert comparable(killed_dir / name) == comparable(clean_dir / name)
    assert len(rows(clean_dir / "cases.jsonl")) == 6


def test_flops_are_skipped_with_a_note_when_one_call_is_slow_unless_always(tmp_path, plugin, images, monkeypatch):
    monkeypatch.setattr("asr_bench.engine.execute.FLOPS_MAX_CALL_S", 0.0)  # every call counts as slow here
    (case,) = run_benchmark(make_config(tmp_path, plugin, images, scales=[2]), progress=False, render=False,
                            isolate=False).cases
    assert case.flops is None and "set profiling.flops: always" in case.cost_notes["flops"]
    (counted,) = run_benchmark(make_config(tmp_path, plugin, images, scales=[2], output=str(tmp_path / "always"),
                                           profiling={"warmup": 0, "repeats": 1, "memory": False, "flops": "always"}),
                               progress=False, render=False, isolate=False).cases
    assert counted.flops == 2 * 3 * 3 * 18 * 24 and counted.cost_notes == {}  # 1x1 conv on image a's 18x24 LR


def test_a_fixed_profiling_input_is_measured_and_every_image_still_runs(tmp_path, plugin, images):
    before = calls(plugin)
    (case,) = run_benchmark(make_config(tmp_path, plugin, images, scales=[2],
                                        profiling={"warmup": 0, "repeats": 2, "memory": False, "flops": False,
                                                   "input": [20, 30]}), progress=False, render=False).cases
    assert case.profile_input == [20, 30] and case.output_mpix == 40 * 60 / 1e6
    assert case.time_repeats == 2 and case.time_min_ms <= case.time_ms <= case.time_max_ms
    assert calls(plugin) - before == 2 + 3  # the timed calls are not an image's: all three images run


def test_without_a_terminal_a_run_logs_one_line_per_finished_case_and_no_bars(tmp_path, plugin, images, capfd):
    config = make_config(tmp_path, plugin, images, methods=["t-smooth", "t-random", "t-smooth-x2"], scales=[2, 3])
    run_benchmark(config, progress=True, render=False)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("case ")]
    assert [line.split("  ")[:3] for line in lines] == [
        ["case 1/6", "t-smooth|tiny|2", "scored"], ["case 2/6", "t-smooth|tiny|3", "scored"],
        ["case 3/6", "t-random (tiny)|tiny|2", "cost only (random weights)"],
        ["case 4/6", "t-random (tiny)|tiny|3", "cost only (random weights)"],
        ["case 5/6", "t-smooth-x2|tiny|2", "scored"], ["case 6/6", "t-smooth-x2|tiny|3", "unsupported scale"]]
    assert "\r" not in err and "img/s" not in err  # no tqdm redraws in a log


STAGED_PLUGIN = '''
import time
import torch.nn.functional as F
from asr_bench.registry import MethodSpec
from asr_bench.stages import stage
from asr_bench.upsampler import Upsampler


class Staged(Upsampler):
    """Stages that sleep known times (encoder 40 ms, twice 15 ms of decoder), plus 10 ms of unmarked glue."""

    def forward_size(self, lr, size, scale):
        with stage("encoder"):
            time.sleep(0.04)
        for _ in range(2):
            with stage("decoder"):
                time.sleep(0.015)
        time.sleep(0.01)
        return F.interpolate(lr, size=size, mode="bilinear", align_corners=False)


METHODS = [MethodSpec("t-staged", lambda encoder="none", preset=None, weights=None: Staged(), ("none",),
                      needs_weights=False)]
'''


def run_timed_plugin(tmp_path, images, source, method, warmup, repeats, render=False):
    """The one case of a plugin method written to `source`, timed `repeats` times after `warmup` calls."""
    plugin = tmp_path / f"{method.replace('-', '_')}_methods.py"
    plugin.write_text(source)
    config = parse_config({"methods": [method], "datasets": [images], "scales": [2], "metrics": ["psnr"],
                           "device": "cpu", "plugins": [str(plugin)], "visuals": {"crop": 0},
                           "profiling": {"warmup": warmup, "repeats": repeats, "max_repeats": repeats,
                                         "memory": False, "flops": False},
                           "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})
    (case,) = run_benchmark(config, progress=False, render=render).cases
    return case


def test_stage_times_add_up_to_the_total_within_the_timers_noise(tmp_path, images):
    case = run_timed_plugin(tmp_path, images, STAGED_PLUGIN, "t-staged", warmup=1, repeats=3)
    assert list(case.stages) == ["encoder", "decoder"]
    assert case.stages["encoder"] >= 40 and case.stages["decoder"] >= 30  # a sleep lasts at least its length
    glue = case.time_ms - sum(case.stages.values())
    assert 10 <= glue <= 10 + 0.5 * case.time_ms  # the unmarked 10 ms, plus the timer's and the machine's noise
    header = (tmp_path / "run" / "cases.csv").read_text().splitlines()[0].split(",")
    assert "stage_encoder_ms" in header and "stage_decoder_ms" in header


SETUP_PLUGIN = '''
import time
import torch.nn.functional as F
from asr_bench.registry import MethodSpec
from asr_bench.stages import one_time_setup, stage
from asr_bench.upsampler import Upsampler

BUILT = []


class BuildsOnFirstUse(Upsampler):
    """Like a compiled op: the first render 'compiles' for 0.8 s (once per process), every render takes 60 ms."""

    def forward_size(self, lr, size, scale):
        with stage("render"):
            if not BUILT:
                with one_time_setup("compiling the cpp t-op backend"):
                    time.sleep(0.8)
                BUILT.append(1)
            time.sleep(0.06)
        return F.interpolate(lr, size=size, mode="bilinear", align_corners=False)


METHODS = [MethodSpec("t-builds", lambda encoder="none", preset=None, weights=None: BuildsOnFirstUse(), ("none",),
                      needs_weights=False)]
'''


def test_a_compile_inside_the_only_timed_call_is_not_the_methods_time_and_the_report_says_so(tmp_path, images):
    """warm-up 0, one timed call, and that call builds a compiled op: the stored time and the render stage are the
    60 ms of work, not the 0.8 s of building, and the cost table names what was left out."""
    case = run_timed_plugin(tmp_path, images, SETUP_PLUGIN, "t-builds", warmup=0, repeats=1, render=True)
    assert case.time_repeats == 1 and 60 <= case.time_ms < 500
    assert 60 <= case.stages["render"] < 500 and case.stages["render"] <= case.time_ms
    assert 800 <= case.time_setup_ms < 2000  # stored: a reader can tell this record took setup out
    assert case.cost_notes["time"].startswith("excludes 0.8 s of one-time setup inside the timed calls "
                                              "(compiling the cpp t-op backend)")
    table = (tmp_path / "run" / "tables" / "cost.md").read_text()
    assert "time of t-builds" in table and "compiling the cpp t-op backend" in table
    header, row = (tmp_path / "run" / "tables" / "cost.csv").read_text().splitlines()[:2]
    assert "time_note" in header.split(",") and "compiling the cpp t-op backend" in row
    assert "Time of t-builds" in (tmp_path / "run" / "report.html").read_text()


def test_precisions_are_a_case_axis_in_the_dtypes_each_method_declares(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, scales=[2], methods=["t-smooth", "t-smooth-bf16"],
                         precisions=["fp32", "bf16"])
    cases = {c.case_id: c for c in run_benchmark(config, progress=False, render=False).cases}
    assert list(cases) == ["t-smooth|tiny|2", "t-smooth|tiny|2|bf16", "t-smooth-bf16|tiny|2",
                           "t-smooth-bf16|tiny|2|bf16"]
    refused = cases["t-smooth|tiny|2|bf16"]
    assert refused.status == "unsupported" and refused.notes["psnr"] == "n/a (unsupported precision)"
    fp32, bf16 = cases["t-smooth-bf16|tiny|2"], cases["t-smooth-bf16|tiny|2|bf16"]
    assert (fp32.precision, bf16.precision, bf16.status) == ("fp32", "bf16", "ok")
    assert bf16.metrics["psnr"] != fp32.metrics["psnr"] and abs(bf16.metrics["psnr"] - fp32.metrics["psnr"]) < 2
    assert bf16.case_key != fp32.case_key
    from asr_bench.results.schema import label_stem

    (folder,) = (tmp_path / "run" / "visuals" / "tiny" / "2").iterdir()  # the first image's crops
    stems = {p.stem for p in folder.glob("*.png")}
    assert {label_stem("t-smooth-bf16"), label_stem("t-smooth-bf16 [bf16]")} <= stems  # one crop per variant


def test_compile_is_a_case_axis_and_the_forward_goes_through_torch_compile(tmp_path, plugin, images, monkeypatch):
    compiled = []

    def spy(fn, **kwargs):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", spy)
    config = make_config(tmp_path, plugin, images, scales=[2], compile=[False, True])
    cases = run_benchmark(config, progress=False, render=False, isolate=False).cases
    assert [(c.case_id, c.compiled) for c in cases] == [("t-smooth|tiny|2", False), ("t-smooth|tiny|2|compiled", True)]
    assert len(compiled) == 1 and compiled[0].__name__ == "forward_size"
    assert cases[0].metrics == cases[1].metrics


def test_frame_rates_are_measured_once_per_method_for_the_scales_it_supports(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, scales=[2, 3.5], methods=["t-smooth", "t-smooth-x2"],
                         profiling={"warmup": 0, "repeats": 1, "memory": False, "flops": False, "frame_rates": True})
    cases = {c.case_id: c for c in run_benchmark(config, progress=False, render=False).cases}
    smooth, x2_only = cases["t-smooth|tiny|2"], cases["t-smooth-x2|tiny|2"]
    assert smooth.fps_720p_4k > 0 and smooth.fps_1080p_4k > 0
    assert "whole frame" in smooth.cost_notes["fps_1080p_4k"]
    assert x2_only.fps_1080p_4k > 0 and x2_only.fps_720p_4k is None
    assert x2_only.cost_notes["fps_720p_4k"] == "n/a (x3 unsupported)"
    assert cases["t-smooth|tiny|3.5"].fps_1080p_4k is None  # measured in the method's first case only


def test_frame_rates_go_to_the_first_case_that_runs_not_an_unsupported_one(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, scales=[3.5, 2], methods=["t-smooth-x2"],
                         profiling={"warmup": 0, "repeats": 1, "memory": False, "flops": False, "frame_rates": True})
    cases = {c.case_id: c for c in run_benchmark(config, progress=False, render=False).cases}
    assert cases["t-smooth-x2|tiny|3.5"].status == "unsupported" and cases["t-smooth-x2|tiny|3.5"].fps_1080p_4k is None
    assert cases["t-smooth-x2|tiny|2"].fps_1080p_4k > 0


def test_each_case_records_which_op_backend_ran(tmp_path, plugin, images):
    config = make_config(tmp_path, plugin, images, scales=[2], methods=["t-smooth", "metasr"],
                         profiling={"warmup": 0, "repeats": 1, "memory": False, "flops": False})
    smooth, metasr = run_benchmark(config, progress=False, render=False).cases
    assert smooth.backends == {}
    assert list(metasr.backends) == ["meta_upscale"] and metasr.backends["meta_upscale"] in ("cpp", "torch")


def test_a_precision_the_encoder_is_not_checked_in_reads_na_without_running(tmp_path, plugin, images):
    from asr_bench.encoders import encoder_capabilities

    assert "float16" not in encoder_capabilities("hit-srf").dtypes   # overflows to inf at random weights
    config = make_config(tmp_path, plugin, images, scales=[2], precisions=["fp16"],
                         methods=[{"method": "igconv", "encoder": "hit-srf"}])
    (case,) = run_benchmark(config, progress=False, render=False).cases
    assert case.status == "unsupported" and case.notes["psnr"] == "n/a (unsupported precision)"
    assert "hit-srf" in case.error and "float16" in case.error


def test_frame_rate_notes_name_the_tiling_the_frame_ran_under(tmp_path, plugin, images):
    from types import SimpleNamespace

    from asr_bench.engine.execute import frame_tiling

    whole = make_config(tmp_path, plugin, images)
    tiled = make_config(tmp_path, plugin, images, tiling={"tile": 96, "overlap": 8})
    gsasr_like = SimpleNamespace(tiling="internal", tile=480)   # tiles itself through its `tile` option
    assert frame_tiling(SimpleNamespace(), whole, (720, 1280)) == "whole frame"
    assert frame_tiling(SimpleNamespace(), tiled, (720, 1280)) == "engine-tiled (96 px LR tiles, overlap 8)"
    assert frame_tiling(gsasr_like, tiled, (720, 1280)) == "tiled by the method (480 px LR tiles)"
    assert frame_tiling(gsasr_like, whole, (360, 400)) == "whole frame"   # below its tile: one piece
