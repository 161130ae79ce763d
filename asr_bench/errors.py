"""User-facing errors.

Every mistake a user can make (unknown name, missing file, bad scale, bad YAML ...) raises a `UserError`
whose message is one line: what was wrong, what is allowed or where we looked, and how to fix it. The CLI
prints it and exits with code 2, without a traceback (`--debug` shows one).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input; the message is the whole, actionable explanation."""

    exit_code = 2


class UnknownName(UserError, KeyError):
    """A name (method, encoder, dataset, protocol, metric, preset) that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        tail = f" {hint}" if hint else ""
        super().__init__(f"unknown {kind} '{name}'; known: {', '.join(known) or '(none)'}.{suggestion}{tail}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnsupportedScale(UserError, ValueError):
    """A method asked for a scale it does not support (e.g. IGConv at a non-integer scale)."""

    def __init__(self, method: str, scale: object, supported: object) -> None:
        super().__init__(
            f"method '{method}' does not support scale {scale}; supported scales: {supported}. "
            "Pick one of those scales or another method."
        )


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named (checkpoint, dataset, image) does not exist."""

    def __init__(self, what: str, path: object, fix: str) -> None:
        super().__init__(f"{what} not found: {path}. {fix}")

    def __str__(self) -> str:
        return str(self.args[0])


def closest(name: str, known: Iterable[str]) -> str | None:
    """The registered name closest to `name`, for "did you mean" hints."""
    match = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return match[0] if match else None


# errno values that mean "this place cannot be written" (not a bug of ours): permissions, a read-only
# filesystem, a full disk or quota, a file where a folder should be (or the reverse).
_WRITE_ERRNOS = {"EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "EEXIST", "EISDIR", "EFBIG"}


class CannotWrite(UserError, OSError):
    """An output file or folder could not be written (permissions, read-only, disk full ...)."""

    def __str__(self) -> str:
        return str(self.args[0])


def cannot_write(exc: OSError) -> CannotWrite | None:
    """The one-line user error for an OSError that means an output place is unwritable; None for any other."""
    import errno
    import os

    name = errno.errorcode.get(exc.errno or -1, "")
    if name not in _WRITE_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "the output folder"
    why = exc.strerror or os.strerror(exc.errno or 0)
    if name in ("ENOSPC", "EDQUOT", "EFBIG"):
        fix = "free some space (or raise the quota), or write elsewhere (--output / --out)"
    elif name in ("ENOTDIR", "EEXIST", "EISDIR"):
        fix = "a file is where a folder should be (or the reverse); give another path"
    else:
        fix = "check its permissions (or that the filesystem is not read-only), or write elsewhere (--output / --out)"
    return CannotWrite(f"cannot write {where}: {why} [{name}]; {fix}. Results stored so far are kept.")
