"""P-STMO (Shan et al., ECCV 2022): masked 2D pose modeling, then SEM → TEM → MOFA lifting.

Stage I (:class:`PSTMOPretrain`): masked joints take the spatial mask token, the SEM embeds
every frame, the TEM sees only visible frames, and an MAE decoder rebuilds all F frames of 2D.
Stage II (:class:`PSTMOLift`): the same encoder (loaded by name) feeds a multi-frame 3D head and
the many-to-one frame aggregator (MOFA) for the centre frame.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from raypose.masking import Masks
from raypose.models.blocks import (LiftingTail, MaskedDecoder, PoseHead, PretrainedEncoderMixin,
                                   SpatialEncoder, SpatialMaskToken, TransformerEncoder,
                                   default_strides, visible_index)
from raypose.skeleton import NUM_JOINTS


class PSTMOEncoder(nn.Module):
    """Spatial mask token → SEM (2J → 512 → d) → TEM over (visible) frames."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512, sem_blocks: int = 1):
        super().__init__()
        self.spatial_mask_token = SpatialMaskToken(2)
        self.sem = SpatialEncoder(2 * NUM_JOINTS, dim, sem_hidden, sem_blocks, dropout)
        self.tem = TransformerEncoder(dim, depth, heads, ffn_dim, num_frames, dropout)

    def forward(self, pose_2d: torch.Tensor, joints_masked: Optional[torch.Tensor] = None,
                keep_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.spatial_mask_token(pose_2d, joints_masked)
        return self.tem(self.sem(x.flatten(2)), keep_index)


class PSTMOPretrain(PretrainedEncoderMixin, nn.Module):
    """Stage I: reconstruct every frame's 2D from a spatially and temporally masked clip."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 decoder_depth: int = 3, decoder_dim: Optional[int] = None,
                 decoder_ffn_dim: Optional[int] = None):
        super().__init__()
        decoder_dim = decoder_dim or dim // 2
        decoder_ffn_dim = decoder_ffn_dim or 2 * decoder_dim
        self.encoder = PSTMOEncoder(num_frames, dim, depth, heads, ffn_dim, dropout, sem_hidden)
        self.decoder = MaskedDecoder(dim, decoder_dim, decoder_depth, heads, decoder_ffn_dim,
                                     num_frames, dropout)
        self.head_2d = PoseHead(decoder_dim, 2)

    def forward(self, pose_2d: torch.Tensor, masks: Optional[Masks] = None,
                pose_3d: Optional[torch.Tensor] = None, step: int = 0) -> dict[str, torch.Tensor]:
        keep = visible_index(masks.frames_masked) if masks is not None else None
        joints = masks.joints_masked if masks is not None else None
        tokens = self.encoder(pose_2d, joints, keep)
        return {"rec_2d": self.head_2d(self.decoder(tokens, keep))}


class PSTMOLift(PretrainedEncoderMixin, nn.Module):
    """Stage II: encoder → 'multi' (N, F, 17, 3) and MOFA → 'centre' (N, 1, 17, 3); with
    ``trajectory``, also the centre frame's camera-space root 'trajectory' (N, 1, 3)."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 strides: Optional[Sequence[int]] = None, trajectory: bool = False):
        super().__init__()
        self.num_frames = num_frames
        self.encoder = PSTMOEncoder(num_frames, dim, depth, heads, ffn_dim, dropout, sem_hidden)
        self.tail = LiftingTail(dim, num_frames, list(strides or default_strides(num_frames)),
                                heads, ffn_dim, dropout, trajectory=trajectory)

    def forward(self, pose_2d: torch.Tensor, joints_missing: Optional[torch.Tensor] = None
                ) -> dict[str, torch.Tensor]:
        c = pose_2d.shape[1] // 2
        return self.tail(self.encoder(pose_2d, joints_missing), pose_2d[:, c],
                         None if joints_missing is None else joints_missing[:, c])
