"""The one way this package writes a file that others may read while it is written: temp file + fsync + rename.

Why: a reader (another run sharing the folder, a browser on report.html, a colleague) must see the old file or
the new one, never half of one; a write cut short by a kill or a full disk must leave the old file intact. So
every writer (the store's views, the zoo's records, the report, images, self-test verdicts, staged extension
sources) goes through here, and there is one naming and one cleanup policy:

- The temp file sits in the target's own folder (a rename within one file system is atomic) and is named
  `.asr-bench-<pid>-<start>@<host>@<target name>.<random>.tmp`: the owner (process id, its start time, so a
  reused pid is not mistaken for it, and the host) is in the name.
- It is created with `os.open(..., 0o666)`, so the kernel applies the user's umask (and a folder's default ACL)
  exactly as for an ordinary `open(path, "w")`: 0644 under umask 022, 0600 under 077. `tempfile.mkstemp` would
  give 0600 whatever the umask, and a report on a shared folder could not be read by colleagues.
- Cleanup deletes only temp files of ours whose owner is on this host and dead (its pid is gone or now belongs to
  a process started at another time). A live writer's file, any file from another host (whose processes we cannot
  see) and every file not named by us stay. Each folder is cleaned when this process first writes into it.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_PREFIX = ".asr-bench-"  # our temp files: the only files a cleanup ever deletes
TEMP_SUFFIX = ".tmp"

_cleaned: set[Path] = set()
_cleaned_lock = threading.Lock()


def process_start(pid: int) -> str:
    """The start time of a process (field 22 of /proc/<pid>/stat), so a reused pid is not mistaken for the first."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, start: str) -> bool:
    """Whether the process `pid` that started at `start` (as `process_start` gives it; '' = unknown) still runs
    on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's live process
    now = process_start(pid)
    return not start or not now or now == start


def current_umask() -> int:
    """This process's umask, read without changing it (/proc/self/status); where that is not there, set and
    restored at once under a lock (os.umask can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _cleaned_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def owner() -> str:
    """This process as a temp file names its owner: '<pid>-<start>@<host>'."""
    pid = os.getpid()
    return f"{pid}-{process_start(pid)}@{socket.gethostname()}"


def temp_name(target: Path) -> str:
    return f"{TEMP_PREFIX}{owner()}@{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def abandoned(path: Path) -> bool:
    """Whether `path` is a temp file of ours whose writer, on this host, is dead (the cleanup policy)."""
    name = path.name
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return False
    parts = name[len(TEMP_PREFIX):].split("@", 2)
    if len(parts) != 3 or parts[1] != socket.gethostname():
        return False  # unowned or another host's: we cannot know whether its writer is alive
    pid, _, start = parts[0].partition("-")
    return pid.isdigit() and not process_alive(int(pid), start)


def clean(folder: Path) -> list[Path]:
    """Delete the abandoned temp files in `folder` (not below it); returns what was deleted."""
    removed = []
    try:
        candidates = list(Path(folder).glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for path in candidates:
        if abandoned(path):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _clean_once(folder: Path) -> None:
    key = folder.resolve()
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    clean(folder)


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """A handle to write `path`'s new contents; on leaving the block they are synced and renamed into place. On an
    exception the temp file is removed and `path` keeps its old contents."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"open_atomic writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    while True:
        tmp = path.parent / temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        if "b" in mode:
            handle = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` with `data` atomically (see the module's docstring); returns the path."""
    with open_atomic(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8", newline: str | None = "") -> Path:
    """Replace `path` with `text` atomically; newline='' writes the text's own line ends."""
    with open_atomic(path, "w", encoding=encoding, newline=newline) as handle:
        handle.write(text)
    return Path(path)
