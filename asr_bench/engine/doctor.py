"""`doctor`: what this machine can do, and what is missing with where to put it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

PERCEPTUAL = ("lpips", "dists")


def doctor_report(data_root: str | None = None, weights_dir: str | None = None, build: bool = False,
                  checkpoint_dirs: list[str] | tuple[str, ...] = ()) -> str:
    lines = ["asr-bench doctor", ""]
    lines += _torch_lines()
    lines += [""] + _backend_lines(build)
    lines += [""] + _weights_lines(weights_dir)
    lines += [""] + _method_weights_lines(checkpoint_dirs)
    lines += [""] + _data_lines(data_root)
    return "\n".join(lines)


def _torch_lines() -> list[str]:
    from .environment import git_commit

    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, git {git_commit() or 'n/a'}"]
    if torch.cuda.is_available():
        lines.append(f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} device(s)")
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            lines.append(f"  cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        built = "CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, no device"
        lines.append(f"CUDA: not available ({built}); runs use device cpu")
    return lines


def _backend_lines(build: bool) -> list[str]:
    try:
        from ..ops.backends import backend_status
    except ImportError:
        return ["op backends: (asr_bench.ops.backends not in this checkout; the torch reference ops are used)"]
    lines = ["op backends (cuda > cpp > torch; 'compilable' = built on first use):"]
    try:
        status = backend_status(compile=build)
    except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
        return [f"op backends: could not be inspected ({type(exc).__name__}: {exc})"]
    for op, backends in status.items():
        lines.append(f"  {op}: " + "; ".join(f"{name} {state}" for name, state in backends.items()))
    return lines


def selftest_lines() -> tuple[list[str], bool]:
    """The compiled backends' self-tests, re-run now, as a table; and whether none failed."""
    try:
        from ..ops.selftest import selftest_rows, selftest_table
    except ImportError:
        return ["self-test: (asr_bench.ops.selftest not in this checkout)"], True
    rows = selftest_rows()
    lines = selftest_table(rows).splitlines()
    failed = [f"{r.op}/{r.backend}" for r in rows if r.failed]
    if failed:
        lines.append(f"  {', '.join(failed)} failed: runs skip them ('auto' uses the torch reference); a bug to report "
                     "with this table.")
    return lines, not failed


def _weights_lines(weights_dir: str | None) -> list[str]:
    """Each perceptual metric's files: found (where) or missing (where to put them)."""
    try:
        from ..metrics import DISTS_HEAD, LPIPS_ALEX_HEAD, METRICS, find_head, find_weights
        from ..metrics.weights import torch_hub_checkpoints
    except ImportError:
        return ["metric weights: (asr_bench.metrics not in this checkout)"]
    heads = {h.relpath: h for h in (LPIPS_ALEX_HEAD, DISTS_HEAD)}
    folders = ([str(weights_dir)] if weights_dir else []) + [str(torch_hub_checkpoints())]
    lines = [f"perceptual-metric weights (looked in {', '.join(folders)}; pass --metric-weights-dir or config metric_weights_dir):"]
    for info in METRICS.values():
        if not info.needs_weights:
            continue
        parts = []
        for name in info.needs_weights:
            found = find_head(heads[name], weights_dir) if name in heads else find_weights(name, weights_dir)
            parts.append(f"{Path(name).name} {'found at ' + str(found) if found else 'MISSING'}")
        lines.append(f"  {info.name}: " + "; ".join(parts))
    if any("MISSING" in line for line in lines):
        lines.append("  missing files make that metric read n/a; put backbones in one of the folders above, "
                     "heads via `pip install lpips dists-pytorch --no-deps`.")
    return lines


def _method_weights_lines(checkpoint_dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Each preset's official weights: present (where), missing, damaged, or none declared; found by the same
    resolution a run uses (`asr_bench.weights`)."""
    from ..weights import hub_cache_dir, search_folders
    from ..zoo import named_presets, preset_state

    folders = search_folders(checkpoint_dirs)
    lines = [f"method weights per preset (looked in {', '.join(f'{f.path} ({f.where})' for f in folders)}, "
             f"{hub_cache_dir()} (Hugging Face Hub cache); `asr-bench weights fetch PRESET` downloads, "
             "`weights list --files` shows sources):"]
    try:
        presets = named_presets()
    except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
        return [f"method weights: the registry could not be read ({type(exc).__name__}: {exc})"]
    lines += [f"  {name}: {preset_state(name, preset, folders)}" for name, (_, preset) in sorted(presets.items())]
    return lines


def _data_lines(data_root: str | None) -> list[str]:
    try:
        from ..data.catalogue import list_datasets, resolve_dataset, search_roots
    except ImportError:
        return ["datasets: (asr_bench.data.catalogue not in this checkout)"]
    roots = search_roots(data_root)
    lines = ["data roots searched (--data-root, $ASR_BENCH_DATA, ./datasets): "
             + ", ".join(f"{r} ({'exists' if Path(r).is_dir() else 'absent'})" for r in roots)]
    if os.environ.get("ASR_BENCH_DATA"):
        lines.append(f"  $ASR_BENCH_DATA = {os.environ['ASR_BENCH_DATA']}")
    for name in list_datasets():
        try:
            dataset = resolve_dataset(name, data_root=data_root)
            lines.append(f"  {name}: found, {len(dataset.image_ids())} images ({dataset.source})")
        except Exception:  # noqa: BLE001 - a missing dataset is a line of the report
            lines.append(f"  {name}: missing (python run_bench.py --config ... names it; see README for downloads)")
    return lines
