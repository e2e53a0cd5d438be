"""APTPose (Yan et al., BMVC 2024): anatomy-aware pre-training with hierarchical masking.

Four SEMs see copies of the same clip masked at the keypoint / bone / limb / body level (each
level with its own mask token); their features are fused (element-wise product by default) and
fed to the TEM. Pretraining decodes 2D and 3D for every frame and maps the decoded 3D back to
2D through a reprojection module (an MLP with a residual block), so both 2D and 3D losses
apply. Fine-tuning keeps the encoder and adds the lifting tail. Evaluation is deterministic:
branches only mask joints that are actually missing.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from raypose.masking import Masks
from raypose.models.blocks import (Fusion, LiftingTail, MaskedDecoder, PoseHead,
                                   PretrainedEncoderMixin, SpatialEncoder, SpatialMaskToken,
                                   TransformerEncoder, default_strides, visible_index)
from raypose.skeleton import ANATOMY_LEVELS, NUM_JOINTS


class APTPoseEncoder(nn.Module):
    """Per-level mask token + SEM, fused, then the TEM."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 fusion: str = "mul", sem_blocks: int = 1):
        super().__init__()
        self.levels = ANATOMY_LEVELS
        self.mask_tokens = nn.ModuleDict({lv: SpatialMaskToken(2) for lv in self.levels})
        self.sems = nn.ModuleDict({lv: SpatialEncoder(2 * NUM_JOINTS, dim, sem_hidden, sem_blocks, dropout)
                                   for lv in self.levels})
        self.fusion = Fusion(fusion, dim, len(self.levels))
        self.tem = TransformerEncoder(dim, depth, heads, ffn_dim, num_frames, dropout)

    def branch_features(self, pose_2d: torch.Tensor,
                        level_masks: dict[str, Optional[torch.Tensor]]) -> list[torch.Tensor]:
        """(N, F, d) features of each level's SEM on its masked copy of the clip."""
        return [self.sems[lv](self.mask_tokens[lv](pose_2d, level_masks.get(lv)).flatten(2))
                for lv in self.levels]

    def forward(self, pose_2d: torch.Tensor, level_masks: dict[str, Optional[torch.Tensor]],
                keep_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.tem(self.fusion(self.branch_features(pose_2d, level_masks)), keep_index)


def _level_masks(masks: Masks, levels: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each level's joint mask; a level the masking helper did not draw falls back to joints_masked."""
    return {lv: masks.levels.get(lv, masks.joints_masked) for lv in levels}


class APTPosePretrain(PretrainedEncoderMixin, nn.Module):
    """Stage I: hierarchical masked modeling with 2D, 3D and reprojected-2D outputs."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 fusion: str = "mul", decoder_depth: int = 3, decoder_dim: Optional[int] = None):
        super().__init__()
        decoder_dim = decoder_dim or dim // 2
        self.encoder = APTPoseEncoder(num_frames, dim, depth, heads, ffn_dim, dropout, sem_hidden, fusion)
        self.decoder = MaskedDecoder(dim, decoder_dim, decoder_depth, heads, 2 * decoder_dim,
                                     num_frames, dropout)
        self.head_2d = PoseHead(decoder_dim, 2)
        self.head_3d = PoseHead(decoder_dim, 3)
        self.reprojection = SpatialEncoder(3 * NUM_JOINTS, 2 * NUM_JOINTS, sem_hidden, 1, dropout)

    def forward(self, pose_2d: torch.Tensor, masks: Optional[Masks] = None,
                pose_3d: Optional[torch.Tensor] = None, step: int = 0) -> dict[str, torch.Tensor]:
        keep = visible_index(masks.frames_masked) if masks is not None else None
        level_masks = _level_masks(masks, self.encoder.levels) if masks is not None else {}
        dec = self.decoder(self.encoder(pose_2d, level_masks, keep), keep)
        rec_3d = self.head_3d(dec)
        n, f = pose_2d.shape[:2]
        reproj = self.reprojection(rec_3d.flatten(2)).reshape(n, f, NUM_JOINTS, 2)
        return {"rec_2d": self.head_2d(dec), "rec_3d": rec_3d, "reproj_2d": reproj}


class APTPoseLift(PretrainedEncoderMixin, nn.Module):
    """Stage II: encoder (no random masks; only missing joints masked) → lifting tail."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 fusion: str = "mul", strides: Optional[Sequence[int]] = None):
        super().__init__()
        self.num_frames = num_frames
        self.encoder = APTPoseEncoder(num_frames, dim, depth, heads, ffn_dim, dropout, sem_hidden, fusion)
        self.tail = LiftingTail(dim, num_frames, list(strides or default_strides(num_frames)),
                                heads, ffn_dim, dropout)

    def forward(self, pose_2d: torch.Tensor, joints_missing: Optional[torch.Tensor] = None
                ) -> dict[str, torch.Tensor]:
        level_masks = {lv: joints_missing for lv in self.encoder.levels}
        return self.tail(self.encoder(pose_2d, level_masks))
