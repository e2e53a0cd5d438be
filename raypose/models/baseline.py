"""Single-frame lifting baseline after Martinez et al. (ICCV 2017), for comparison.

2J → 1024, two residual blocks (Linear, BN, ReLU, dropout ×2), → 3J, on the centre frame only.
Missing joints are zeroed (the baseline has no mask token).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from raypose.models.blocks import SpatialEncoder
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
