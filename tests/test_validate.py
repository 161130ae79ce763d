"""`asr-bench validate`: the CPU form end to end, the supervisor (a failing step is recorded and the rest run, a
hanging one is cut at its limit with its children), bad input as one line with exit code 2, and the report
files (JSON that parses, a Markdown row per step)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from asr_bench.cli import run_cli
from asr_bench.ops.rasterize.reference import rasterize_reference_unchunked
from asr_bench.validate import STEPS, run_validation
from asr_bench.validate.steps import (
    _synthetic_div2k_720,
    compare_with_official,
    cost_config,
    find_official_sources,
)
from asr_bench.validate.supervisor import (
    MIN_STEP_S,
    Step,
    StepResult,
    markdown,
    step_limits,
    write_report,
)

REPO = Path(__file__).resolve().parent.parent


def validate(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: its own process, our checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "asr_bench", "validate", *args], capture_output=True, text=True, check=False,
                          cwd=cwd, env=env, timeout=timeout)


def report(folder: Path) -> tuple[dict, str]:
    return json.loads((folder / "validate.json").read_text()), (folder / "validate.md").read_text()


def step_rows(markdown_text: str) -> dict[str, list[str]]:
    """The summary table of the Markdown report: step name -> its cells."""
    rows = {}
    for line in markdown_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[0] not in ("step",):
            rows.setdefault(cells[0], cells)
    return rows


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert run_cli(["validate", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--device cuda" in err and "--device cpu" in err  # the problem and the fix
    assert not (tmp_path / "r").exists()  # nothing started


@pytest.mark.parametrize("args, words", [
    (["--budget-s", "0"], "--budget-s"),
    (["--official-gsasr", "no/such/checkout"], "no/such/checkout"),
    (["--steps", "environment,bench-opz"], "bench-opz"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, words, tmp_path, capsys):
    device = [] if args[0] == "--device" else ["--device", "cpu"]
    assert run_cli(["validate", *device, *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err


def test_out_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert run_cli(["validate", "--device", "cpu", "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_help_imports_no_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "asr_bench", "validate", "--help"],
                          capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0 and "--official-gsasr" in done.stdout
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "asr_bench.validate" in modules
    assert not [m for m in modules if m == "torch" or m.startswith("torch.")]


# ------------------------------------------------------------------------------------------- the supervisor


FAKE_STEPS = '''
import os, subprocess, sys, time
from pathlib import Path

def ok(params):
    Path(params["work_dir"], "ran").write_text(str(params["limit_s"]))
    return {"status": "pass", "summary": "fine", "tables": [{"title": "t", "columns": ["a", "b"], "rows": [[1, "x|y"]]}]}

def boom(params):
    raise RuntimeError("injected failure\\nsecond line")

def crash(params):
    os._exit(3)

def hang(params):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(params["work_dir"], "child.pid").write_text(str(child.pid))
    time.sleep(600)
'''


@pytest.fixture
def fake_steps(tmp_path):
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "fake_validate_steps.py").write_text(textwrap.dedent(FAKE_STEPS))
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(REPO), os.environ.get("PYTHONPATH", "")])}


def fake(name: str, function: str, weight: float = 1.0) -> Step:
    return Step(name, f"fake_validate_steps:{function}", weight, f"the {function} step")


def test_a_failing_step_is_recorded_and_the_later_steps_run(tmp_path, fake_steps, capsys):
    steps = [fake("first", "ok"), fake("raises", "boom"), fake("crashes", "crash"), fake("last", "ok")]
    out = tmp_path / "r"
    assert run_validation(steps, "cpu", 200.0, out, env=fake_steps) == 1
    data, text = report(out)
    status = {s["name"]: s["status"] for s in data["steps"]}
    assert status == {"first": "pass", "raises": "FAIL", "crashes": "FAIL", "last": "pass"}
    by_name = {s["name"]: s for s in data["steps"]}
    assert by_name["raises"]["summary"] == "RuntimeError: injected failure"
    assert "code 3" in by_name["crashes"]["summary"]
    assert "Traceback" in (out / by_name["raises"]["log"]).read_text()  # the details are in the step's log
    assert (out / "steps" / "last" / "ran").is_file()
    assert data["finished"] and data["exit_code"] == 1
    assert set(step_rows(text)) == {"first", "raises", "crashes", "last"}
    assert "x\\|y" in text  # a cell's | does not break the table
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed if line.startswith("[")] == ["first", "raises", "crashes", "last"]


def test_a_hanging_step_is_cut_at_its_limit_with_its_children(tmp_path, fake_steps):
    steps = [fake("hangs", "hang"), fake("after", "ok")]
    out = tmp_path / "r"
    begin = time.monotonic()
    assert run_validation(steps, "cpu", 2 * MIN_STEP_S + 4, out, env=fake_steps) == 1
    assert time.monotonic() - begin < 60
    data, _ = report(out)
    hang, after = data["steps"]
    assert hang["status"] == "TIMEOUT" and hang["seconds"] < hang["limit_s"] + 10
    assert after["status"] == "pass"
    pid = int((out / "steps" / "hangs" / "child.pid").read_text())
    for _ in range(50):  # the step's own child went with it (killed, then reaped by init)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the hanging step's child {pid} outlived the step")


def test_the_budget_is_shared_by_weight_and_unused_time_goes_to_later_steps():
    assert step_limits([1, 1], 100, 0) == pytest.approx(50)
    assert step_limits([2, 1, 1], 100, 0) == pytest.approx(50)
    assert step_limits([1, 1], 100, 10) == pytest.approx(45)  # the first half took 10 s: 90 left for two
    assert step_limits([1], 100, 99.5) == MIN_STEP_S           # never below the floor
    assert step_limits([1], 100, 300) == MIN_STEP_S


def test_the_report_lists_pending_steps_before_they_run(tmp_path):
    results = [StepResult("a", "first", status="pass", summary="done", seconds=1.0, limit_s=5.0),
               StepResult("b", "second")]
    write_report(tmp_path, {"command": "x", "device": "cpu", "budget_s": 10}, results)
    data, text = report(tmp_path)
    assert not data["finished"] and [s["status"] for s in data["steps"]] == ["pass", "pending"]
    assert step_rows(text)["b"][1] == "pending" and "running" in text
    assert not list(tmp_path.glob(".*.tmp"))  # written through a scratch file, then renamed
    assert markdown({**data, "steps": []}).count("\n| ") == 1  # only the header row


def test_official_sources_are_found_in_a_checkout_and_not_elsewhere(tmp_path):
    folder = tmp_path / "GSASR" / "TrainTestGSASR" / "basicsr" / "utils" / "gs_cuda_dmax"
    folder.mkdir(parents=True)
    assert find_official_sources(tmp_path / "GSASR") is None  # an empty folder is not the kernel
    (folder / "gs.cu").write_text("// kernel")
    (folder / "gswrapper.cpp").write_text("// wrapper")
    assert find_official_sources(tmp_path / "GSASR") == (folder / "gswrapper.cpp", folder / "gs.cu")


class OfficialABI:
    """The official kernel's calling convention (in-place HWC image, sigmas packed (N, 3), gradients written
    into zeroed tensors), computed by the torch reference; `swapped` pairs the sigma slots the wrong way round."""

    def __init__(self, swapped: bool = False):
        self.x, self.y = (1, 0) if swapped else (0, 1)

    def _image(self, sigmas, coords, colours, height, width, dmax):
        return rasterize_reference_unchunked(sigmas[:, self.x], sigmas[:, self.y], sigmas[:, 2], coords, colours,
                                             height, width, dmax)

    def gs_render(self, sigmas, coords, colours, image, n, height, width, channels, dmax):
        assert image.shape == (height, width, channels) and n == sigmas.shape[0] and not image.any()
        image += self._image(sigmas, coords, colours, height, width, dmax).permute(1, 2, 0)

    def gs_render_backward(self, sigmas, coords, colours, grad, d_sigmas, d_coords, d_colours, n, height, width,
                           channels, dmax):
        leaves = [t.clone().requires_grad_() for t in (sigmas, coords, colours)]
        image = self._image(*leaves, height, width, dmax)
        for into, value in zip((d_sigmas, d_coords, d_colours),
                               torch.autograd.grad(image, leaves, grad.permute(2, 0, 1)), strict=True):
            into += value


def test_the_official_comparison_passes_a_faithful_kernel_and_fails_a_swapped_one():
    """The official-gsasr step's plumbing (argument packing, HWC layout, gradient slots), checked without a GPU
    on a kernel with the official ABI: the same maths agree, sigma slots the wrong way round do not."""
    device = torch.device("cpu")
    good = compare_with_official(OfficialABI(), device, "torch", lr=6)
    assert good["status"] == "pass" and good["details"]["worst"] < 1e-5, good["summary"]
    assert [row[0] for row in good["tables"][1]["rows"]] == ["image", "dsigma_x", "dsigma_y", "drho", "dcoords",
                                                             "dcolours"]
    bad = compare_with_official(OfficialABI(swapped=True), device, "torch", lr=6)
    assert bad["status"] == "FAIL" and bad["details"]["worst"] > 1e-3


def test_the_gpu_form_cost_config_plans_the_paper_grid_on_720_crops(tmp_path):
    """What the gsasr-cost step runs on a GPU, checked here without one: a valid config, GSASR (dmax 0.1 and the
    paper's x2 setting 0.05), LIIF and Meta-SR at x2/x4/x12, on a 720x720 crop that the catalogue finds."""
    from PIL import Image

    from asr_bench.config import load_config
    from asr_bench.engine.dry_run import dry_run_lines

    data, size = cost_config({"reduced": False, "work_dir": str(tmp_path), "device": "cuda"})
    _synthetic_div2k_720(tmp_path / "data", size, 1)
    assert Image.open(tmp_path / "data" / "DIV2K" / "DIV2K_GT720" / "0801.png").size == (720, 720)
    lines = dry_run_lines(load_config(data={**data, "name": "cost"}))
    cases = [line for line in lines if "div2k-720" in line]
    assert len(cases) == 12 and all("data: found" in line for line in cases)
    assert sum("(dmax 0.05)" in line for line in cases) == 3
    assert {scale for line in cases for scale in ("x2 ", "x4 ", "x12 ") if scale in line} == {"x2 ", "x4 ", "x12 "}


# ------------------------------------------------------------------------------------------- the CPU form


def test_cpu_form_fast_steps_report_and_exit_codes(tmp_path):
    """The command as a user runs it (< 60 s): the environment names this torch; without --official-gsasr that
    step is skipped (exit 0); with a folder that lacks the kernel it is a recorded failure (exit 1)."""
    empty = tmp_path / "not-gsasr"
    empty.mkdir()
    done = validate(["--device", "cpu", "--budget-s", "60", "--out", "r0", "--steps", "environment,official-gsasr"],
                    tmp_path, 120)
    assert done.returncode == 0, done.stdout + done.stderr
    data, text = report(tmp_path / "r0")
    assert [s["status"] for s in data["steps"]] == ["pass", "skip"]
    environment = dict(data["steps"][0]["tables"][0]["rows"])
    assert environment["torch"] == torch.__version__ and environment["torch threads"].isdigit()
    assert set(step_rows(text)) == {"environment", "official-gsasr"}

    done = validate(["--device", "cpu", "--budget-s", "60", "--out", "r1", "--steps", "official-gsasr",
                     "--official-gsasr", str(empty)], tmp_path, 120)
    assert done.returncode == 1
    data, _ = report(tmp_path / "r1")
    assert data["steps"][0]["status"] == "FAIL" and "gs_cuda_dmax" in data["steps"][0]["summary"]
    assert sum(line.startswith("[1/1] official-gsasr") for line in done.stdout.splitlines()) == 1


@pytest.mark.slow
def test_cpu_form_end_to_end(tmp_path):
    """Every step on the CPU with reduced sizes: each passes (or is skipped with its reason), the report has a
    row per step, and the cost table holds GSASR/LIIF/Meta-SR at x2/x4/x12 with GSASR's stage breakdown."""
    done = validate(["--device", "cpu", "--budget-s", "1500", "--out", "r"], tmp_path, 1800)
    data, text = report(tmp_path / "r")
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert done.returncode == 0, (statuses, done.stdout, done.stderr)
    assert set(statuses) == {step.name for step in STEPS} == set(step_rows(text))
    assert statuses["official-gsasr"] == "skip"
    assert all(v in ("pass", "skip") for v in statuses.values())
    cost = next(s for s in data["steps"] if s["name"] == "gsasr-cost")["tables"][0]
    cells = [dict(zip(cost["columns"], row)) for row in cost["rows"]]
    assert sorted((c["method"], c["scale"]) for c in cells) == sorted(
        (m, f"x{s}") for m in ("GSASR EDSR", "LIIF EDSR", "Meta-SR EDSR") for s in (2, 4, 12))
    gsasr = [c for c in cells if c["method"] == "GSASR EDSR"]
    assert all(all(stage in c["stages (ms)"] for stage in ("encoder", "decoder", "render")) for c in gsasr)
    assert all(c["ms"] and c["ms"] > 0 for c in cells)
