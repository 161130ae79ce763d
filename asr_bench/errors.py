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
