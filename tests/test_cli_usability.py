"""The command line as a newcomer meets it: usage without arguments, --version, `python -m asr_bench`, the
program name, every subcommand in --help, `run --dry-run` (writes nothing) and the config-key shortcuts."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from asr_bench import __version__
from asr_bench.cli import COMMANDS, program_name, run_cli

REPO = Path(__file__).resolve().parent.parent


def test_no_arguments_prints_the_usage_and_every_subcommand(capsys):
    assert run_cli([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    for command in COMMANDS:
        assert re.search(rf"^\s+{re.escape(command)}\s", out, flags=re.M), command
    assert "--config" not in capsys.readouterr().err


def test_help_lists_every_subcommand_including_bench_ops(capsys):
    try:
        run_cli(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


def test_version_and_python_dash_m_and_the_program_name():
    done = subprocess.run([sys.executable, "-m", "asr_bench", "--version"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"asr-bench {__version__}"
    usage = subprocess.run([sys.executable, "-m", "asr_bench"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: python -m asr_bench ")
    assert program_name("/usr/local/bin/asr-bench") == "asr-bench"
    assert program_name("run_bench.py") == "run_bench.py"
    assert program_name("/x/asr_bench/__main__.py") == "python -m asr_bench"


def test_dry_run_lists_cases_with_weights_and_data_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(data / f"im{i}.png")
    config = tmp_path / "c.yml"
    out_dir = tmp_path / "out"
    config.write_text(f"methods: [bicubic]\ndatasets: [{data}, {tmp_path / 'nowhere'}]\nscales: [3]\n"
                      f"output: {out_dir}\n")
    # the shortcuts replace the config's keys: two methods, one dataset, two scales
    code = run_cli(["run", "--config", str(config), "--dry-run", "--methods", "bicubic", "rt4ksr",
                    "--datasets", str(data), "--scales", "2", "4"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "4 cases (dry run: nothing is run or written)"
    assert re.match(r"\s+1/4  bicubic\s+imgs  x2  weights: not needed; data: found \(3 images\)", lines[1])
    assert re.match(r"\s+3/4  rt4ksr\s+imgs  x2  weights: cost only \(random weights\): "
                    r"`asr-bench weights fetch rt4ksr.all`", lines[3])
    assert "unsupported scale" in lines[4]
    assert not out_dir.exists()
    code = run_cli(["run", "--config", str(config), "--dry-run"])
    assert code == 0 and "data: MISSING" in capsys.readouterr().out
