"""A case's provenance: everything that can change its numbers, hashed into the key the store resumes by.

What changes a result is defined once, in the config schema (`asr_bench.config.FIELDS`, each key's `result`):
the `RESULT_VALUE` keys enter every case's key as `config.results_key` gives them (the protocol resolved to its
fields and versions), and each `RESULT_CASE` key enters as this case's own part (`case_part`: method, encoder,
preset, kwargs and the checkpoint's sha256; the dataset's resolved folder and a content hash of every image it
reads; scale, precision, compile, frame rates; which perceptual-metric weights were found). A test holds the
schema's keys and the key's parts equal.

Code is recorded beside the key, not in it (a new commit does not recompute a sweep): versions and git commit,
the folder the code ran from, and a sha256 of the source of the method, its encoder and every op it ran.

File hashes come from `asr_bench.data.fingerprint`, remembered between runs, so a rerun over thousands of images
costs a stat per file, not a read.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..config import FIELDS, RESULT_CASE, Config, results_key
from ..data.fingerprint import dataset_fingerprint, file_sha256
from ..protocols import LR_RECIPE_VERSIONS
from .cases import Case

PROTOCOL_VERSION = 1     # bump when a protocol's code changes a number without a field changing


def hash_index_dir() -> Path:
    """Where file hashes are remembered between runs (by path, size, mtime, ctime, inode)."""
    root = os.environ.get("ASR_BENCH_HASH_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr_bench"


def checkpoint_sha256(checkpoint: str | None) -> str | None:
    """sha256 of a checkpoint file; for a folder, of its files' names and hashes (RT4KSR x2+x3, GSASR's pair)."""
    if checkpoint is None:
        return None
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        listing = {str(p.relative_to(path)): file_sha256(p, hash_index_dir()) for p in files}
        return "dir:" + hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    return file_sha256(path, hash_index_dir())


def metric_weights(config: Config) -> dict[str, str | None]:
    """Which perceptual-metric weight files a case would find: their appearance turns n/a into numbers."""
    from ..metrics.weights import ALEXNET_FILE, DISTS_HEAD, LPIPS_ALEX_HEAD, find_head, find_weights

    found: dict[str, str | None] = {}
    wanted = {"lpips": [("backbone", ALEXNET_FILE), ("head", LPIPS_ALEX_HEAD)],
              "dists": [("backbone", "vgg16-397923af.pth"), ("head", DISTS_HEAD)]}
    for metric in config.metrics:
        for role, item in wanted.get(metric, []):
            path = find_weights(item, config.weights_dir) if isinstance(item, str) else find_head(item, config.weights_dir)
            found[f"{metric}.{role}"] = None if path is None else f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
    return found


# RESULT_CASE keys whose effect another part of the key already holds.
SHOWN_BY = {"data_root": "datasets",      # the dataset's resolved folder and content
            "precisions": "precision",    # the axis: each case has its own precision
            "plugins": "methods",         # a plugin's method is named in `methods`; its code is recorded beside
            "checkpoint_dirs": "methods"} # where a checkpoint was found: its sha256 is in `methods`


def case_part(case: Case, checkpoint_sha256: str | None, fingerprint: Mapping[str, Any],
              weights_found: Mapping[str, str | None]) -> dict[str, Any]:
    """This case's own part of its key: one entry per `RESULT_CASE` config key (less those in `SHOWN_BY`)."""
    entry = case.entry
    return {
        "methods": {"method": entry.method, "encoder": entry.encoder, "preset": entry.preset, "kwargs": entry.kwargs,
                    "checkpoint_sha256": checkpoint_sha256},
        "datasets": {"folder": fingerprint["folder"], "digest": fingerprint["digest"]},
        "scales": case.scale_label,
        "precision": case.precision,
        "compile": case.compiled,
        "profiling.frame_rates": case.frame_rates,
        "metric_weights_dir": dict(weights_found),
    }


