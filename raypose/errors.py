"""Errors raised for bad input: each names the file (or shard) and the problem."""
from __future__ import annotations


class RayposeError(Exception):
    """Base class for raypose's own errors."""


class RayposeDataError(RayposeError, ValueError):
    """Input data is missing, malformed or inconsistent.

    The message always starts with the offending path so a user can find it in a large
    dataset: ``RayposeDataError(path, "positions_3d['S1']['Walking'] has 16 joints, expected 17")``.
    """

    def __init__(self, path: object, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingDataWarning(UserWarning):
    """A sequence is mostly missing (NaN/inf or undetected joints): it is kept, masked, but
    probably not what the user meant to train on. The message names the file and sequence."""


class ConfigError(RayposeError, ValueError):
    """A configuration value or override is unknown, of the wrong type, or out of range."""
