"""The one content-hash index: a file's sha256, remembered so a file is hashed once, not on every run.

Dataset images (what a cached LR and a stored result were computed from) and weight files (is this the official
checkpoint?) are both identified by the sha256 of their bytes, never by name. Hashing DIV2K or a 256 MB checkpoint on
every run would cost seconds, so a hash is remembered by (resolved path, size, mtime_ns, ctime_ns, inode), in memory
and, when an `index_dir` is given, in a small SQLite index there that later processes reuse. ctime and inode are in
the key because `cp -p` restores mtime but not them. Torch-free, so `weights list` stays cheap.
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

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
        digest = sha256_of(path)
        if index_dir is not None:
            _index_put(Path(index_dir), key, digest)
    _MEMO[key] = digest
    return digest


def sha256_of(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks; no index (a file being written, a download part)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


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
