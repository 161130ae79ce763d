"""The wheel as a user gets it: built with `pip wheel --no-deps`, installed into a fresh venv (system site packages
for torch and friends, so nothing is downloaded), and run from an empty folder: the shipped configs resolve by
name and `asr-bench --config quick` completes."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The venv's bin folder, with this checkout's wheel installed in it."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(root / "dist"), str(REPO)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.skip(f"could not build the wheel here: {built.stderr.strip().splitlines()[-1:]}")
    wheel, = (root / "dist").glob("asr_bench-*.whl")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root / "venv")
    bin_dir = root / "venv" / "bin"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "--ignore-installed",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return bin_dir


def run(bin_dir: Path, folder: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASR_BENCH_WEIGHTS", "ASR_BENCH_DATA")}
    env.update(HOME=str(folder / "home"), OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(folder / "ext"),
               HF_HUB_CACHE=str(folder / "hf"), PATH=f"{bin_dir}:{env.get('PATH', '')}")
    return subprocess.run([str(bin_dir / "asr-bench"), *args], capture_output=True, text=True, cwd=folder, env=env,
                          timeout=timeout)


def test_the_installed_package_is_the_wheel_and_ships_its_configs(installed, tmp_path):
    where = subprocess.run([str(installed / "python"), "-c", "import asr_bench; print(asr_bench.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert where.stdout.startswith(str(installed.parent)), where.stdout + where.stderr
    (tmp_path / "home").mkdir()
    listed = run(installed, tmp_path, "reproduce", "--list")
    assert listed.returncode == 0 and "liif-set5" in listed.stdout and "liif-table1" in listed.stdout
    dry = run(installed, tmp_path, "--config", "paper/liif_table1", "--dry-run")
    assert dry.returncode == 0 and "weights: cost only (random weights): `asr-bench weights fetch liif.edsr-baseline`" \
        in dry.stdout, dry.stdout + dry.stderr
    missing = run(installed, tmp_path, "--config", "nonesuch")
    assert missing.returncode == 2 and "quick" in missing.stderr and "paper/liif_table1" in missing.stderr


@pytest.mark.slow
def test_quick_runs_from_an_empty_folder(installed, tmp_path):
    (tmp_path / "home").mkdir()
    done = run(installed, tmp_path, "--config", "quick", "--no-progress", timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "results" / "quick" / "report.html").is_file()
    assert "asr-bench weights fetch liif.edsr-baseline rt4ksr.x2 rt4ksr.x3" in done.stdout   # no weights here
