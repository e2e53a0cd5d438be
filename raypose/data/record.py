"""The in-memory record every reader returns and the store writes one row per camera of."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from raypose.cameras import Camera


@dataclass
class SequenceRecord:
    """One recorded sequence of one subject, possibly seen by several cameras.

    ``positions_3d`` is in metres, in the frame named by ``frame_3d`` ('world' for mocap and
    H36M, 'camera' for sources that only give camera-space 3D such as COCO pseudo-labels or
    3DHP test sets, in which case ``cameras`` has exactly one entry). ``keypoints_2d`` holds
    one (T, 17, 3) array per camera — pixels plus a confidence in [0, 1] (0 = not detected) —
    or is None for 3D-only sources, which get views from virtual cameras instead.
    """

    dataset: str
    subject: str
    action: str
    fps: float
    positions_3d: Optional[np.ndarray] = None          # (T, 17, 3) float32, metres
    keypoints_2d: Optional[list[np.ndarray]] = None    # per camera (T, 17, 3) float32
    cameras: list[Camera] = field(default_factory=list)
    frame_3d: str = "world"
    #: Per-frame validity (3DHP test sets mark frames without ground truth); None = all valid.
    valid: Optional[np.ndarray] = None
    source_path: str = ""

    @property
    def num_frames(self) -> int:
        if self.positions_3d is not None:
            return int(self.positions_3d.shape[0])
        if self.keypoints_2d:
            return int(self.keypoints_2d[0].shape[0])
        return 0

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.action}"
