"""A record → one :class:`View` per camera: the 2D a lifter sees and the 3D it must predict.

- Records with 2D keypoints keep them; their 3D (if any) is moved into each camera's frame.
- World-frame 3D without 2D but with real cameras (H36M read without detections) is projected
  through those cameras, distortion included.
- World-frame 3D without cameras (mocap, AMASS) is projected through ``num_virtual`` virtual
  cameras of the rig (:mod:`raypose.data.rig`: cameras that follow the subject, drawn over
  viewpoints, lenses and image shapes), without distortion, with confidence 1.
- Camera-frame 3D (COCO pseudo-labels, 3DHP) is used as it is.
3D targets are root-relative (pelvis = joint 0) camera-frame metres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from raypose.cameras import Camera
from raypose.config import RigConfig
from raypose.data.record import SequenceRecord
from raypose.data.rig import rig_views
from raypose.errors import RayposeDataError
from raypose.skeleton import ROOT


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

    @property
    def num_frames(self) -> int:
        return int(self.keypoints_2d.shape[0])


def root_relative(x: np.ndarray) -> np.ndarray:
    return (x - x[:, ROOT:ROOT + 1]).astype(np.float32)


def project_view(positions_cam: np.ndarray, camera: Camera, distort: bool) -> np.ndarray:
    """(T, 17, 3) camera-frame metres → (T, 17, 3) pixels with confidence 1."""
    xy = camera.project(positions_cam, distort=distort)
    return np.concatenate([xy, np.ones(xy.shape[:-1] + (1,), np.float32)], -1).astype(np.float32)


def views(record: SequenceRecord, rng: np.random.Generator, num_virtual: int = 4,
          rig: Optional[RigConfig] = None) -> list[View]:
    """Per-camera views of ``record`` (virtual cameras of ``rig`` drawn from ``rng`` for 3D-only
    world data; the default rig when None)."""
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
            return [View(record.dataset, record.subject, record.action, rv.camera, float(record.fps),
                         project_view(rv.positions_cam, rv.camera, distort=False),
                         root_relative(rv.positions_cam), valid.copy())
                    for rv in rig_views(pos, record.fps, num_virtual, rig or RigConfig(), rng, record.key)]
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
                        kp.astype(np.float32, copy=False),
                        None if cam_pos is None else root_relative(cam_pos), valid.copy()))
    return out
