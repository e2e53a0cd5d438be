"""Write small files in exactly the formats raypose's readers accept (for tests of any area).

Every writer takes plain numpy arrays and lays them out the way the real datasets do (dicts
pickled inside .npz, COCO JSON objects, …), so a test can build a dataset in ``tmp_path`` and
read it back through the real reader. :func:`pose_sequence` makes plausible H36M-17 motion.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from raypose.skeleton import MPI3DHP17_TO_H36M_INDEX

#: A standing person, H36M-17 order, metres, world Z up, facing -y, pelvis at 0.9 m.
STANDING_POSE = np.array([
    [0.00, 0.00, 0.90],   # pelvis
    [-0.12, 0.00, 0.90], [-0.13, 0.00, 0.48], [-0.13, 0.02, 0.06],   # right leg
    [0.12, 0.00, 0.90], [0.13, 0.00, 0.48], [0.13, 0.02, 0.06],      # left leg
    [0.00, 0.00, 1.15], [0.00, 0.00, 1.40], [0.00, -0.05, 1.50], [0.00, 0.00, 1.62],  # spine..head
    [0.18, 0.00, 1.38], [0.20, 0.00, 1.10], [0.21, -0.02, 0.85],     # left arm
    [-0.18, 0.00, 1.38], [-0.20, 0.00, 1.10], [-0.21, -0.02, 0.85],  # right arm
], dtype=np.float32)


def pose_sequence(num_frames: int, fps: float = 50.0, seed: int = 0,
                  origin: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """(T, 17, 3) metres: the standing pose walking slowly along x with swinging limbs."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float64)[:, None] / fps
    pose = np.repeat(STANDING_POSE[None].astype(np.float64), num_frames, 0)
    pose[..., 0] += 0.8 * t + np.asarray(origin)[0]
    pose[..., 1] += np.asarray(origin)[1]
    pose[..., 2] += np.asarray(origin)[2]
    swing = 0.15 * np.sin(2 * np.pi * 1.2 * t + rng.uniform(0, np.pi))
    for j, sign in ((2, 1), (3, 1), (5, -1), (6, -1), (12, 1), (13, 1), (15, -1), (16, -1)):
        pose[:, j, 1] += sign * swing[:, 0]
    return pose.astype(np.float32)


