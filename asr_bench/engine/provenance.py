"""A case's provenance: everything that can change its numbers, hashed into the key the store resumes by.

The key covers method, encoder, preset, kwargs, the checkpoint's contents (sha256), the dataset's identity (its
resolved folder, file names and a content hash of every image the case reads), the scale, the protocol (name,
version, every field), the metrics (and which perceptual-metric weights were found), precision, tiling and the
device type. Code versions are recorded beside the key, not in it: a new commit does not recompute a sweep.

File hashes are cached by (path, size, mtime_ns) in a small SQLite file, so a rerun over thousands of images costs
a stat per file, not a read.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from .cases import Case

PROTOCOL_VERSION = 1     # bump when a protocol's code changes a number without a field changing
_CHUNK = 1 << 20
_cache_lock = threading.Lock()


def hash_cache_path() -> Path:
    root = os.environ.get("ASR_BENCH_HASH_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr_bench" / "file_hashes.sqlite"


@lru_cache(maxsize=1)
def _cache_conn(path: str) -> sqlite3.Connection | None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT, "
                     "PRIMARY KEY (path, size, mtime_ns))")
        return conn
    except (OSError, sqlite3.Error):
        return None  # an unwritable cache only costs time


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, cached by path + size + mtime (a changed file has a new mtime or size)."""
    path = Path(path).resolve()
    stat = path.stat()
    conn = _cache_conn(str(hash_cache_path()))
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if conn is not None:
        with _cache_lock:
            row = conn.execute("SELECT sha256 FROM hashes WHERE path = ? AND size = ? AND mtime_ns = ?", key).fetchone()
        if row:
            return row[0]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    value = digest.hexdigest()
    if conn is not None:
        try:
            with _cache_lock:
                conn.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", (*key, value))
        except sqlite3.Error:
            pass
    return value


def checkpoint_sha256(checkpoint: str | None) -> str | None:
    """sha256 of a checkpoint file; for a folder, of its files' names and hashes (RT4KSR x2+x3, GSASR's pair)."""
    if checkpoint is None:
        return None
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        listing = {str(p.relative_to(path)): file_sha256(p) for p in files}
        return "dir:" + hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    return file_sha256(path)


def dataset_fingerprint(dataset: Any, scale: Any = None) -> dict[str, Any]:
    """The folder, the layout, and the content hash of every image a case reads (HR, and premade LR at `scale`)."""
    files: dict[str, str] = {}
    if dataset.layout.kind == "embedded":
        import skimage

        from ..data.catalogue import _embedded_image

        for image_id in dataset.image_ids():
            files[image_id] = hashlib.sha256(_embedded_image(image_id).tobytes()).hexdigest()
        folder = f"scikit-image {skimage.__version__}"
    else:
        folder = dataset.source
        for image_id in dataset.image_ids():
            hr = dataset._files[image_id]
            files[f"HR/{hr.name}"] = file_sha256(hr)
            lr = premade_lr_path(dataset, image_id, scale) if scale is not None else None
            if lr is not None:
                files[f"LR/{lr.name}"] = file_sha256(lr)
    digest = hashlib.sha256(json.dumps({"folder": folder, "layout": dataset.layout.kind, "files": files},
                                       sort_keys=True).encode()).hexdigest()
    return {"folder": folder, "layout": dataset.layout.kind, "n_files": len(files), "digest": digest}


def premade_lr_path(dataset: Any, image_id: str, scale: Any) -> Path | None:
    from ..data.catalogue import _integer_label

    label = _integer_label(scale)
    if label is None:
        return None
    return next((p for p in dataset.layout.lr_candidates(image_id, label) if p.is_file()), None)


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
    fingerprint = dataset_fingerprint(dataset, case.scale)
    identity = {
        "method": entry.method, "encoder": entry.encoder, "preset": entry.preset, "kwargs": entry.kwargs,
        "checkpoint_sha256": ckpt, "dataset": fingerprint["digest"], "scale": case.scale_label,
        "protocol": {"version": PROTOCOL_VERSION, **json.loads(json.dumps(asdict(protocol), default=str))},
        "metrics": list(config.metrics), "metric_weights": metric_weights(config),
        "precision": config.precision, "tiling": asdict(config.tiling), "device": device.type,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return {"case_key": key, "checkpoint": entry.checkpoint, "checkpoint_sha256": ckpt,
            "dataset_folder": fingerprint["folder"], "dataset_fingerprint": fingerprint["digest"],
            "dataset_files": fingerprint["n_files"], "protocol_version": PROTOCOL_VERSION, "versions": versions()}


@lru_cache(maxsize=1)
def versions() -> dict[str, Any]:
    from .. import __version__
    from .environment import git_commit

    return {"asr_bench": __version__, "torch": torch.__version__, "git_commit": git_commit()}
