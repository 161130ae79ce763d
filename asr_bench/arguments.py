"""The command line's argument parser, shared by `asr-bench` and its `validate` command."""
from __future__ import annotations

import argparse

from .errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a one-line UserError like every other mistake (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}. See `{self.prog} --help`.")

    lists_config_keys = False   # `run`: its --help ends with every config key of the schema (read when shown)

    def format_help(self) -> str:
        if self.lists_config_keys:
            from .config import help_lines

            self.formatter_class = argparse.RawDescriptionHelpFormatter
            self.epilog = ("config keys (in the YAML file, or --set KEY=VALUE; dotted for sections):\n"
                           + "\n".join(help_lines()))
        return super().format_help()
