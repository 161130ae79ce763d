"""A case's provenance: everything that can change its numbers, hashed into the key the store resumes by.

The key covers method, encoder, preset, kwargs, the checkpoint's contents (sha256), the dataset's identity (its
resolved folder, file names and a content hash of every image the case reads), the scale, the protocol (name,
version, every field), the metrics (and which perceptual-metric weights were found), precision, tiling and the
device type. Code versions are recorded beside the key, not in it: a new commit does not recompute a sweep.

File hashes come from `asr_bench.data.fingerprint`, remembered between runs, so a rerun over thousands of images
costs a stat per file, not a read.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..config import Config
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


def case_provenance(case: Case, config: Config, device: torch.device, dataset: Any, protocol: Any) -> dict[str, Any]:
    """The provenance of one case: `key` (what resume compares) and what it was derived from (stored with it)."""
    entry = case.entry
    ckpt = checkpoint_sha256(entry.checkpoint)
    fingerprint = dataset_fingerprint(dataset, [case.scale], hash_index_dir())
    n_files = len(fingerprint["files"]) + sum(len(v) for v in fingerprint["lr"].values())
    identity = {
        "method": entry.method, "encoder": entry.encoder, "preset": entry.preset, "kwargs": entry.kwargs,
        "checkpoint_sha256": ckpt, "dataset": {"folder": fingerprint["folder"], "digest": fingerprint["digest"]},
        "scale": case.scale_label,
        "protocol": {"version": PROTOCOL_VERSION, "lr_recipe_version": LR_RECIPE_VERSIONS.get(protocol.lr_recipe),
                     **json.loads(json.dumps(asdict(protocol), default=str))},
        "metrics": list(config.metrics), "metric_weights": metric_weights(config),
        "precision": case.precision, "compiled": case.compiled, "frame_rates": case.frame_rates, "tiling": asdict(config.tiling), "device": device.type,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return {"case_key": key, "checkpoint": entry.checkpoint, "checkpoint_sha256": ckpt,
            "weights": case.weights.provenance() if case.weights is not None else None,
            "dataset_folder": fingerprint["folder"], "dataset_fingerprint": fingerprint["digest"],
            "dataset_files": n_files, "protocol_version": PROTOCOL_VERSION, "versions": versions()}


@lru_cache(maxsize=1)
def versions() -> dict[str, Any]:
    from .. import __version__
    from .environment import git_commit

    return {"asr_bench": __version__, "torch": torch.__version__, "git_commit": git_commit()}
