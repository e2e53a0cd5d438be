"""Readers for the pose formats users own, one module per format, behind one entry point.

Every reader returns ``list[SequenceRecord]`` in metres (see :mod:`raypose.data.record`) and
raises :class:`~raypose.errors.RayposeDataError` naming the file and the problem on bad input.
:func:`views` then turns a record into per-camera rows for the sequence store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from raypose.config import SourceConfig
from raypose.data.record import SequenceRecord
from raypose.data.sources._remote import fetch, is_remote
from raypose.data.sources.amass import read_amass
from raypose.data.sources.bvh import read_bvh
from raypose.data.sources.coco import read_coco
from raypose.data.sources.h36m import read_h36m
from raypose.data.sources.mocap import read_mocap
from raypose.data.sources.mpi_inf_3dhp import read_mpi_inf_3dhp
from raypose.data.sources.views import View, views
from raypose.errors import RayposeDataError

#: format name (SourceConfig.format) → reader(path, target_fps, subjects, **options).
READERS: dict[str, Callable[..., list[SequenceRecord]]] = {
    "mocap": read_mocap,
    "h36m": read_h36m,
    "amass": read_amass,
    "coco": read_coco,
    "mpi_inf_3dhp": read_mpi_inf_3dhp,
    "bvh": read_bvh,
}


def default_mocap_path() -> Path:
    """The small real mocap subset shipped inside the package (see assets/LICENSE-data.md)."""
    return Path(__file__).resolve().parents[2] / "assets" / "mocap_small.npz"


def read_source(src: SourceConfig, target_fps: float, subjects: Optional[Sequence[str]] = None,
                s3_endpoint: str = "", **options: Any) -> list[SequenceRecord]:
    """Read one configured source at ``target_fps`` (0 keeps each source's own rate).

    ``path == ''`` means the embedded mocap (format 'mocap'); an ``s3://`` path (file or
    folder) is first copied to a local cache (``s3_endpoint``: as ``DataConfig.s3_endpoint``).
    ``options`` go to the reader (e.g. ``detector=`` for h36m, ``up_axis=`` for amass,
    ``pseudo_labels=`` for coco, ``joint_map=``/``units=``/``up_axis=`` for bvh).
    """
    reader = READERS.get(src.format)
    if reader is None:
        raise RayposeDataError(src.path or src.name, f"unknown source format {src.format!r}; "
                                                     f"expected one of {', '.join(READERS)}")
    path: Path | str = src.path
    if not path:
        if src.format != "mocap":
            raise RayposeDataError(src.name, f"source format {src.format!r} needs a path")
        path = default_mocap_path()
    if is_remote(path):
        path = fetch(str(path), s3_endpoint)
    return reader(path, target_fps=target_fps, subjects=subjects, **{**src.options, **options})


__all__ = ["READERS", "View", "default_mocap_path", "read_amass", "read_bvh", "read_coco", "read_h36m",
           "read_mocap", "read_mpi_inf_3dhp", "read_source", "views"]
