"""The fixed accuracy protocol on a person the model never saw (issue "Lifters that learn").

Every accuracy figure of raypose on held-out people is measured the same way, so numbers from
``bench/accuracy.py``, the studies and the README can be set side by side:

* the held-out performer (``climb_b`` of ``../shared/data/mocap_h36m17.npz``) at 30 fps, seen by
  the four cameras of :func:`raypose.config.protocol_rig` (azimuths 0.6, 2.2, 3.8, 5.4 rad, 5 m,
  1.2 m high, following the pelvis; f = 1145 px, c = (512, 515), image 1000 × 1002);
* Gaussian 2D noise σ = 2 px from a fixed seed;
* lifted as a user's file is (:func:`raypose.infer.lift_sequence`, flip averaging, windows at the
  model's frame rate); MPJPE and P-MPJPE in mm over every frame of the four views.

The real-detections half of the protocol (Pose2Sim's 4 calibrated cameras) is
:func:`raypose.evaluate.evaluate_calibrated`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from raypose import config as config_mod

HELD_OUT = "climb_b"
NOISE_PX = 2.0
TEST_FPS = 30.0
NOISE_SEED = 1234
IMAGE_SIZE = (1000, 1002)
PRINCIPAL_POINT = (512.0, 515.0)


def protocol_views(mocap: Path, subject: str = HELD_OUT) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy 2D pixels + confidence, root-relative camera-frame 3D) per protocol camera, for
    every sequence of ``subject`` at 30 fps."""
    from raypose.config import protocol_rig
    from raypose.data.sources.mocap import read_mocap
    from raypose.data.sources.views import views

    rng = np.random.default_rng(NOISE_SEED)
    out = []
    for rec in read_mocap(mocap, TEST_FPS, subjects=[subject]):
        for v in views(rec, np.random.default_rng(0), 4, protocol_rig()):
            kp = v.keypoints_2d.copy()
            kp[..., :2] += rng.normal(0.0, NOISE_PX, kp[..., :2].shape)
            out.append((kp, v.joints_3d))
    return out


def score_protocol(model: Any, cfg: config_mod.Config, test: Sequence[tuple[np.ndarray, np.ndarray]]
                   ) -> dict[str, float]:
    """MPJPE / P-MPJPE (mm) of ``model`` on the protocol views, lifted as a user's file is."""
    from raypose import metrics
    from raypose.infer import lift_sequence

    preds, targets = [], []
    for kp, target in test:
        preds.append(lift_sequence(model, kp, *IMAGE_SIZE, cfg.data.num_frames, stride=cfg.data.stride,
                                   flip=True, principal_point=PRINCIPAL_POINT, fps=TEST_FPS,
                                   model_fps=cfg.data.target_fps or None, causal=cfg.data.causal))
        targets.append(target)
    p = np.concatenate(preds).astype(np.float64) * 1000
    t = np.concatenate(targets).astype(np.float64) * 1000
    return {"mpjpe": float(metrics.mpjpe(p, t)), "p_mpjpe": float(metrics.p_mpjpe(p, t)),
            "frames": int(p.shape[0])}
