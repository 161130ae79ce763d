"""Where an official checkpoint comes from: the data a preset carries and the weights zoo reads.

Kept apart from the registry so the zoo (`asr-bench weights ...`), `doctor` and the presets share one type
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WeightFile:
    """One released file. `sha256`/`size` are None where the source publishes neither (the zoo records them)."""

    filename: str                                  # the official file name, e.g. "rt4ksr_x2.pth"
    urls: tuple[str, ...] = ()                     # in order of preference; GitHub release, Hugging Face, Drive
    sha256: str | None = None
    size: int | None = None                        # bytes
    manual: str = ""                               # the one-line manual step where no URL can be fetched unattended
    license: str = ""
    paper: str = ""
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)   # e.g. {"role": "encoder"} for GSASR's pair
