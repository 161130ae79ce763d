"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent) and the official key tables
in tests/data/keys (names, shapes and dtypes only; tests/data/README.md says where they come from)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
KEY_TABLES = REPO / "tests" / "data" / "keys"


def pytest_configure(config: pytest.Config) -> None:
    """The run's own extension folder, built once per run: with the user's cache (~/.cache/asr_bench/extensions)
    another process rebuilding or deleting a build while the tests run could turn a 'loading' into a 'compiling'
    or a verdict file into a miss. The same holds for a TORCH_EXTENSIONS_DIR the user set for daily work, so only a
    folder chosen for the tests (ASR_BENCH_TEST_EXTENSIONS_DIR) is used as given, to keep builds between runs.
    Set in os.environ, so the subprocesses that tests start use it too."""
    chosen = os.environ.get("ASR_BENCH_TEST_EXTENSIONS_DIR")
    if chosen:
        os.environ["TORCH_EXTENSIONS_DIR"] = chosen
        return
    folder = tempfile.mkdtemp(prefix="asr-bench-test-extensions-")
    os.environ["TORCH_EXTENSIONS_DIR"] = folder
    config.stash[_RUN_EXTENSIONS] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_RUN_EXTENSIONS, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


_RUN_EXTENSIONS = pytest.StashKey[str]()


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data folder beside the checkout)")
    return path


@pytest.fixture
def set5() -> Path:
    return shared_path("benchmark", "Set5")


@pytest.fixture
def liif_checkpoint() -> Path:
    return shared_path("weights", "liif", "edsr-baseline-liif.pth")


@pytest.fixture
def rt4ksr_weights() -> Path:
    return shared_path("weights", "rt4ksr")


@pytest.fixture
def png_only_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render plots as PNG only (PDF and SVG triple the time of a report): for tests that do not look at them."""
    monkeypatch.setattr("asr_bench.report.plots.FORMATS", ("png",))


def key_table(name: str) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(part, key, shape, dtype) rows of an official key table tests/data/keys/*_keys_*.tsv (part '' in single-file
    tables)."""
    lines = (KEY_TABLES / name).read_text().splitlines()
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        cols = dict(zip(header, line.split("\t")))
        rows.append((cols.get("part", ""), cols["key"], tuple(int(n) for n in re.findall(r"\d+", cols["shape"])),
                     cols["dtype"]))
    return rows
