"""Pinhole cameras with distortion, world↔camera transforms, screen normalisation.

Conventions (DESIGN.md): metres; camera frame x right, y down, z forward;
``X_cam = R @ X_world + t``. Distortion follows the H36M convention
as VideoPose3D applies it: ``xy·(1 + k1r² + k2r⁴ + k3r⁶ + p1x + p2y) + (p1, p2)·r²``
on ``xy = X/Z`` clamped to [-1, 1] (the calibrated range; the polynomial diverges beyond).

The Human3.6M calibration (:func:`h36m_cameras`) is stored in :mod:`raypose.h36m_camera_data`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from raypose.h36m_camera_data import H36M_CAMERA_IDS, H36M_EXTRINSICS, H36M_INTRINSICS

#: Length of :meth:`Camera.to_array`: w, h, fx, fy, cx, cy, k1, k2, k3, p1, p2, R (9), t (3).
CAMERA_ARRAY_SIZE = 23


@dataclass
class Camera:
    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    R: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.float64))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float64))
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5, dtype=np.float64))

    def __post_init__(self) -> None:
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(5)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def world_to_camera(self, X: np.ndarray) -> np.ndarray:
        """(…, 3) world points → camera frame."""
        return (np.asarray(X, dtype=np.float64) @ self.R.T + self.t).astype(np.float32)

    def camera_to_world(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float64) - self.t) @ self.R).astype(np.float32)

    def project(self, X_cam: np.ndarray, distort: bool = True) -> np.ndarray:
        """(…, 3) camera-frame points → (…, 2) pixels."""
        return project(X_cam, self.intrinsics_vector(), distort=distort)

    def unproject(self, pixels: np.ndarray, depth: np.ndarray, distort: bool = True) -> np.ndarray:
        """(…, 2) pixels and (…) camera-frame depths Z → (…, 3) camera-frame points."""
        return unproject(pixels, depth, self.intrinsics_vector(), distort=distort)

    def intrinsics_vector(self) -> np.ndarray:
        """fx, fy, cx, cy, k1, k2, k3, p1, p2."""
        return np.array([self.fx, self.fy, self.cx, self.cy, *self.dist], dtype=np.float64)

    def to_array(self) -> np.ndarray:
        return np.concatenate([[self.width, self.height, self.fx, self.fy, self.cx, self.cy],
                               self.dist, self.R.ravel(), self.t]).astype(np.float64)

    @classmethod
    def from_array(cls, a: Sequence[float], name: str = "") -> "Camera":
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (CAMERA_ARRAY_SIZE,):
            raise ValueError(f"camera array must have {CAMERA_ARRAY_SIZE} values, got {a.shape}")
        return cls(name, int(a[0]), int(a[1]), *a[2:6], R=a[11:20], t=a[20:23], dist=a[6:11])


def project(X_cam: np.ndarray, intrinsics: Sequence[float], distort: bool = True) -> np.ndarray:
    """Project camera-frame points with intrinsics (fx, fy, cx, cy[, k1, k2, k3, p1, p2])."""
    X = np.asarray(X_cam, dtype=np.float64)
    p = np.asarray(intrinsics, dtype=np.float64)
    z = np.clip(X[..., 2:3], 1e-6, None)
    xy = X[..., :2] / z
    if distort and p.shape[0] >= 9:
        xy = _distort(np.clip(xy, -1.0, 1.0), p[4:9])
    f, c = p[0:2], p[2:4]
    return (xy * f + c).astype(np.float32)


def _distort(xy: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Normalised image coordinates → distorted ones; ``d`` = (k1, k2, k3, p1, p2)."""
    k, tan = d[0:3], d[3:5]
    r2 = (xy**2).sum(-1, keepdims=True)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tangential = (tan * xy).sum(-1, keepdims=True)  # p1*x + p2*y
    return xy * (radial + tangential) + tan * r2


def unproject(pixels: np.ndarray, depth: np.ndarray, intrinsics: Sequence[float],
              distort: bool = True, iterations: int = 20) -> np.ndarray:
    """Inverse of :func:`project` given each point's camera-frame depth Z.

    Distortion has no closed-form inverse; a fixed-point iteration (as OpenCV's
    ``undistortPoints``) converges to sub-micro-pixel error for H36M-sized distortion.
    """
    p = np.asarray(intrinsics, dtype=np.float64)
    xy_d = (np.asarray(pixels, dtype=np.float64) - p[2:4]) / p[0:2]
    xy = xy_d.copy()
    if distort and p.shape[0] >= 9 and np.any(p[4:9] != 0):
        for _ in range(iterations):
            xy = xy + (xy_d - _distort(xy, p[4:9]))
    z = np.asarray(depth, dtype=np.float64)[..., None]
    return np.concatenate([xy * z, z], axis=-1).astype(np.float32)