def result_identity(case: Case, config: Config, device: torch.device, protocol: Any,
                    checkpoint: str | None, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a stored number depends on, by config key: `results_key` (the protocol resolved to what it
    means) and this case's part."""
    identity = results_key(config, device.type)
    identity["protocol"] = {"version": PROTOCOL_VERSION, "lr_recipe_version": LR_RECIPE_VERSIONS.get(protocol.lr_recipe),
                            **json.loads(json.dumps(asdict(protocol), default=str))}
    identity.update(case_part(case, checkpoint, fingerprint, metric_weights(config)))
    return identity


def result_keys() -> set[str]:
    """The config keys that change a result (the schema's), as `result_identity` must cover them."""
    return {f.key for f in FIELDS if f.result} - set(SHOWN_BY)


def case_provenance(case: Case, config: Config, device: torch.device, dataset: Any, protocol: Any) -> dict[str, Any]:
    """The provenance of one case: `key` (what resume compares) and what it was derived from (stored with it)."""
    entry = case.entry
    ckpt = checkpoint_sha256(entry.checkpoint)
    fingerprint = dataset_fingerprint(dataset, [case.scale], hash_index_dir())
    n_files = len(fingerprint["files"]) + sum(len(v) for v in fingerprint["lr"].values())
    identity = result_identity(case, config, device, protocol, ckpt, fingerprint)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return {"case_key": key, "checkpoint": entry.checkpoint, "checkpoint_sha256": ckpt,
            "weights": case.weights.provenance() if case.weights is not None else None,
            "dataset_folder": fingerprint["folder"], "dataset_fingerprint": fingerprint["digest"],
            "dataset_files": n_files, "protocol_version": PROTOCOL_VERSION, "versions": versions(),
            "code": method_sources(entry.method, entry.encoder)}


# ------------------------------------------------------------------------------------ code beside the key

SOURCE_SUFFIXES = (".py", ".cpp", ".cu", ".h", ".cuh")


@lru_cache(maxsize=None)
def source_sha256(path: str) -> str:
    """sha256 of a unit's source: one file, or every source file under a folder (by relative path and content)."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES
                                                  and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if file != root else file.name).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def unit_source(module_name: str | None) -> dict[str, str]:
    """{"path", "sha256"} of the unit a module belongs to: a package's whole folder, a plain module's file; empty
    where the code has no file to read (a builder made at run time), so provenance never fails a case."""
    try:
        module = sys.modules.get(module_name or "") or importlib.import_module(module_name or "")
        file = Path(module.__file__).resolve()
    except (ImportError, TypeError, ValueError, AttributeError):
        return {}
    path = file.parent if file.name == "__init__.py" else file
    return {"path": str(path), "sha256": source_sha256(str(path))} if path.exists() else {}


def method_sources(method: str, encoder: str | None) -> dict[str, Any]:
    """The source that builds a case's model: the method's unit (the module its builder lives in) and its
    encoder's; the ops it ran are added after the run (`op_sources`)."""
    from ..encoders import encoder_spec, list_encoders
    from ..registry import get_method

    spec = get_method(method)
    code = {"method": unit_source(getattr(spec.builder, "__module__", None))}
    if encoder and encoder in list_encoders():
        code["encoder"] = unit_source(getattr(encoder_spec(encoder).builder, "__module__", None))
    return code


def op_sources(used: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """{op: {"path", "sha256"}} of the ops a case ran (`ops.backend_log`): the op package and its C++/CUDA
    sources (`asr_bench/csrc/<op>/`)."""
    out = {}
    for op in sorted(used):
        unit = unit_source(f"asr_bench.ops.{op}")
        csrc = Path(__file__).resolve().parents[1] / "csrc" / op
        if csrc.is_dir():
            unit = {**unit, "csrc_sha256": source_sha256(str(csrc))}
        out[op] = unit
    return out


@lru_cache(maxsize=1)
def versions() -> dict[str, Any]:
    from .. import __version__
    from .environment import git_commit

    return {"asr_bench": __version__, "torch": torch.__version__, "git_commit": git_commit(),
            "asr_bench_path": str(Path(__file__).resolve().parents[1])}
