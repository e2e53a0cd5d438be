"""AMASS reduced to H36M-17 joints: one ``.npz`` per sequence, in a folder tree or a single file.

This is what the usual preprocessing writes after running SMPL-H through a Human3.6M joint
regressor: per sequence a (T, 17, 3) array in metres under ``joints`` (canonical; the common
alternatives ``positions_3d`` and ``poses_3d`` are accepted) and its frame rate under
``mocap_framerate`` (AMASS's own key; ``mocap_frame_rate`` and ``fps`` are accepted).

Up axis: the AMASS/SMPL world is **Z up**, which is raypose's world convention, so the default
``up_axis='z'`` keeps the points as they are. Some exporters rotate to Y up (``up_axis='y'``):
those points are turned back to Z up by a +90° rotation about x ((x, y, z) → (x, -z, y)).

Subject = the file's folder relative to the root (e.g. 'CMU/01'), action = the file stem.
A folder is searched recursively for ``*.npz``; AMASS's per-subject ``shape.npz`` is skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from raypose.data.record import SequenceRecord
from raypose.data.sources._common import (as_array, as_poses, check_metres, load_npz,
                                          resample_record)
from raypose.errors import RayposeDataError

POSITION_KEYS = ("joints", "positions_3d", "poses_3d")
FPS_KEYS = ("mocap_framerate", "mocap_frame_rate", "fps")
UP_AXES = ("z", "y")
#: AMASS keeps each subject's body shape (betas only, no motion) beside its sequences.
SKIP_FILES = ("shape.npz",)


def to_z_up(points: np.ndarray, up_axis: str) -> np.ndarray:
    if up_axis == "z":
        return points
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x, -z, y], -1).astype(points.dtype)


def read_sequence(path: Path, up_axis: str = "z") -> tuple[np.ndarray, float]:
    """(T, 17, 3) Z-up metres and the frame rate of one sequence file."""
    data = load_npz(path)
    pos_key = next((k for k in POSITION_KEYS if k in data), None)
    if pos_key is None:
        raise RayposeDataError(path, f"no joint positions: expected one of {', '.join(POSITION_KEYS)}; "
                                     f"found {sorted(data) or 'none'}")
    fps_key = next((k for k in FPS_KEYS if k in data), None)
    if fps_key is None:
        raise RayposeDataError(path, f"no frame rate: expected one of {', '.join(FPS_KEYS)}; "
                                     f"found {sorted(data)}")
    fps = as_array(data[fps_key], path, fps_key)
    if fps.size != 1 or not float(fps.reshape(-1)[0]) > 0:
        raise RayposeDataError(path, f"{fps_key} must be one positive number, got {fps.tolist()}")
    pos = to_z_up(as_poses(data[pos_key], path, pos_key, missing_ok=True), up_axis)
    check_metres(pos, path, pos_key)
    return pos, float(fps.reshape(-1)[0])


def sequence_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise RayposeDataError(root, "file or folder not found")
    files = sorted(p for p in root.rglob("*.npz") if p.is_file() and p.name not in SKIP_FILES)
    if not files:
        raise RayposeDataError(root, "folder holds no .npz sequence files")
    return files


def subject_of(file: Path, root: Path) -> str:
    if root.is_file():
        return file.parent.name or "amass"
    rel = file.parent.relative_to(root).as_posix()
    return rel if rel != "." else root.name


def read_amass(
    path: str | Path,
    target_fps: float = 0.0,
    subjects: Optional[Sequence[str]] = None,
    up_axis: str = "z",
) -> list[SequenceRecord]:
    """One world-frame (Z up), 3D-only record per sequence file, resampled to ``target_fps``.

    ``subjects`` names folders: 'CMU/01' exactly, or 'CMU' for everything below it.
    """
    root = Path(path)
    if up_axis not in UP_AXES:
        raise RayposeDataError(root, f"up_axis must be one of {UP_AXES}, got {up_axis!r}")
    files = sequence_files(root)
    by_subject = {f: subject_of(f, root) for f in files}
    if subjects is not None:
        known = sorted(set(by_subject.values()))
        wanted = set()
        for s in subjects:
            hits = {k for k in known if k == s or k.startswith(s.rstrip("/") + "/")}
            if not hits:
                raise RayposeDataError(root, f"unknown subject {s!r}; available: {', '.join(known)}")
            wanted |= hits
        files = [f for f in files if by_subject[f] in wanted]
    records = []
    for f in files:
        pos, fps = read_sequence(f, up_axis)
        rec = SequenceRecord("amass", by_subject[f], f.stem, fps, positions_3d=pos, frame_3d="world",
                             source_path=str(f))
        records.append(resample_record(rec, target_fps))
    return records
