"""Where the data that ships inside the package lives: the C++/CUDA sources, the published numbers, the report
templates.

Everything is package data of `asr_bench` (`asr_bench/csrc`, `asr_bench/published`, `asr_bench/report/templates`),
in a checkout, an editable install and a wheel alike, so the code that runs and the data it reads always come from
the same tree. One function per folder, so the ops builder and the report never guess paths of their own.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def csrc_dir() -> Path:
    """The C++/CUDA sources of the custom ops (`csrc/<op>/cpu.cpp`, `cuda.cu`, `csrc/common/*.h`)."""
    return PACKAGE / "csrc"


def published_dir() -> Path | None:
    """The published numbers (one CSV per paper): ./results/published if the user has one, else the shipped ones."""
    for candidate in (Path.cwd() / "results" / "published", PACKAGE / "published"):
        if candidate.is_dir():
            return candidate
    return None


def templates_dir() -> Path:
    """The report's Jinja2 templates."""
    return PACKAGE / "report" / "templates"
