"""Splitting one sweep over many processes: `--shard i/n`, Slurm array jobs, torchrun.

A shard is the deterministic i-th of n partitions of the planned cases (every n-th case from the i-th, in plan
order, so shards get a similar mix of methods and scales). Without `--shard`, i/n comes from a Slurm array
(`SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`) or from torchrun (`RANK` of
`WORLD_SIZE`; the device then follows `LOCAL_RANK`). All shards write into one run folder; where that folder is on
a network file system (SQLite's locking is not safe there) each shard gets its own database file, and readers
merge them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..results.database import DB_NAME

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "lustre", "gpfs", "beegfs",
                       "ceph", "fuse.ceph", "afs", "fuse.glusterfs", "glusterfs")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str = "--shard"    # where i/n came from
    local_rank: int | None = None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, source: str = "--shard") -> Shard:
    """'1/4' -> Shard(1, 4); anything else is a one-line error."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise UserError(f"{source} '{text}' is not of the form i/n (e.g. 0/4: the first of four shards).") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"{source} '{text}': need 0 <= i < n (shards are numbered from 0), e.g. 0/{max(count, 1)}.")
    return Shard(index, count, source)


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}='{value}' is not an integer; unset it or fix it.") from None


def shard_from_env() -> Shard | None:
    task, count = _int_env("SLURM_ARRAY_TASK_ID"), _int_env("SLURM_ARRAY_TASK_COUNT")
    if task is not None and count is not None:
        first = _int_env("SLURM_ARRAY_TASK_MIN") or 0
        return parse_shard(f"{task - first}/{count}", "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT")
    rank, world = _int_env("RANK"), _int_env("WORLD_SIZE")
    if rank is not None and world is not None and world > 1:
        shard = parse_shard(f"{rank}/{world}", "RANK/WORLD_SIZE (torchrun)")
        return Shard(shard.index, shard.count, shard.source, _int_env("LOCAL_RANK"))
    return None


def resolve_shard(shard: str | Shard | None) -> Shard | None:
    if isinstance(shard, Shard):
        return shard
    if shard is not None:
        return parse_shard(shard)
    return shard_from_env()


def select(cases: list[Any], shard: Shard | None) -> list[Any]:
    return list(cases) if shard is None else list(cases[shard.index::shard.count])


def filesystem_type(path: Path) -> str:
    """The type of the mount holding `path` (longest matching mount point in /proc/mounts), or ''."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target, best, kind = str(path.resolve()), -1, ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > best:
            best, kind = len(point), parts[2]
    return kind


def database_name(run_dir: Path, shard: Shard | None, per_shard: bool | None = None) -> str:
    """results.sqlite, or results.shard-i-of-n.sqlite where shards must not share one file."""
    if shard is None:
        return DB_NAME
    if per_shard is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        per_shard = filesystem_type(run_dir) in NETWORK_FILESYSTEMS
    return f"results.shard-{shard.index}-of-{shard.count}.sqlite" if per_shard else DB_NAME