def _float_array(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    return X if np.issubdtype(X.dtype, np.floating) else X.astype(np.float64)


def _principal(width: float, height: float, principal_point) -> np.ndarray:
    return (np.array([width, height], dtype=np.float64) / 2 if principal_point is None
            else np.asarray(principal_point, dtype=np.float64))


def normalize_screen(X: np.ndarray, width: float, height: float, principal_point=None) -> np.ndarray:
    """Pixels → screen units centred on the principal point: ``(X − c) / w · 2``.

    With ``c`` the image centre (the default, for footage whose calibration is unknown) this is
    VideoPose3D's ``X / w · 2 − [1, h / w]``. Centring on the true principal point makes the
    image mirror about it exactly ``x → −x`` (flip augmentation and test-time flips), whatever
    the camera.
    """
    X = _float_array(X)
    c = _principal(width, height, principal_point)
    return ((X - c.astype(X.dtype)) / width * 2).astype(X.dtype)


def image_coordinates(X: np.ndarray, width: float, height: float, principal_point=None) -> np.ndarray:
    """Inverse of :func:`normalize_screen`."""
    X = _float_array(X)
    c = _principal(width, height, principal_point)
    return (X * width / 2 + c.astype(X.dtype)).astype(X.dtype)


def screen_focal(camera) -> "np.ndarray":
    """The focal length in normalised screen units, ``2·fx / w``, of camera arrays (…, 23)
    (:meth:`Camera.to_array` layout; numpy or torch): the 2D a model sees is what a pinhole of
    this focal length sees, so depth is known from 2D only up to this factor."""
    return camera[..., 2] * 2 / camera[..., 0]


def root_to_screen_depth(root, camera):
    """Camera-space root positions (…, 3) metres → the same with ``z`` divided by
    :func:`screen_focal` (``camera`` (…, 23) matching root's leading axes): the point a
    unit-focal camera would see where the normalised 2D shows the root — what a trajectory head
    can learn from 2D without knowing the lens (x and y stay metres). numpy or torch."""
    out = root * 1.0
    out[..., 2] = root[..., 2] / screen_focal(camera)
    return out


def screen_depth_to_root(point, camera):
    """Inverse of :func:`root_to_screen_depth`: ``z`` multiplied back by :func:`screen_focal`."""
    out = point * 1.0
    out[..., 2] = point[..., 2] * screen_focal(camera)
    return out


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Unit quaternion (w, x, y, z) → 3×3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def extrinsics_from_quaternion(orientation: Sequence[float], position: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """R, t (``X_cam = R X_world + t``) from a camera→world quaternion (w, x, y, z) and the
    camera centre in world coordinates — the way H36M/VideoPose3D store extrinsics, where
    world→camera is ``rot(q⁻¹, X - position)``."""
    R = quaternion_to_matrix(orientation).T  # rot(q⁻¹, ·) = M(q)ᵀ
    return R, -R @ np.asarray(position, dtype=np.float64)


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> tuple[np.ndarray, np.ndarray]:
    """R, t of a camera at ``position`` looking at ``target`` (world Z up → camera y down)."""
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-8:
        raise ValueError("camera looks straight along the up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    return R, -R @ position


#: Subjects with released calibration (S2–S4 have none).
H36M_SUBJECTS: tuple[str, ...] = tuple(H36M_EXTRINSICS)


def _h36m_intrinsics(camera_id: str) -> dict:
    w, h, fx, fy, cx, cy, *dist = H36M_INTRINSICS[camera_id]
    return dict(width=int(w), height=int(h), fx=fx, fy=fy, cx=cx, cy=cy, dist=np.array(dist))


def h36m_cameras(subject: str) -> list[Camera]:
    """The four calibrated Human3.6M cameras of ``subject`` (metres, named by camera id),
    in the dataset's camera order (that of VideoPose3D's per-camera 2D lists)."""
    if subject not in H36M_EXTRINSICS:
        raise ValueError(f"no Human3.6M calibration for subject {subject!r}; known: {', '.join(H36M_SUBJECTS)}")
    cams = []
    for cam_id, (q, position_mm) in zip(H36M_CAMERA_IDS, H36M_EXTRINSICS[subject]):
        R, t = extrinsics_from_quaternion(q, np.asarray(position_mm) / 1000.0)
        cams.append(Camera(cam_id, R=R, t=t, **_h36m_intrinsics(cam_id)))
    return cams


#: A typical H36M intrinsic set (camera 54138969, no distortion), used for virtual cameras.
H36M_LIKE_INTRINSICS = {k: v for k, v in _h36m_intrinsics(H36M_CAMERA_IDS[0]).items() if k != "dist"}


def virtual_cameras(
    center: np.ndarray,
    num: int,
    rng: np.random.Generator,
    distance: tuple[float, float] = (4.0, 6.0),
    height: tuple[float, float] = (0.8, 2.2),
    azimuth_jitter_deg: float = 20.0,
    intrinsics: dict | None = None,
    up: np.ndarray = np.array([0.0, 0.0, 1.0]),
) -> list[Camera]:
    """H36M-like cameras on a ring around ``center`` (world, Z up), for 3D-only data.

    Azimuths are evenly spaced with a random phase and jitter; distance and height are drawn
    uniformly, so each sequence is seen from several plausible studio viewpoints.
    """
    intr = dict(H36M_LIKE_INTRINSICS if intrinsics is None else intrinsics)
    center = np.asarray(center, dtype=np.float64)
    phase = rng.uniform(0, 2 * np.pi)
    cams = []
    for i in range(num):
        az = phase + 2 * np.pi * i / num + np.deg2rad(rng.uniform(-azimuth_jitter_deg, azimuth_jitter_deg))
        d = rng.uniform(*distance)
        h = rng.uniform(*height)
        pos = center + np.array([d * np.cos(az), d * np.sin(az), 0.0]) + up * (h - float(center @ up))
        target = center.copy()
        R, t = look_at(pos, target, up)
        cams.append(Camera(f"virtual{i}", R=R, t=t, **intr))
    return cams
