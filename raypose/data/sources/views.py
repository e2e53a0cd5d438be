"""A record → one :class:`View` per camera: the 2D a lifter sees and the 3D it must predict.

- Records with 2D keypoints keep them; their 3D (if any) is moved into each camera's frame.
- World-frame 3D without 2D but with real cameras (H36M read without detections) is projected
  through those cameras, distortion included.
- World-frame 3D without cameras (mocap, AMASS) is projected through ``num_virtual`` virtual
  cameras of the rig (:mod:`raypose.data.rig`: cameras that follow the subject, drawn over
  viewpoints, lenses and image shapes), without distortion, with confidence 1.
- Camera-frame 3D (COCO pseudo-labels, 3DHP) is used as it is.
3D targets are root-relative (pelvis = joint 0) camera-frame metres; the pelvis's own camera-frame
position (the trajectory) is kept beside them (``root_3d``) where the 3D is in the world frame.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from raypose.cameras import Camera
from raypose.config import RigConfig
from raypose.data.record import SequenceRecord
from raypose.data.rig import rig_views
from raypose.data.sources._common import mark_missing
from raypose.errors import MissingDataWarning, RayposeDataError
from raypose.skeleton import ROOT

#: A record with more than this fraction of its joint-frames missing is reported.
MOSTLY_MISSING = 0.5


@dataclass
class View:
    """One (sequence, camera) pair — a row of the sequence store."""

    dataset: str
    subject: str
    action: str
    camera: Camera
    fps: float
    keypoints_2d: np.ndarray            # (T, 17, 3) float32 pixels + confidence
    joints_3d: Optional[np.ndarray]     # (T, 17, 3) float32 root-relative camera metres | None
    valid: np.ndarray                   # (T,) bool
    #: (T, 3) float32 camera-frame pelvis metres (NaN where unknown) | None: world-frame 3D only
    #: (camera-frame sources such as COCO pseudo-labels may already be root-relative).
    root_3d: Optional[np.ndarray] = None

    @property
    def num_frames(self) -> int:
        return int(self.keypoints_2d.shape[0])


def root_relative(x: np.ndarray) -> np.ndarray:
    """Pelvis-relative joints; a frame whose pelvis is missing (NaN) is missing entirely."""
    return (x - x[:, ROOT:ROOT + 1]).astype(np.float32)


def root_track(positions_cam: np.ndarray) -> np.ndarray:
    """(T, 17, 3) camera-frame joints → (T, 3) float32 pelvis positions (NaN where missing)."""
    return np.asarray(positions_cam[:, ROOT], dtype=np.float32).copy()


def missing_fraction(record: SequenceRecord) -> float:
    """Fraction of joint-frames missing: NaN/inf 3D, or 2D with confidence ≤ 0 (worst camera)."""
    parts = []
    if record.positions_3d is not None:
        parts.append(float((~np.isfinite(record.positions_3d).all(-1)).mean()))
    for kp in record.keypoints_2d or []:
        parts.append(float((~(kp[..., 2] > 0)).mean()))
    return max(parts, default=0.0)


def report_missing(record: SequenceRecord) -> None:
    """Warn, naming the file and sequence, when most of a record is missing: it is kept (its
    missing joints are masked) but is likely a broken export, not data to train on."""
    frac = missing_fraction(record)
    if frac > MOSTLY_MISSING:
        warnings.warn(f"{record.source_path or record.dataset}: {record.key} is mostly missing "
                      f"({100 * frac:.0f}% of joint-frames are NaN/inf or undetected); its missing "
                      "joints are masked out of training", MissingDataWarning, stacklevel=2)


def fill_missing(pos: np.ndarray) -> np.ndarray:
    """(T, J, 3) with NaN/inf joints interpolated over time from the same joint's finite frames
    (held at the ends; a joint never seen takes its frame's finite mean, else 0): only to place
    virtual cameras, never as a target."""
    out = np.array(pos, dtype=np.float64)
    ok = np.isfinite(out).all(-1)                                      # (T, J)
    if ok.all():
        return out
    t = np.arange(out.shape[0])
    for j in np.where(ok.any(0) & ~ok.all(0))[0]:
        for k in range(out.shape[2]):
            out[:, j, k] = np.interp(t, t[ok[:, j]], out[ok[:, j], j, k])
    bad = ~np.isfinite(out).all(-1)                                    # joints missing in every frame
    for f in np.where(bad.any(1))[0]:
        out[f, bad[f]] = out[f, ~bad[f]].mean(0) if (~bad[f]).any() else 0.0
    return out


def with_missing(positions_cam: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Camera-frame joints with the ``missing`` (T, J) ones set back to NaN."""
    out = np.array(positions_cam, dtype=np.float32)
    out[missing] = np.nan
    return out


def project_view(positions_cam: np.ndarray, camera: Camera, distort: bool) -> np.ndarray:
    """(T, 17, 3) camera-frame metres → (T, 17, 3) pixels with confidence 1."""
    xy = camera.project(positions_cam, distort=distort)
    return np.concatenate([xy, np.ones(xy.shape[:-1] + (1,), np.float32)], -1).astype(np.float32)


def views(record: SequenceRecord, rng: np.random.Generator, num_virtual: int = 4,
          rig: Optional[RigConfig] = None) -> list[View]:
    """Per-camera views of ``record`` (virtual cameras of ``rig`` drawn from ``rng`` for 3D-only
    world data; the default rig when None)."""
    report_missing(record)
    T = record.num_frames
    valid = np.ones(T, bool) if record.valid is None else np.asarray(record.valid, bool).reshape(-1)
    if valid.shape[0] != T:
        raise RayposeDataError(record.source_path, f"{record.key}: valid has {valid.shape[0]} "
                                                   f"frames, expected {T}")
    pos = record.positions_3d
    cameras = record.cameras
    if record.keypoints_2d is None:
        if pos is None:
            raise RayposeDataError(record.source_path, f"{record.key} has neither 2D nor 3D")
        if not cameras:
            if record.frame_3d != "world":
                raise RayposeDataError(record.source_path, f"{record.key}: camera-frame 3D needs its camera")
            missing = ~np.isfinite(pos).all(-1)
            return [View(record.dataset, record.subject, record.action, rv.camera, float(record.fps),
                         mark_missing(project_view(with_missing(rv.positions_cam, missing), rv.camera,
                                                   distort=False)),
                         root_relative(with_missing(rv.positions_cam, missing)), valid.copy(),
                         root_track(with_missing(rv.positions_cam, missing)))
                    for rv in rig_views(fill_missing(pos), record.fps, num_virtual, rig or RigConfig(),
                                        rng, record.key)]
    elif len(record.keypoints_2d) != len(cameras):
        raise RayposeDataError(record.source_path, f"{record.key} has {len(record.keypoints_2d)} "
                                                   f"2D tracks but {len(cameras)} cameras")
    out = []
    for c, cam in enumerate(cameras):
        cam_pos = None
        if pos is not None:
            cam_pos = pos if record.frame_3d == "camera" else cam.world_to_camera(pos)
        kp = record.keypoints_2d[c] if record.keypoints_2d is not None else project_view(cam_pos, cam, distort=True)
        out.append(View(record.dataset, record.subject, record.action, cam, float(record.fps),
                        mark_missing(kp.astype(np.float32, copy=False)),
                        None if cam_pos is None else root_relative(cam_pos), valid.copy(),
                        root_track(cam_pos) if cam_pos is not None and record.frame_3d == "world" else None))
    return out
