"""COCO person keypoints (JSON) → one still record (T = 1) per annotated person.

``images``: ``id``, ``width``, ``height``; ``annotations``: ``id``, ``image_id``,
``keypoints`` = [x, y, v] × 17 in COCO order, ``num_keypoints``, ``bbox``. Annotations with no
labelled keypoint are skipped. Keypoints are mapped COCO-17 → H36M-17; a joint's confidence is
1 where COCO's visibility flag v > 0, and a derived joint (pelvis, spine, …) is only as
confident as its least confident source.

COCO has no calibration: each record gets a pinhole camera at the image centre with focal
length max(width, height) (≈ 53° field of view), which is what the image size supports.

Optional 3D pseudo-labels: an ``.npz`` (one array per annotation id, key = str(id)) or a
``.json`` ({"<id>": [[x, y, z] × 17]}) of camera-frame metres in H36M-17 order. Annotations
with a label get ``positions_3d`` with ``frame_3d='camera'``; the others are 2D-only.

subject = the JSON file's stem (e.g. 'person_keypoints_train2017'), action = 'ann<id>'.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from raypose import skeleton
from raypose.cameras import Camera
from raypose.data.record import SequenceRecord
from raypose.data.sources._common import (as_array, as_poses, check_metres, load_npz,
                                          mark_missing, require_file, select)
from raypose.errors import RayposeDataError

NUM_COCO_KEYPOINTS = 17


def load_json(path: Path) -> Any:
    require_file(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RayposeDataError(path, f"not valid JSON ({e})") from None


def image_camera(image_id: Any, width: float, height: float) -> Camera:
    f = float(max(width, height))
    return Camera(f"image{image_id}", int(width), int(height), f, f, width / 2.0, height / 2.0)


def coco_to_h36m(keypoints: np.ndarray) -> np.ndarray:
    """(…, 17, 3) COCO x, y, v → (…, 17, 3) H36M x, y, confidence (undetected joints at 0, 0)."""
    conf = (keypoints[..., 2] > 0).astype(np.float32)
    xy = skeleton.to_h36m(keypoints[..., :2].astype(np.float32) * conf[..., None], "coco17")
    conf_h36m = skeleton.COCO17_TO_H36M.apply_confidence(conf)
    return np.concatenate([xy * conf_h36m[..., None], conf_h36m[..., None]], -1).astype(np.float32)


def load_pseudo_labels(path: Path) -> dict[str, np.ndarray]:
    """Annotation id (str) → (17, 3) camera-frame metres."""
    if path.suffix == ".json":
        raw = load_json(path)
        if not isinstance(raw, dict):
            raise RayposeDataError(path, "pseudo-label JSON must map annotation id → 17×3 list")
    else:
        raw = load_npz(path)
    labels = {}
    for key, value in raw.items():
        what = f"pseudo-label {key!r}"
        arr = as_array(value, path, what)
        if arr.shape != (skeleton.NUM_JOINTS, 3):
            raise RayposeDataError(path, f"{what} has shape {arr.shape}, expected (17, 3)")
        pose = as_poses(arr[None], path, what, missing_ok=True)
        check_metres(pose, path, what)
        labels[str(key)] = pose
    return labels


def _field(ann: dict, key: str, path: Path, index: int) -> Any:
    if key not in ann:
        raise RayposeDataError(path, f"annotations[{index}] has no {key!r}")
    return ann[key]


def read_coco(
    path: str | Path,
    target_fps: float = 0.0,
    subjects: Optional[Sequence[str]] = None,
    pseudo_labels: Optional[str | Path] = None,
    min_keypoints: int = 1,
) -> list[SequenceRecord]:
    """One still per annotation with at least ``min_keypoints`` labelled keypoints.

    Stills have no frame rate: ``fps`` is ``target_fps`` (0 when none is given).
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise RayposeDataError(path, "expected a COCO JSON object with 'images' and 'annotations'")
    subject = path.stem
    select([subject], subjects, path, "subject")
    images = {}
    for i, img in enumerate(doc["images"]):
        if not isinstance(img, dict) or not {"id", "width", "height"} <= set(img):
            raise RayposeDataError(path, f"images[{i}] needs 'id', 'width' and 'height'")
        images[img["id"]] = img
    labels = load_pseudo_labels(Path(pseudo_labels)) if pseudo_labels else {}
    records, used_labels = [], 0
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            raise RayposeDataError(path, f"annotations[{i}] is not an object")
        if ann.get("iscrowd", 0):
            continue
        kp = as_array(_field(ann, "keypoints", path, i), path, f"annotations[{i}].keypoints")
        if kp.size != 3 * NUM_COCO_KEYPOINTS:
            raise RayposeDataError(path, f"annotations[{i}].keypoints has {kp.size} values, expected "
                                         f"{3 * NUM_COCO_KEYPOINTS} (x, y, v for 17 joints)")
        kp = mark_missing(as_poses(kp.reshape(1, NUM_COCO_KEYPOINTS, 3), path, f"annotations[{i}].keypoints",
                                   missing_ok=True))
        if int(ann.get("num_keypoints", int((kp[..., 2] > 0).sum()))) < min_keypoints:
            continue
        image_id = _field(ann, "image_id", path, i)
        if image_id not in images:
            raise RayposeDataError(path, f"annotations[{i}] refers to unknown image_id {image_id!r}")
        img = images[image_id]
        ann_id = _field(ann, "id", path, i)
        pose_3d = labels.get(str(ann_id))
        used_labels += pose_3d is not None
        records.append(SequenceRecord(
            "coco", subject, f"ann{ann_id}", float(target_fps), positions_3d=pose_3d,
            keypoints_2d=[coco_to_h36m(kp)], cameras=[image_camera(image_id, img["width"], img["height"])],
            frame_3d="camera", source_path=str(path)))
    if labels and not used_labels:
        raise RayposeDataError(pseudo_labels, f"no pseudo-label matches an annotation id of {path.name}")
    return records
