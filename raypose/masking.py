"""Masks for masked pose modeling: pure, batched, seeded functions on tensors.

(Contract stub — the full implementation lands with the data issue.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class Masks:
    """What a pretraining model must hide from its encoder.

    ``frames_masked[n, t]`` — frame t of clip n is dropped (temporal masking: the encoder sees
    only visible frames, the decoder gets mask tokens at these positions).
    ``joints_masked[n, t, j]`` — joint j of frame t is replaced by the spatial mask token.
    ``levels`` — APTPose hierarchical masking: one (N, F, J) joint mask per anatomy level
    ('keypoint', 'bone', 'limb', 'body'), each fed to its own SEM branch.
    """

    frames_masked: torch.Tensor                 # (N, F) bool
    joints_masked: torch.Tensor                 # (N, F, J) bool
    levels: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device) -> "Masks":
        return Masks(self.frames_masked.to(device), self.joints_masked.to(device),
                     {k: v.to(device) for k, v in self.levels.items()})
