"""Where the data that ships with the package lives: the C++/CUDA sources, the published numbers, the report
templates.

An installed wheel carries them inside the package (`asr_bench/csrc`, `asr_bench/published`,
`asr_bench/report/templates`), found through `importlib.resources`; a source checkout (or an editable install)
keeps them at the repository root (`csrc/`, `results/published/`). One function per folder, so the ops builder
and the report never guess paths of their own.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def _packaged(*parts: str) -> Path | None:
    """A folder inside the installed package, or None (a checkout keeps it elsewhere)."""
    node = files("asr_bench")
    for part in parts:
        node = node / part
    return Path(str(node)) if node.is_dir() else None


def csrc_dir() -> Path:
    """The C++/CUDA sources of the custom ops (`csrc/<op>/cpu.cpp`, `cuda.cu`, `csrc/common/*.h`)."""
    return _packaged("csrc") or CHECKOUT / "csrc"


def published_dir() -> Path | None:
    """The published numbers (one CSV per paper): ./results/published if the user has one, else the shipped ones."""
    for candidate in (Path.cwd() / "results" / "published", _packaged("published"),
                      CHECKOUT / "results" / "published"):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


def templates_dir() -> Path:
    """The report's Jinja2 templates (package data of asr_bench.report in every install)."""
    return _packaged("report", "templates") or CHECKOUT / "asr_bench" / "report" / "templates"
