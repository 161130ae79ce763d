"""Shared fixtures: the real data in ../shared/data, skipped with a reason when absent."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


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
