"""Entry-point plugins: the modules other packages add to one of our groups.

`asr_bench.methods` (modules defining `METHODS`) and `asr_bench.encoders` (modules defining `ENCODERS`) are read
the same way: each entry point is loaded on its own, so one broken plugin is reported (by its name and error),
not fatal to the others.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from types import ModuleType


def entry_point_modules(group: str) -> tuple[list[ModuleType], dict[str, str]]:
    """(modules loaded, {entry point name: why it failed}) of one entry-point group, in the installer's order."""
    modules: list[ModuleType] = []
    broken: dict[str, str] = {}
    for ep in entry_points(group=group):
        try:
            modules.append(ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
    return modules, broken
