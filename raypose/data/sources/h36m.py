"""Human3.6M as VideoPose3D distributes it.

- ``data_3d_h36m.npz``: ``positions_3d[subject][action]`` (T, 32 | 17, 3) metres, world frame
  (32 joints are reduced to the 17 VideoPose3D keeps).
- ``data_2d_h36m_<detector>.npz`` (optional): ``positions_2d[subject][action]`` = list of one
  (T', 17, 2 | 3) pixel array per camera in the dataset's camera order, and ``metadata`` with
  ``layout_name`` ('h36m', or 'coco' for COCO-order detectors), ``num_joints``,
  ``keypoints_symmetry``. Detector sequences longer than the mocap are cut to the mocap length
  (the videos run a few frames past the motion capture); shorter ones are an error.

Cameras are the four calibrated H36M cameras of each subject (:func:`raypose.cameras.h36m_cameras`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from raypose import skeleton
from raypose.data.record import SequenceRecord
from raypose.data.sources._common import (as_mapping, as_poses, load_npz, require_file,
                                          resample_record, unwrap, with_confidence)
from raypose.data.sources._videopose3d import iter_positions_3d
from raypose.errors import RayposeDataError

H36M_FPS = 50.0
FILE_3D = "data_3d_h36m.npz"
PREFIX_2D = "data_2d_h36m_"
#: metadata layout_name → skeleton layout for :func:`raypose.skeleton.to_h36m`.
LAYOUTS_2D = {"h36m": "h36m17", "coco": "coco17"}


def find_keypoints_file(path_3d: Path, detector: Optional[str]) -> Optional[Path]:
    """The 2D file beside the 3D file: named by ``detector``, or the only one when 'auto'."""
    if detector is None:
        return None
    folder = path_3d.parent
    if detector != "auto":
        return require_file(folder / f"{PREFIX_2D}{detector}.npz")
    found = sorted(folder.glob(f"{PREFIX_2D}*.npz"))
    if len(found) > 1:
        raise RayposeDataError(folder, "several 2D detection files "
                               f"({', '.join(p.name for p in found)}); choose one with detector=")
    return found[0] if found else None


def load_keypoints(path: Path) -> tuple[dict, str]:
    """``positions_2d`` tree and the skeleton layout its joints are in."""
    data = load_npz(path, required=("positions_2d",))
    meta = unwrap(data.get("metadata", {}))
    meta = meta if isinstance(meta, dict) else {}
    layout_name = str(meta.get("layout_name", "h36m"))
    if layout_name not in LAYOUTS_2D:
        raise RayposeDataError(path, f"metadata layout_name {layout_name!r} is not supported; "
                                     f"expected one of {', '.join(LAYOUTS_2D)}")
    if int(meta.get("num_joints", 17)) != 17:
        raise RayposeDataError(path, f"metadata num_joints is {meta['num_joints']}, expected 17")
    return dict(as_mapping(data["positions_2d"], path, "positions_2d")), LAYOUTS_2D[layout_name]


def keypoints_for(path: Path, tree: dict, layout: str, subject: str, action: str,
                  num_frames: int, num_cameras: int) -> list[np.ndarray]:
    """Per-camera (T, 17, 3) pixels+confidence for one clip, truncated to the mocap length."""
    by_action = tree.get(subject)
    if by_action is None or action not in as_mapping(by_action, path, f"positions_2d[{subject!r}]"):
        raise RayposeDataError(path, f"positions_2d has no entry for subject {subject!r} action {action!r}")
    per_cam = unwrap(by_action[action])
    if not isinstance(per_cam, (list, tuple, np.ndarray)):
        raise RayposeDataError(path, f"positions_2d[{subject!r}][{action!r}] must be a list of "
                                     f"per-camera arrays, got {type(per_cam).__name__}")
    if len(per_cam) != num_cameras:
        raise RayposeDataError(path, f"positions_2d[{subject!r}][{action!r}] has {len(per_cam)} cameras, "
                                     f"expected {num_cameras}")
    out = []
    for c, arr in enumerate(per_cam):
        what = f"positions_2d[{subject!r}][{action!r}][{c}]"
        kp = with_confidence(as_poses(arr, path, what, channels=(2, 3), missing_ok=True))
        if kp.shape[0] < num_frames:
            raise RayposeDataError(path, f"{what} has {kp.shape[0]} frames, fewer than the "
                                         f"{num_frames} of the 3D mocap")
        kp = kp[:num_frames]
        if layout != "h36m17":
            xy = skeleton.to_h36m(kp[..., :2], layout)
            conf = skeleton.MAPPINGS[layout].apply_confidence(kp[..., 2])
            kp = np.concatenate([xy, conf[..., None]], -1).astype(np.float32)
        out.append(kp)
    return out


def _cameras(subject: str):
    from raypose.cameras import h36m_cameras  # lazy: keeps the reader importable on its own

    try:
        return h36m_cameras(subject)
    except ValueError:
        return None  # no released calibration (S2–S4)


def read_h36m(
    path: str | Path,
    target_fps: float = 0.0,
    subjects: Optional[Sequence[str]] = None,
    actions: Optional[Sequence[str]] = None,
    detector: Optional[str] = "auto",
) -> list[SequenceRecord]:
    """One world-frame record per (subject, action) with the subject's four cameras.

    ``path`` is ``data_3d_h36m.npz`` or the folder holding it. ``detector`` picks
    ``data_2d_h36m_<detector>.npz`` beside it; 'auto' uses the only such file if there is one,
    None reads 3D only (views are then projected through the real cameras).
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE_3D
    data = load_npz(path, required=("positions_3d",))
    path_2d = find_keypoints_file(path, detector)
    tree_2d, layout = load_keypoints(path_2d) if path_2d is not None else (None, "h36m17")
    records = []
    for subject, action, pos in iter_positions_3d(path, data["positions_3d"], subjects, actions, allow_32=True):
        cams = _cameras(subject)
        keypoints = None
        if tree_2d is not None:
            if cams is None:
                raise RayposeDataError(path_2d, f"subject {subject!r} has 2D keypoints but no "
                                                f"Human3.6M camera calibration")
            keypoints = keypoints_for(path_2d, tree_2d, layout, subject, action, pos.shape[0], len(cams))
        rec = SequenceRecord("h36m", subject, action, H36M_FPS, positions_3d=pos, keypoints_2d=keypoints,
                             cameras=cams or [], frame_3d="world", source_path=str(path))
        records.append(resample_record(rec, target_fps))
    return records
