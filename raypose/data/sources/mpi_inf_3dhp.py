"""MPI-INF-3DHP in the npz layout of the P-STMO / APTPose line of work.

- train ``data_train_3dhp.npz``: ``data`` = {"S1 Seq1": [ {camera: {"data_3d", "data_2d"}} ], …}
  (each sequence holds a one-element list around its camera dict; a bare dict is accepted too).
- test ``data_test_3dhp.npz``: ``data`` = {"TS1" … "TS6": {"data_3d", "data_2d", "valid"}}.

``data_3d`` is (T, 17, 3) camera-frame **millimetres** (converted to metres here), ``data_2d``
(T, 17, 2) pixels, both in 3DHP's 17-joint test order (head top, neck, shoulders … pelvis = 14,
spine, head), remapped to H36M-17. ``valid`` marks test frames with ground truth. Images are
2048×2048 (training cameras, TS1–TS4) and 1920×1080 (TS5–TS6, outdoors). Frame rates: 25 fps
except TS5–TS6 at 50 fps.

Intrinsics are not in these files: each sequence's focal lengths and principal point are fitted
by least squares to its own 3D↔2D pairs (u = fx·X/Z + cx), falling back to the image centre and
a focal length of 1500 px when the fit is degenerate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from raypose import skeleton
from raypose.cameras import Camera
from raypose.data.record import SequenceRecord
from raypose.data.sources._common import (as_array, as_mapping, as_poses, load_npz,
                                          resample_record, select, unwrap, with_confidence)
from raypose.errors import RayposeDataError

TRAIN_FILE = "data_train_3dhp.npz"
TEST_FILE = "data_test_3dhp.npz"
TEST_SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
OUTDOOR = ("TS5", "TS6")
ROOT_3DHP = 14


def image_size(sequence: str) -> tuple[int, int]:
    return (1920, 1080) if sequence in OUTDOOR else (2048, 2048)


def frame_rate(sequence: str) -> float:
    return 50.0 if sequence in OUTDOOR else 25.0


def fit_camera(name: str, pos_3d: np.ndarray, kp_2d: np.ndarray, width: int, height: int) -> Camera:
    """Pinhole intrinsics that best reproject camera-frame ``pos_3d`` onto ``kp_2d``."""
    fallback = dict(fx=1500.0, fy=1500.0, cx=width / 2.0, cy=height / 2.0)
    X = pos_3d.reshape(-1, 3).astype(np.float64)
    uv = kp_2d[..., :2].reshape(-1, 2).astype(np.float64)
    ok = X[:, 2] > 1e-3
    fit = dict(fallback)
    if ok.sum() >= 4:
        for axis, (f, c) in enumerate((("fx", "cx"), ("fy", "cy"))):
            a = np.stack([X[ok, axis] / X[ok, 2], np.ones(ok.sum())], 1)
            sol, *_ = np.linalg.lstsq(a, uv[ok, axis], rcond=None)
            fit[f], fit[c] = float(sol[0]), float(sol[1])
    plausible = (100 < fit["fx"] < 10000 and 100 < fit["fy"] < 10000
                 and -width < fit["cx"] < 2 * width and -height < fit["cy"] < 2 * height)
    return Camera(name, width, height, **(fit if plausible else fallback))


def _clip(path: Path, anim: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, 17, 3) metres H36M order, (T, 17, 3) pixels+confidence H36M order."""
    anim = as_mapping(anim, path, what)
    for key in ("data_3d", "data_2d"):
        if key not in anim:
            raise RayposeDataError(path, f"{what} has no {key!r}; found {sorted(anim)}")
    pos = as_poses(anim["data_3d"], path, f"{what}['data_3d']", missing_ok=True) / 1000.0
    kp = with_confidence(as_poses(anim["data_2d"], path, f"{what}['data_2d']", channels=(2, 3), missing_ok=True))
    if pos.shape[0] != kp.shape[0]:
        raise RayposeDataError(path, f"{what} has {pos.shape[0]} 3D frames but {kp.shape[0]} 2D frames")
    with np.errstate(invalid="ignore"):  # inf − inf at a missing joint
        offsets = np.abs(pos - pos[:, ROOT_3DHP:ROOT_3DHP + 1])
    extent = float(np.nanmax(offsets, initial=0.0, where=np.isfinite(offsets)))
    if not 0.1 < extent < 3.0:  # a person spans roughly 300–1500 mm around the pelvis
        raise RayposeDataError(path, f"{what}['data_3d'] spans {extent * 1000:.4g} units around the "
                                     f"pelvis; expected millimetres")
    pos = skeleton.to_h36m(pos.astype(np.float32), "mpi_inf_3dhp17")
    xy = skeleton.to_h36m(kp[..., :2], "mpi_inf_3dhp17")
    conf = skeleton.MPI3DHP17_TO_H36M.apply_confidence(kp[..., 2])
    return pos, np.concatenate([xy, conf[..., None]], -1).astype(np.float32)


