"""Data: readers → SequenceRecord → per-camera views → sequence store → Ray Data → device clips.

The reader entry points are re-exported lazily so ``import raypose.data.clips`` (on the device)
does not pay for the readers.
"""
from __future__ import annotations

from typing import Any

_SOURCES = ("read_source", "default_mocap_path", "views", "View", "READERS")


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        from raypose.data import sources

        return getattr(sources, name)
    raise AttributeError(f"module 'raypose.data' has no attribute {name!r}")


__all__ = list(_SOURCES)
