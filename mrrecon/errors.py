"""Exceptions raised by mrrecon.

Every error caused by bad input names the file (when there is one) and the problem, so a batch
job can log it, skip the file and carry on.
"""

from __future__ import annotations

from pathlib import Path


class MRReconError(Exception):
    """Base class of every exception mrrecon raises on purpose."""


class DataError(MRReconError):
    """Input data that cannot be used: unreadable, missing keys, NaN/inf, wrong shapes."""

    def __init__(self, problem: str, file: str | Path | None = None):
        self.file = None if file is None else str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}" if self.file else problem)


class ShapeError(DataError):
    """Arrays whose shapes do not fit together (e.g. mask vs k-space)."""


class ConfigError(MRReconError):
    """An invalid option, method name or configuration value."""