def _save(path: str | Path, **arrays: Any) -> Path:
    """np.savez with dicts stored as pickled 0-d object arrays, like VideoPose3D does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: (np.array(v, dtype=object) if isinstance(v, (dict, list)) else v)
                      for k, v in arrays.items()})
    return path


def _plain(tree: Mapping) -> dict:
    """Nested mappings as plain dicts; anything else (even malformed on purpose) as given."""
    return {k: (_plain(v) if isinstance(v, Mapping) else v) for k, v in tree.items()}


def write_videopose3d_3d(path: str | Path, positions: Mapping[str, Mapping[str, np.ndarray]],
                         fps: Optional[Mapping[str, Mapping[str, float]]] = None,
                         metadata: Optional[dict] = None) -> Path:
    """``positions_3d[subject][action]`` (T, J, 3); with ``fps`` also the mocap ``fps`` dict
    (the layout of ``mocap_h36m17.npz``); ``metadata`` is stored when given."""
    arrays: dict[str, Any] = {"positions_3d": _plain(positions)}
    if fps is not None:
        arrays["fps"] = _plain(fps)
    if metadata is not None:
        arrays["metadata"] = metadata
    return _save(path, **arrays)


def write_videopose3d_2d(path: str | Path,
                         keypoints: Mapping[str, Mapping[str, Sequence[np.ndarray]]],
                         layout_name: str = "h36m", num_joints: int = 17) -> Path:
    """``positions_2d[subject][action]`` = list of per-camera (T, 17, 2|3) pixels + ``metadata``."""
    symmetry = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]] if layout_name == "h36m" else \
        [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]]
    meta = {"layout_name": layout_name, "num_joints": num_joints, "keypoints_symmetry": symmetry}
    tree = {s: {a: list(cams) for a, cams in acts.items()} for s, acts in keypoints.items()}
    return _save(path, positions_2d=tree, metadata=meta)


def write_amass_joints(path: str | Path, joints: np.ndarray, fps: float,
                       key: str = "joints", fps_key: str = "mocap_framerate", **extra: Any) -> Path:
    """One AMASS sequence reduced to H36M-17: (T, 17, 3) metres under ``key`` + its frame rate."""
    return _save(path, **{key: np.asarray(joints), fps_key: np.asarray(fps, dtype=np.float64)}, **extra)


def write_coco_json(path: str | Path, images: Sequence[Mapping[str, Any]],
                    annotations: Sequence[Mapping[str, Any]]) -> Path:
    """COCO person-keypoints JSON. ``images``: dicts with id, width, height. ``annotations``:
    dicts with id, image_id and ``keypoints`` as a (17, 3) array (x, y, v); num_keypoints and
    bbox are derived unless given."""
    anns = []
    for a in annotations:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(17, 3)
        vis = kp[:, 2] > 0
        xs, ys = kp[vis, 0], kp[vis, 1]
        bbox = [float(xs.min()), float(ys.min()), float(np.ptp(xs)), float(np.ptp(ys))] if vis.any() else [0, 0, 0, 0]
        ann = {"id": a["id"], "image_id": a["image_id"], "category_id": 1, "iscrowd": 0,
               "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(kp.reshape(-1))],
               "num_keypoints": int(vis.sum()), "bbox": bbox, "area": bbox[2] * bbox[3]}
        ann.update({k: v for k, v in a.items() if k != "keypoints"})
        anns.append(ann)
    doc = {
        "info": {"description": "raypose test"},
        "images": [{"file_name": f"{int(i['id']):012d}.jpg", **i} for i in images],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear",
                                      "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                                      "left_wrist", "right_wrist", "left_hip", "right_hip",
                                      "left_knee", "right_knee", "left_ankle", "right_ankle"],
                        "skeleton": []}],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def write_pseudo_labels(path: str | Path, labels: Mapping[Any, np.ndarray]) -> Path:
    """Per-annotation (17, 3) camera-frame metres: .npz (key = str(id)) or .json by suffix."""
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(json.dumps({str(k): np.asarray(v).tolist() for k, v in labels.items()}))
        return path
    return _save(path, **{str(k): np.asarray(v) for k, v in labels.items()})


def h36m_to_3dhp_order(points: np.ndarray) -> np.ndarray:
    """(…, 17, C) H36M-17 → 3DHP's 17-joint test order (the inverse of the reader's remap)."""
    out = np.empty_like(points)
    out[..., list(MPI3DHP17_TO_H36M_INDEX), :] = points
    return out


def write_3dhp_npz(path: str | Path, sequences: Mapping[str, Mapping[Any, Any]], test: bool = False) -> Path:
    """P-STMO layout. Train (``test=False``): ``{"S1 Seq1": {camera: {"data_3d", "data_2d"}}}``,
    written as ``data[seq] = [ {camera: …} ]``. Test: ``{"TS1": {"data_3d", "data_2d", "valid"}}``.
    ``data_3d`` is camera-frame millimetres, ``data_2d`` pixels, both in 3DHP joint order."""
    if test:
        data = {seq: dict(v) for seq, v in sequences.items()}
    else:
        data = {seq: [dict(cams)] for seq, cams in sequences.items()}
    return _save(path, data=data)


def read_position_bvh(path: Path) -> tuple[list[str], list[int], np.ndarray]:
    """Joint names, parents and per-frame world positions of a BVH whose joints carry
    translation channels only (what raypose writes), read back independently of raypose."""
    names: list[str] = []
    parents: list[int] = []
    stack: list = []
    lines = Path(path).read_text().splitlines()
    i = 0
    while lines[i].strip() != "MOTION":
        tok = lines[i].split()
        if tok and tok[0] in ("ROOT", "JOINT"):
            names.append(tok[1])
            parents.append(stack[-1] if stack else -1)
            stack.append(len(names) - 1)
        elif tok and tok[0] == "End":
            stack.append(None)
        elif tok and tok[0] == "}":
            stack.pop()
        i += 1
    motion = np.array([[float(v) for v in line.split()] for line in lines[i + 3:] if line.strip()])
    local = motion.reshape(len(motion), len(names), 3)
    world = np.zeros_like(local)
    for j, p in enumerate(parents):
        world[:, j] = local[:, j] + (world[:, p] if p >= 0 else 0)
    return names, parents, world
