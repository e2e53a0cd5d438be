"""The virtual camera rig: how 3D-only motion (mocap, AMASS, BVH) is seen as 2D for training.

A lifter learns the 2D a camera would see, so the rig decides what it can handle at test time.
Three measured facts shaped it (issue "Lifters that learn"):

* a camera aimed at a sequence's *mean* pelvis loses a subject who travels (climb_b moves 4 m:
  6.8 % of its frames had a joint outside the image and a single-frame MLP scored 990 mm there,
  145 mm with cameras that follow) — so by default cameras **follow the subject's horizontal
  travel** (the smoothed pelvis track, a camera operator's pan), keeping their orientation;
* real footage comes from every side, height, distance, lens and image shape — so each camera
  draws its azimuth (full circle), height above the floor, distance, field of view, image size
  and principal point from the ranges in :class:`raypose.config.RigConfig`;
* a camera that still leaves joints outside the image for more than ``max_out_of_frame`` of the
  frames is moved back (×1.25 distance) until the subject fits, so no training 2D is off-screen.

Following cameras translate with the subject but never rotate, so the root-relative 3D targets
are those of a static camera; only the 2D (and the camera-space trajectory) changes. The stored
:class:`~raypose.cameras.Camera` of such a view holds the extrinsics of frame 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypose.cameras import Camera, look_at, project
from raypose.config import RigConfig
from raypose.errors import RayposeDataError
from raypose.skeleton import ROOT

UP = np.array([0.0, 0.0, 1.0])
#: Distance growth per attempt when the subject does not fit in the image.
BACK_OFF = 1.25
MAX_ATTEMPTS = 12


@dataclass
class RigView:
    """One virtual camera's view of a world-frame sequence."""

    camera: Camera                 # intrinsics + the extrinsics of frame 0
    positions_cam: np.ndarray      # (T, 17, 3) camera-frame metres (per-frame camera position)
    out_of_frame: float            # fraction of frames with a joint outside the image


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding (window ≤ 1: unchanged)."""
    if window <= 1 or x.shape[0] <= 1:
        return x.astype(np.float64)
    half = window // 2
    padded = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)]).astype(np.float64)
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), padded]), axis=0)
    return (c[2 * half + 1:] - c[:-2 * half - 1]) / (2 * half + 1)


def followed_track(pelvis: np.ndarray, fps: float, rig: RigConfig) -> np.ndarray:
    """(T, 3) the world point the cameras travel with: the (smoothed) pelvis, horizontally.

    Only x/y move (the camera follows horizontal travel); z is the sequence's mean pelvis
    height. ``rig.follow = False`` gives the mean pelvis for every frame (a static camera).
    """
    p = np.asarray(pelvis, dtype=np.float64)
    if not rig.follow:
        return np.repeat(p.mean(0, keepdims=True), p.shape[0], 0)
    window = int(round(rig.follow_smoothing_s * fps)) | 1 if rig.follow_smoothing_s > 0 else 1
    track = moving_average(p, window)
    track[:, 2] = p[:, 2].mean()
    return track


def floor_height(positions: np.ndarray) -> float:
    """The floor under a sequence: the 1st percentile of its lowest joint per frame (metres)."""
    return float(np.percentile(np.asarray(positions)[..., 2].min(-1), 1))


def draw_intrinsics(rig: RigConfig, rng: np.random.Generator) -> dict:
    """Image size, focal length and principal point of one camera."""
    w, h = rig.image_sizes[int(rng.integers(len(rig.image_sizes)))]
    if rig.focal > 0:
        f = float(rig.focal)
    else:
        fov = np.deg2rad(rng.uniform(*rig.fov_deg))
        f = max(w, h) / (2 * np.tan(fov / 2))  # the field of view spans the long side
    if rig.principal_point:
        cx, cy = rig.principal_point
    else:
        cx, cy = np.array([w, h]) / 2 + rng.uniform(-1, 1, 2) * rig.principal_jitter * w
    return dict(width=int(w), height=int(h), fx=f, fy=f, cx=float(cx), cy=float(cy))


def out_of_frame_fraction(pixels: np.ndarray, depth: np.ndarray, width: int, height: int) -> float:
    """Fraction of frames with any joint behind the camera or outside the image."""
    inside = ((pixels[..., 0] >= 0) & (pixels[..., 0] < width) & (pixels[..., 1] >= 0)
              & (pixels[..., 1] < height) & (depth > 0.1))
    return float((~inside.all(-1)).mean())


def rig_views(positions: np.ndarray, fps: float, num: int, rig: RigConfig,
              rng: np.random.Generator, name: str = "") -> list[RigView]:
    """``num`` virtual cameras around a world-frame (T, 17, 3) sequence (Z up), per ``rig``."""
    pos = np.asarray(positions, dtype=np.float64)
    track = followed_track(pos[:, ROOT], fps, rig)
    floor = floor_height(pos)
    phase = rng.uniform(0, 2 * np.pi)
    views = []
    for i in range(num):
        if rig.azimuths:
            az = float(rig.azimuths[i % len(rig.azimuths)])
        else:
            az = phase + 2 * np.pi * i / num
        az += np.deg2rad(rng.uniform(-rig.azimuth_jitter_deg, rig.azimuth_jitter_deg))
        d = rng.uniform(*rig.distance)
        cam_z = floor + rng.uniform(*rig.height)
        aim_z = cam_z if rig.look == "horizontal" else track[0, 2] + rng.uniform(-1, 1) * rig.aim_jitter
        intr = draw_intrinsics(rig, rng)
        for _ in range(MAX_ATTEMPTS):
            direction = np.array([np.cos(az), np.sin(az), 0.0])
            centres = track + d * direction
            centres[:, 2] = cam_z
            target = track[0].copy()
            target[2] = aim_z
            R, _ = look_at(centres[0], target, UP)
            cam_pos = (pos - centres[:, None]) @ R.T                    # per-frame translation
            pixels = project(cam_pos, [intr["fx"], intr["fy"], intr["cx"], intr["cy"]], distort=False)
            out = out_of_frame_fraction(pixels, cam_pos[..., 2], intr["width"], intr["height"])
            if out <= rig.max_out_of_frame:
                break
            d *= BACK_OFF
        else:
            raise RayposeDataError(name or "rig", f"no camera of the rig keeps the subject in a "
                                   f"{intr['width']}x{intr['height']} image ({out:.1%} of frames "
                                   f"out of frame at {d:.1f} m): check the data's units and up axis")
        camera = Camera(f"virtual{i}", R=R, t=-R @ centres[0], **intr)
        views.append(RigView(camera, cam_pos.astype(np.float32), out))
    return views
