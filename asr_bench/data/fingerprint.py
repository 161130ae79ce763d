"""Content hashes of dataset images: what a cached LR, and a stored result, were computed from.

A file's identity is the sha256 of its bytes, never its name: a replaced image, or the same catalogue name
under another data root, must not reuse numbers made from other pixels. Hashing every file on every run
would cost seconds on DIV2K, so a hash is remembered by (resolved path, size, mtime_ns, ctime_ns, inode),
in memory and, when an `index_dir` is given, in a small SQLite index there that later runs reuse. ctime and
inode are in the key because `cp -p` restores mtime but not them.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

INDEX_NAME = "sha256-index.sqlite"
_MEMO: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: str | Path, index_dir: str | Path | None = None) -> str:
    """sha256 (hex) of the file's bytes; cached by path, size, mtime_ns, ctime_ns and inode."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    digest = _MEMO.get(key)
    if digest is None and index_dir is not None:
        digest = _index_get(Path(index_dir), key)
    if digest is None:
        digest = _hash_bytes(path)
        if index_dir is not None:
            _index_put(Path(index_dir), key, digest)
    _MEMO[key] = digest
    return digest


def _hash_bytes(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an image array (shape, dtype and pixels): the identity of an image that has no file."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def image_sha256(dataset: Any, image_id: str, index_dir: str | Path | None = None) -> str:
    """The HR image's content hash: its file's sha256, or (embedded images) the decoded pixels' hash."""
    path = dataset.hr_path(image_id)
    return file_sha256(path, index_dir) if path is not None else array_sha256(dataset.hr(image_id))


def dataset_fingerprint(dataset: Any, scales: tuple[Any, ...] | list[Any] = (),
                        index_dir: str | Path | None = None) -> dict[str, Any]:
    """{folder, files: {file name: sha256}, lr: {scale: {file name: sha256}}, digest} of a dataset.

    `files` are the HR images (embedded images: id -> hash of the pixels); `lr` the premade LR files that
    exist for the given scales (they change numbers too). `digest` covers names and hashes (files and lr),
    not the folder, so a copied dataset has the same digest; provenance keys add the folder if they want it.
    """
    from .catalogue import _integer_label

    files: dict[str, str] = {}
    for image_id in dataset.image_ids():
        path = dataset.hr_path(image_id)
        files[path.name if path is not None else image_id] = image_sha256(dataset, image_id, index_dir)
    lr: dict[str, dict[str, str]] = {}
    for scale in scales:
        label = _integer_label(scale)
        if label is None:
            continue
        found = {p.name: file_sha256(p, index_dir) for p in
                 (dataset.premade_lr_path(i, scale) for i in dataset.image_ids()) if p is not None}
        if found:
            lr[label] = found
    folder = str(dataset.layout.hr_dir.resolve()) if dataset.layout.hr_dir is not None else dataset.source
    digest = hashlib.sha256(json.dumps({"files": files, "lr": lr}, sort_keys=True).encode()).hexdigest()
    return {"folder": folder, "files": files, "lr": lr, "digest": digest}


# ---------------------------------------------------------------- the persistent index (best effort)


def _connect(index_dir: Path) -> sqlite3.Connection:
    index_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(index_dir / INDEX_NAME, timeout=30)
    connection.execute("CREATE TABLE IF NOT EXISTS sha256 (path TEXT, size INTEGER, mtime_ns INTEGER, "
                       "ctime_ns INTEGER, inode INTEGER, digest TEXT, PRIMARY KEY (path, size, mtime_ns, "
                       "ctime_ns, inode))")
    return connection


def _index_get(index_dir: Path, key: tuple[str, int, int, int, int]) -> str | None:
    rows = _run(index_dir, "SELECT digest FROM sha256 WHERE path=? AND size=? AND mtime_ns=? AND ctime_ns=? "
                           "AND inode=?", key)
    return rows[0][0] if rows else None


def _index_put(index_dir: Path, key: tuple[str, int, int, int, int], digest: str) -> None:
    _run(index_dir, "DELETE FROM sha256 WHERE path=?", key[:1])  # one row per file: its latest version
    _run(index_dir, "INSERT OR REPLACE INTO sha256 VALUES (?, ?, ?, ?, ?, ?)", (*key, digest))


def _run(index_dir: Path, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """One statement in its own transaction; an unwritable or damaged index only costs a re-hash."""
    try:
        connection = _connect(index_dir)
    except (sqlite3.Error, OSError):
        return []
    try:
        with connection:
            return connection.execute(sql, params).fetchall()
    except sqlite3.Error:
        return []
    finally:
        connection.close()
