"""Single-frame lifting baseline after Martinez et al. (ICCV 2017), for comparison.

2J → 1024, two residual blocks (Linear, BN, ReLU, dropout ×2), → 3J, on the centre frame only.
Missing joints are zeroed (the baseline has no mask token).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from raypose.models.blocks import SpatialEncoder, TrajectoryHead
from raypose.skeleton import NUM_JOINTS


class MartinezBaseline(nn.Module):
    def __init__(self, num_frames: int = 1, hidden: int = 1024, blocks: int = 2, dropout: float = 0.5):
        super().__init__()
        self.num_frames = num_frames
        self.mlp = SpatialEncoder(2 * NUM_JOINTS, 3 * NUM_JOINTS, hidden, blocks, dropout, activation="relu")

    def forward(self, pose_2d: torch.Tensor, joints_missing: Optional[torch.Tensor] = None
                ) -> dict[str, torch.Tensor]:
        c = pose_2d.shape[1] // 2
        x = pose_2d[:, c]
        if joints_missing is not None:
            x = x.masked_fill(joints_missing[:, c].unsqueeze(-1), 0.0)
        return {"centre": self.mlp(x.flatten(1)).reshape(-1, 1, NUM_JOINTS, 3)}


class WindowMLPLift(nn.Module):
    """The Martinez MLP over a whole window: F frames × 17 joints × (x, y, seen) → centre 3D.

    A temporal lifter at almost the single-frame MLP's cost (only the first layer grows with F),
    so on a CPU it sees about as many samples per second as the baseline while it uses the
    motion around the centre frame (depth order, occluded joints). Missing joints are zeroed
    and flagged in the third channel, so the model knows a 0 is "unknown", not "image centre".
    """

    def __init__(self, num_frames: int = 27, hidden: int = 1024, blocks: int = 2, dropout: float = 0.25,
                 trajectory: bool = False):
        super().__init__()
        self.num_frames = num_frames
        self.mlp = SpatialEncoder(3 * NUM_JOINTS * num_frames, 3 * NUM_JOINTS, hidden, blocks, dropout,
                                  activation="relu")
        # the root (:class:`TrajectoryHead`) from the features the pose's last layer reads
        self.trajectory_head = TrajectoryHead(hidden) if trajectory else None

    def forward(self, pose_2d: torch.Tensor, joints_missing: Optional[torch.Tensor] = None
                ) -> dict[str, torch.Tensor]:
        if pose_2d.shape[1] != self.num_frames:
            raise ValueError(f"window_mlp takes {self.num_frames}-frame clips, got {pose_2d.shape[1]}")
        seen = torch.ones_like(pose_2d[..., :1])
        if joints_missing is not None:
            seen = (~joints_missing).unsqueeze(-1).to(pose_2d.dtype)
            pose_2d = pose_2d * seen
        x = torch.cat([pose_2d, seen], dim=-1)
        if self.trajectory_head is None:
            return {"centre": self.mlp(x.flatten(1)).reshape(-1, 1, NUM_JOINTS, 3)}
        features = self.mlp.trunk.blocks(self.mlp.stem(x.flatten(1)))
        c = self.num_frames // 2
        return {"centre": self.mlp.trunk.out(features).reshape(-1, 1, NUM_JOINTS, 3),
                "trajectory": self.trajectory_head(features, pose_2d[:, c],
                                                   None if joints_missing is None else joints_missing[:, c])}
