"""Two checkouts: with checkout A importable first (an editable install puts it on sys.path), a run started in
checkout B runs B's method code and records B's commit, source path and method source hash; where A's installed
code would run while the user stands in B (the `asr-bench` console script), the run refuses with one line.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", "-c", "commit.gpgsign=false"]


def copy_checkout(target: Path, note: str) -> str:
    """A git checkout of this tree's code (asr_bench/, run_bench.py, pyproject.toml) with one commit; its hash."""
    shutil.copytree(REPO / "asr_bench", target / "asr_bench", ignore=shutil.ignore_patterns("__pycache__", ".cache"))
    for name in ("run_bench.py", "pyproject.toml"):
        shutil.copy2(REPO / name, target / name)
    (target / "NOTE").write_text(note)                      # the two commits differ
    subprocess.run([*GIT, "init", "-q"], cwd=target, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=target, check=True)
    subprocess.run([*GIT, "commit", "-qm", note], cwd=target, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=target, capture_output=True, text=True,
                          check=True).stdout.strip()


def folder_sha256(root: Path) -> str:
    """Independent of the code under test: sha256 of (relative path, sha256 of content) of every .py file."""
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkouts")
    a, b = root / "A", root / "B"
    return a, copy_checkout(a, "checkout A"), b, copy_checkout(b, "checkout B")


def env_with(a: Path) -> dict[str, str]:
    """A importable from anywhere, as `pip install -e A` makes it (PYTHONPATH is searched after the script's folder,
    like site-packages)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(a), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}


def test_a_run_from_checkout_b_runs_and_records_b(checkouts, tmp_path):
    a, _, b, b_commit = checkouts
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(images / "a.png")
    config = tmp_path / "c.yml"
    config.write_text(json.dumps({
        "methods": ["bicubic"], "datasets": [str(images)], "scales": [2], "metrics": ["psnr"], "device": "cpu",
        "profiling": {"warmup": 0, "repeats": 1, "max_repeats": 1, "memory": False, "flops": False},
        "visuals": {"crop": 0}, "cache_dir": str(tmp_path / "cache")}))
    run = subprocess.run([sys.executable, "run_bench.py", "--config", str(config), "--output", str(tmp_path / "out"),
                          "--no-progress"], cwd=b, env=env_with(a), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    record = json.loads((tmp_path / "out" / "cases.jsonl").read_text().splitlines()[-1])
    provenance = record["provenance"]
    assert provenance["versions"]["git_commit"] == b_commit
    assert Path(provenance["versions"]["asr_bench_path"]) == b / "asr_bench"
    method = provenance["code"]["method"]
    assert Path(method["path"]) == b / "asr_bench" / "methods" / "bicubic"
    assert method["sha256"] == folder_sha256(b / "asr_bench" / "methods" / "bicubic")


def test_python_in_checkout_b_imports_b(checkouts):
    a, _, b, _ = checkouts
    code = "import asr_bench.methods.liif as m, asr_bench.encoders.edsr as e; print(m.__file__); print(e.__file__)"
    run = subprocess.run([sys.executable, "-c", code], cwd=b, env=env_with(a), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    liif, edsr = map(Path, run.stdout.split())
    assert liif == b / "asr_bench" / "methods" / "liif" / "__init__.py" and edsr.parent == b / "asr_bench" / "encoders"


def test_an_installed_checkout_shadowing_this_one_refuses_in_one_line(checkouts, tmp_path):
    """The console script's folder, not the checkout, comes first on sys.path: A's code would run in B."""
    a, _, b, _ = checkouts
    script = tmp_path / "bin" / "asr-bench"
    script.parent.mkdir()
    script.write_text("from asr_bench.cli import main\nmain()\n")
    run = subprocess.run([sys.executable, str(script), "list"], cwd=b / "asr_bench", env=env_with(a),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(b) in lines[0] and str(a) in lines[0] and "run_bench.py" in lines[0]
    same = subprocess.run([sys.executable, str(script), "--version"], cwd=a, env=env_with(a), capture_output=True,
                          text=True, timeout=120)
    assert same.returncode == 0, same.stderr                 # standing in A, A's code runs
