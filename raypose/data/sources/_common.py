"""Checks and helpers every reader shares: loading, shape/finite validation, filtering, resampling.

Readers differ in layout, not in what counts as bad input, so the error wording lives here once:
every failure is a :class:`~raypose.errors.RayposeDataError` naming the file and the problem.

Missing data is data, not bad input: NaN/inf 2D keypoints are missing joints (confidence 0,
coordinates 0 — what inference does with a detector's NaN), and NaN/inf 3D joints stay NaN so
the clip cutter can mask them out of the loss (:mod:`raypose.data.clips`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from raypose.data.record import SequenceRecord
from raypose.errors import RayposeDataError
from raypose.skeleton import NUM_JOINTS, ROOT

#: A pelvis-relative joint farther than this (metres) means the file is not in metres.
MAX_BODY_EXTENT_M = 3.0


def require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise RayposeDataError(p, "file not found" if not p.exists() else "not a regular file")
    return p


def load_npz(path: str | Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """All arrays of an .npz (pickled dicts allowed: the VideoPose3D family stores dicts)."""
    p = require_file(path)
    try:
        with np.load(p, allow_pickle=True) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/pickle/format errors all mean "not this format"
        raise RayposeDataError(p, f"not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise RayposeDataError(
            p, f"missing key(s) {', '.join(map(repr, missing))}; found {sorted(data) or 'none'}")
    return data


def unwrap(value: Any) -> Any:
    """A 0-d object array (how np.savez stores a dict) → the object itself."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        return value.item()
    return value


def as_mapping(value: Any, path: Path | str, what: str) -> Mapping:
    value = unwrap(value)
    if not isinstance(value, Mapping):
        raise RayposeDataError(path, f"{what} must be a dict, got {type(value).__name__}")
    return value


def as_array(value: Any, path: Path | str, what: str) -> np.ndarray:
    """A numeric float array; object arrays of unequal rows are reported as ragged."""
    value = unwrap(value)
    try:
        arr = np.asarray(value)
        if arr.dtype == object:
            arr = np.asarray(arr.tolist(), dtype=np.float64)
    except (ValueError, TypeError):
        raise RayposeDataError(path, f"{what} is ragged (rows of different lengths)") from None
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise RayposeDataError(path, f"{what} has non-numeric dtype {arr.dtype}")
    return arr


