"""Which checkout's code runs: the one the user stands in, or a refusal in one line.

`python run_bench.py` in a checkout imports that checkout's `asr_bench` (the script's folder is sys.path[0]), so
its methods, ops and git commit are the ones recorded. An `asr-bench` installed (editable) from another checkout
would import that other checkout's code while the user reads, edits and commits this one: `main` refuses then.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent          # the asr_bench/ that is running


def checkout_of(folder: Path) -> Path | None:
    """The asr-bench checkout holding `folder` (a folder with run_bench.py and asr_bench/__init__.py), if any."""
    for candidate in (folder, *folder.parents):
        if (candidate / "run_bench.py").is_file() and (candidate / "asr_bench" / "__init__.py").is_file():
            return candidate
    return None


def shadowed_checkout(cwd: Path | None = None) -> str | None:
    """None when the running code is this folder's checkout (or the folder is in none); else the one-line reason
    to refuse: another checkout's installed asr_bench shadows this one."""
    here = checkout_of(Path(cwd or os.getcwd()).resolve())
    if here is None or (here / "asr_bench").resolve() == PACKAGE:
        return None
    return (f"this checkout ({here}) is shadowed by the asr_bench installed from {PACKAGE.parent}: its method code "
            f"would run while this one's is recorded; run `python run_bench.py ...` in {here}, or "
            f"`pip install -e {here}`.")
