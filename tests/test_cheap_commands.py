"""Commands that only talk (help, version, a config mistake) answer without loading torch (seconds on a quiet
machine; Python alone starts in tens of milliseconds). Each is run as a whole process under `python -X importtime`,
which lists every module the process imported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def imported_modules(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "asr_bench", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:") and line.count("|") == 2}
    return done, modules


def torch_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == "torch" or m.startswith("torch."))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"], []])
def test_help_and_version_import_no_torch(args, tmp_path):
    done, modules = imported_modules(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "asr_bench.cli" in modules          # the listing works: our own modules are in it
    assert torch_modules(modules) == []


@pytest.mark.parametrize("body, message", [
    ("methods: all\nscales: [0.5]\n", "scales[0]"),
    ("methods: all\nprofiling: {repeat: 3}\n", "profiling.repeat"),
    ("methods: all\nscales: [2\n", "not valid YAML"),
    (None, "config file not found"),
])
def test_a_config_mistake_imports_no_torch(body, message, tmp_path):
    path = tmp_path / "bench.yml"
    if body is not None:
        path.write_text(body, encoding="utf-8")
    done, modules = imported_modules(["--config", str(path)], tmp_path)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 2 and len(errors) == 1 and message in errors[0], errors
    assert torch_modules(modules) == []