def check_finite(arr: np.ndarray, path: Path | str, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise RayposeDataError(
            path, f"{what} contains NaN or inf ({int(bad.sum())} values, first at frame {frame})")


def as_poses(value: Any, path: Path | str, what: str, channels: Sequence[int] = (3,),
             joints: Sequence[int] = (NUM_JOINTS,), missing_ok: bool = False) -> np.ndarray:
    """Validate a (T, J, C) pose array: right rank, joint count, channels, ≥1 frame, and finite
    unless ``missing_ok`` (joint data, where NaN/inf marks a missing joint)."""
    arr = as_array(value, path, what)
    if arr.ndim != 3:
        raise RayposeDataError(
            path, f"{what} has shape {arr.shape}, expected (frames, {joints[0]}, {channels[0]})")
    if arr.shape[1] not in joints:
        raise RayposeDataError(
            path, f"{what} has {arr.shape[1]} joints, expected {' or '.join(map(str, joints))}")
    if arr.shape[2] not in channels:
        raise RayposeDataError(
            path, f"{what} has {arr.shape[2]} channels per joint, expected "
                  f"{' or '.join(map(str, channels))}")
    if arr.shape[0] == 0:
        raise RayposeDataError(path, f"{what} has no frames")
    if not missing_ok:
        check_finite(arr, path, what)
    return arr.astype(np.float32, copy=False)


def check_metres(positions: np.ndarray, path: Path | str, what: str) -> None:
    """Reject 3D that is obviously in millimetres (a person is not 3 m from their pelvis)."""
    with np.errstate(invalid="ignore"):  # inf − inf at a missing joint
        offsets = np.abs(positions - positions[:, ROOT:ROOT + 1])
    finite = offsets[np.isfinite(offsets)]  # missing joints (NaN) say nothing about units
    extent = float(finite.max()) if finite.size else 0.0
    if extent > MAX_BODY_EXTENT_M:
        raise RayposeDataError(
            path, f"{what} spans {extent:.1f} units around the pelvis; expected metres "
                  f"(is it in millimetres?)")


def with_confidence(kp: np.ndarray) -> np.ndarray:
    """(T, J, 2|3) → (T, J, 3); a missing confidence channel means every joint was detected.

    Joints with a NaN/inf coordinate or confidence are missing: confidence 0, coordinates 0 —
    the same reading inference gives a detector export that marks misses with NaN.
    """
    if kp.shape[-1] == 2:
        kp = np.concatenate([kp, np.ones(kp.shape[:-1] + (1,), kp.dtype)], -1)
    return mark_missing(kp.astype(np.float32))


def mark_missing(kp: np.ndarray) -> np.ndarray:
    """(…, 3) pixels + confidence with non-finite joints set to (0, 0, confidence 0)."""
    missing = ~np.isfinite(kp).all(-1)
    if not missing.any():
        return kp
    kp = kp.copy()
    kp[missing] = 0.0
    return kp


def select(available: Iterable[str], requested: Optional[Iterable[str]], path: Path | str,
           what: str = "subject", prefix: bool = False) -> list[str]:
    """Keys of ``available`` named by ``requested`` (all when None); unknown names are errors.

    With ``prefix``, a request also matches keys starting with it (VideoPose3D action filters:
    'Walking' selects 'Walking' and 'Walking 1').
    """
    available = list(available)
    if requested is None:
        return available
    chosen: list[str] = []
    for name in requested:
        hits = [k for k in available if k == name or (prefix and str(k).startswith(name))]
        if not hits:
            raise RayposeDataError(
                path, f"unknown {what} {name!r}; available: {', '.join(map(str, available))}")
        chosen += [k for k in hits if k not in chosen]
    return [k for k in available if k in chosen]


# --------------------------------------------------------------------------------------------
# Resampling in time
# --------------------------------------------------------------------------------------------

def resample_plan(num_frames: int, fps: float, target_fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source neighbours (i0, i1) and weight w of each output frame at ``target_fps``.

    Output frame k sits at time k / target_fps and covers the source's duration
    (num_frames - 1) / fps, so 100 → 50 fps keeps frames 0, 2, 4, … exactly.
    """
    duration = (num_frames - 1) / fps
    n = int(np.floor(duration * target_fps + 1e-6)) + 1
    pos = np.minimum(np.arange(n) * (fps / target_fps), num_frames - 1)
    i0 = np.floor(pos + 1e-9).astype(np.int64)
    i0 = np.minimum(i0, num_frames - 1)
    i1 = np.minimum(i0 + 1, num_frames - 1)
    w = np.clip(pos - i0, 0.0, 1.0)
    w[w < 1e-6] = 0.0
    return i0, i1, w


def _lerp(x: np.ndarray, i0: np.ndarray, i1: np.ndarray, w: np.ndarray) -> np.ndarray:
    ww = w.reshape((-1,) + (1,) * (x.ndim - 1))
    return (x[i0] * (1 - ww) + x[i1] * ww).astype(x.dtype)


def resample_keypoints(kp: np.ndarray, plan) -> np.ndarray:
    """Linear in position; confidence of an in-between frame is the lower of its neighbours."""
    i0, i1, w = plan
    out = _lerp(kp, i0, i1, w)
    between = (w > 0)[:, None]
    out[..., 2] = np.where(between, np.minimum(kp[i0, :, 2], kp[i1, :, 2]), kp[i0, :, 2])
    return out


def resample_record(rec: SequenceRecord, target_fps: float) -> SequenceRecord:
    """The record at ``target_fps`` (linear interpolation); unchanged when the rate matches,
    when ``target_fps`` is 0, or for stills (one frame)."""
    if target_fps <= 0 or rec.num_frames <= 1 or rec.fps <= 0 or abs(rec.fps - target_fps) < 1e-6:
        return rec
    plan = resample_plan(rec.num_frames, rec.fps, target_fps)
    i0, i1, w = plan
    positions = None if rec.positions_3d is None else _lerp(rec.positions_3d, *plan)
    keypoints = None if rec.keypoints_2d is None else [resample_keypoints(k, plan) for k in rec.keypoints_2d]
    valid = None
    if rec.valid is not None:
        valid = np.where(w > 0, rec.valid[i0] & rec.valid[i1], rec.valid[i0])
    return dataclasses.replace(rec, fps=float(target_fps), positions_3d=positions,
                               keypoints_2d=keypoints, valid=valid)
