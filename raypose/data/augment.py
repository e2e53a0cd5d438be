"""APTPose's noising pipeline: a still image's pose → a short, plausible 2D "sequence".

APTPose (§ pre-training data) duplicates each COCO image into the frames a sequence model
needs and adds random noise and jitter to the pose annotation; the exact magnitudes are in
its supplementary material, which we do not have. Our choice, in units of the person's
2D scale s (diagonal of the visible keypoints' bounding box), so it is resolution-free:

* a smooth whole-body drift: a Gaussian random walk of the pose centre with step
  ``jitter · s`` per frame (camera shake / tracking jitter, temporally correlated);
* independent per-joint, per-frame Gaussian noise with std ``noise · s`` (detector noise).

Undetected joints (confidence 0) stay undetected with their coordinates untouched;
confidences are kept. 3D pseudo-labels, when the still has them, are replicated unchanged:
the person does not move, only the 2D observation is perturbed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from raypose.data.record import SequenceRecord


@dataclass
class StillNoise:
    #: Frames each still is replicated into (≥ the clip length used for training).
    num_frames: int = 27
    #: Random-walk step of the whole pose per frame, as a fraction of the person's scale.
    jitter: float = 0.005
    #: Per-joint Gaussian noise std, as a fraction of the person's scale.
    noise: float = 0.01

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.jitter < 0 or self.noise < 0:
            raise ValueError(f"invalid still-noise parameters {self}")


def person_scale(keypoints: np.ndarray) -> float:
    """Diagonal of the bounding box of the detected joints (pixels); 1 if none detected."""
    seen = keypoints[..., 2] > 0
    if not seen.any():
        return 1.0
    xy = keypoints[seen][:, :2]
    return float(max(np.linalg.norm(xy.max(0) - xy.min(0)), 1.0))


def noise_still(keypoints: np.ndarray, params: StillNoise, rng: np.random.Generator) -> np.ndarray:
    """(17, 3) pixels + confidence → (num_frames, 17, 3) jittered, noisy copies."""
    kp = np.asarray(keypoints, dtype=np.float32)
    T = params.num_frames
    s = person_scale(kp)
    drift = np.cumsum(rng.normal(0.0, params.jitter * s, size=(T, 1, 2)), axis=0)
    drift -= drift.mean(axis=0, keepdims=True)  # keep the sequence centred on the annotation
    jitter = rng.normal(0.0, params.noise * s, size=(T, kp.shape[0], 2))
    out = np.repeat(kp[None], T, axis=0)
    seen = kp[:, 2] > 0
    out[:, seen, :2] += (drift + jitter)[:, seen].astype(np.float32)
    return out


def still_to_sequence(record: SequenceRecord, params: StillNoise, rng: np.random.Generator) -> SequenceRecord:
    """A one-frame record (COCO still) → a ``params.num_frames`` record, per the noising pipeline.

    Records that already have more than one frame are returned unchanged.
    """
    if record.num_frames != 1:
        return record
    T = params.num_frames
    kps = None if record.keypoints_2d is None else [noise_still(k[0], params, rng) for k in record.keypoints_2d]
    pos = None if record.positions_3d is None else np.repeat(record.positions_3d[:1], T, axis=0)
    valid = None if record.valid is None else np.repeat(np.asarray(record.valid)[:1], T)
    return dataclasses.replace(record, keypoints_2d=kps, positions_3d=pos, valid=valid)
