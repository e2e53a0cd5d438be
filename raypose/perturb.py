"""Corrupt 2D inputs the way detectors do, to measure how a lifter copes (robustness studies).

Two protocols from the papers:

- **Gaussian noise** on every detected coordinate, σ in *normalised screen units* (the
  ``X/w*2 - [1, h/w]`` space the models see, as P-STMO's table 8: GT + N(0, σ)); σ = 0.01 is
  about 5 px on a 1000-px-wide image.
- **Occlusion** of whole joints or body parts for a whole sequence (MPM's table 3: 1 joint,
  2 joints, 2 legs, 2 arms, left side, right side). Occluded joints get confidence 0, so the
  lifter sees them as *missing* (its mask token), never as zeros.

Both act on the chunk dicts of :mod:`raypose.data.pipeline` (``keypoints_2d`` pixels +
confidence, ``camera`` with the image width first) and return new arrays; draws come from a
seeded numpy generator so every model sees the same corrupted input.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from raypose import skeleton

#: Fixed body-part occlusions (H36M-17 joint indices).
OCCLUSION_PARTS: dict[str, tuple[int, ...]] = {
    "2 legs": tuple(j for limb in skeleton.LIMBS[:2] for j in limb),
    "2 arms": tuple(j for limb in skeleton.LIMBS[2:] for j in limb),
    "left side": skeleton.LEFT_JOINTS,
    "right side": skeleton.RIGHT_JOINTS,
}
#: Random occlusions: this many joints (never the pelvis, the root all 3D is relative to).
OCCLUSION_RANDOM: dict[str, int] = {"1 joint": 1, "2 joints": 2}
OCCLUSIONS: tuple[str, ...] = tuple(OCCLUSION_RANDOM) + tuple(OCCLUSION_PARTS)


def add_noise(chunks: Mapping[str, np.ndarray], sigma: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Gaussian noise of ``sigma`` (normalised units) on every detected 2D joint.

    In pixels that is ``sigma * w / 2`` per axis (``w`` = the chunk's image width), since the
    normalisation maps the image width to 2.
    """
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    out = dict(chunks)
    kp = np.array(chunks["keypoints_2d"], dtype=np.float32, copy=True)
    if sigma > 0:
        rng = np.random.default_rng(seed)
        width = np.asarray(chunks["camera"])[:, 0].astype(np.float32)
        scale = (sigma * width / 2.0).reshape(-1, *([1] * (kp.ndim - 1)))
        noise = rng.standard_normal(kp[..., :2].shape).astype(np.float32) * scale
        present = kp[..., 2:3] > 0
        kp[..., :2] = np.where(present, kp[..., :2] + noise, kp[..., :2])
    out["keypoints_2d"] = kp
    return out


def occluded_joints(pattern: str, num_sequences: int, seed: int = 0) -> np.ndarray:
    """(num_sequences, 17) bool: which joints ``pattern`` hides in each sequence."""
    mask = np.zeros((num_sequences, skeleton.NUM_JOINTS), bool)
    if pattern in OCCLUSION_PARTS:
        mask[:, list(OCCLUSION_PARTS[pattern])] = True
    elif pattern in OCCLUSION_RANDOM:
        rng = np.random.default_rng(seed)
        candidates = np.array([j for j in range(skeleton.NUM_JOINTS) if j != skeleton.ROOT])
        for i in range(num_sequences):
            mask[i, rng.choice(candidates, OCCLUSION_RANDOM[pattern], replace=False)] = True
    else:
        raise ValueError(f"unknown occlusion {pattern!r}; known: {list(OCCLUSIONS)}")
    return mask


def occlude(chunks: Mapping[str, np.ndarray], pattern: str, sequence_ids: np.ndarray,
            seed: int = 0) -> dict[str, np.ndarray]:
    """Hide ``pattern``'s joints (confidence 0, coordinates 0) in every frame of each chunk.

    ``sequence_ids`` (num_chunks,) names the sequence each chunk belongs to, so the chunks of one
    sequence lose the same random joints (an occluder does not jump between chunk borders).
    """
    ids = np.asarray(sequence_ids)
    if ids.shape != (len(chunks["keypoints_2d"]),):
        raise ValueError(f"sequence_ids must have one entry per chunk, got {ids.shape}")
    uniq, inverse = np.unique(ids, return_inverse=True)
    hidden = occluded_joints(pattern, len(uniq), seed)[inverse]          # (chunks, 17)
    kp = np.array(chunks["keypoints_2d"], dtype=np.float32, copy=True)
    hide = np.broadcast_to(hidden[:, None, :], kp.shape[:-1])
    kp[hide] = 0.0
    return dict(chunks, keypoints_2d=kp)