def _record(path: Path, subject: str, action: str, camera_name: str, seq_for_size: str,
            pos: np.ndarray, kp: np.ndarray, valid: Optional[np.ndarray]) -> SequenceRecord:
    w, h = image_size(seq_for_size)
    cam = fit_camera(camera_name, pos, kp, w, h)
    return SequenceRecord("mpi_inf_3dhp", subject, action, frame_rate(seq_for_size), positions_3d=pos,
                          keypoints_2d=[kp], cameras=[cam], frame_3d="camera", valid=valid,
                          source_path=str(path))


def is_test_layout(data: dict) -> bool:
    first = unwrap(next(iter(data.values())))
    return isinstance(first, dict) and "data_3d" in first


def read_file(path: Path, subjects: Optional[Sequence[str]], strict: bool = True) -> list[SequenceRecord]:
    """Records of one file; with ``strict`` a requested subject the file lacks is an error."""
    data = as_mapping(load_npz(path, required=("data",))["data"], path, "data")
    if not data:
        raise RayposeDataError(path, "'data' is empty")
    test = is_test_layout(data)
    subject_of = {seq: (seq if test else str(seq).split()[0]) for seq in data}
    available = sorted(set(subject_of.values()))
    if subjects is not None and not strict:
        subjects = [s for s in subjects if s in available]
    wanted = set(select(available, subjects, path, "subject"))
    records = []
    for seq, value in data.items():
        if subject_of[seq] not in wanted:
            continue
        if test:
            anim = as_mapping(value, path, f"data[{seq!r}]")
            if "valid" not in anim:
                raise RayposeDataError(path, f"data[{seq!r}] has no 'valid'; found {sorted(anim)}")
            pos, kp = _clip(path, anim, f"data[{seq!r}]")
            valid = as_array(anim["valid"], path, f"data[{seq!r}]['valid']").reshape(-1)
            if valid.shape[0] != pos.shape[0]:
                raise RayposeDataError(path, f"data[{seq!r}]['valid'] has {valid.shape[0]} frames, "
                                             f"expected {pos.shape[0]}")
            records.append(_record(path, seq, seq, "cam0", seq, pos, kp, valid.astype(bool)))
            continue
        value = unwrap(value)
        if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 1:
            value = value[0]
        cams = as_mapping(value, path, f"data[{seq!r}][0]")
        parts = str(seq).split()
        action = parts[1] if len(parts) > 1 else str(seq)
        for cam, anim in cams.items():
            pos, kp = _clip(path, anim, f"data[{seq!r}][0][{cam!r}]")
            records.append(_record(path, parts[0], f"{action}.cam{cam}", f"cam{cam}", "train",
                                   pos, kp, None))
    return records


def read_mpi_inf_3dhp(
    path: str | Path,
    target_fps: float = 0.0,
    subjects: Optional[Sequence[str]] = None,
) -> list[SequenceRecord]:
    """Camera-frame records with one camera each: (subject, 'SeqN.camC') for training
    sequences, (TSn, TSn) with ``valid`` for the test set.

    ``path`` is one of the two files, or a folder holding either or both.
    """
    path = Path(path)
    if path.is_dir():
        files = [path / n for n in (TRAIN_FILE, TEST_FILE) if (path / n).is_file()]
        if not files:
            raise RayposeDataError(path, f"folder holds neither {TRAIN_FILE} nor {TEST_FILE}")
    else:
        files = [path]
    records: list[SequenceRecord] = []
    for f in files:
        records += read_file(f, subjects, strict=len(files) == 1)
    if subjects is not None and len(files) > 1:
        missing = [s for s in subjects if s not in {r.subject for r in records}]
        if missing:
            raise RayposeDataError(path, f"unknown subject(s) {', '.join(map(repr, missing))}")
    return [resample_record(r, target_fps) for r in records]

