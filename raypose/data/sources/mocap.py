"""3D-only mocap in the VideoPose3D layout with a per-clip frame rate (the shared/embedded data).

Layout (``np.load(path, allow_pickle=True)``): ``positions_3d[subject][action]`` float (T, 17, 3)
metres, world frame, **Z up**; ``fps[subject][action]`` float; optional ``metadata`` dict
(``num_joints`` must be 17 when given). There are no cameras: :func:`raypose.data.sources.views`
projects these records through virtual cameras.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from raypose.data.record import SequenceRecord
from raypose.data.sources._common import as_mapping, load_npz, resample_record, unwrap
from raypose.data.sources._videopose3d import iter_positions_3d
from raypose.errors import RayposeDataError


def read_mocap(
    path: str | Path,
    target_fps: float = 0.0,
    subjects: Optional[Sequence[str]] = None,
    actions: Optional[Sequence[str]] = None,
    dataset: str = "mocap",
) -> list[SequenceRecord]:
    """One world-frame, 3D-only record per clip, resampled to ``target_fps`` (0 keeps the rate)."""
    path = Path(path)
    data = load_npz(path, required=("positions_3d", "fps"))
    fps_tree = as_mapping(data["fps"], path, "fps")
    meta = unwrap(data.get("metadata", {}))
    if isinstance(meta, dict) and meta.get("num_joints", 17) != 17:
        raise RayposeDataError(path, f"metadata num_joints is {meta['num_joints']}, expected 17")
    if isinstance(meta, dict) and str(meta.get("up_axis", "z")).lower() != "z":
        raise RayposeDataError(path, f"metadata up_axis is {meta['up_axis']!r}, expected 'z'")
    records = []
    for subject, action, pos in iter_positions_3d(path, data["positions_3d"], subjects, actions):
        try:
            fps = float(as_mapping(fps_tree[subject], path, f"fps[{subject!r}]")[action])
        except KeyError:
            raise RayposeDataError(path, f"fps[{subject!r}][{action!r}] is missing") from None
        if not fps > 0:
            raise RayposeDataError(path, f"fps[{subject!r}][{action!r}] is {fps}, expected > 0")
        rec = SequenceRecord(dataset, subject, action, fps, positions_3d=pos, frame_3d="world",
                             source_path=str(path))
        records.append(resample_record(rec, target_fps))
    return records
