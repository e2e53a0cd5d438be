"""MPM (Zhang et al.): one representation for 2D and 3D poses via masked pose modeling.

Light modality stems (2J → 512 and 3J → 512) feed shared layers — the SEM's residual block
and projection to d, then the TEM — and separate 2D / 3D MAE decoders. Pretraining alternates
masked-2D modeling (even steps; with a 3D lift from the same tokens) and masked-3D modeling (odd
steps). Fine-tuning keeps the 2D stem + shared layers and adds the lifting tail. Pose
completion: missing 2D joints take the 2D mask token when lifting; partial 3D is completed by
:meth:`MPMPretrain.complete_3d`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from raypose.masking import Masks
from raypose.models.blocks import (LiftingTail, MaskedDecoder, MLPStem, MLPTrunk, PoseHead,
                                   PretrainedEncoderMixin, SpatialMaskToken, TransformerEncoder,
                                   per_frame, default_strides, visible_index)
from raypose.skeleton import NUM_JOINTS


class MPMEncoder(nn.Module):
    """Per-modality mask token + stem, then shared spatial MLP and shared TEM."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 with_3d: bool = True):
        super().__init__()
        self.mask_token_2d = SpatialMaskToken(2)
        self.stem_2d = MLPStem(2 * NUM_JOINTS, sem_hidden, dropout)
        if with_3d:
            self.mask_token_3d = SpatialMaskToken(3)
            self.stem_3d = MLPStem(3 * NUM_JOINTS, sem_hidden, dropout)
        self.shared_spatial = MLPTrunk(sem_hidden, dim, 1, dropout)
        self.shared_temporal = TransformerEncoder(dim, depth, heads, ffn_dim, num_frames, dropout)

    def forward(self, pose: torch.Tensor, joints_masked: Optional[torch.Tensor] = None,
                keep_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """pose (N, F, 17, 2|3); the channel count picks the modality."""
        if pose.shape[-1] == 2:
            token, stem = self.mask_token_2d, self.stem_2d
        else:
            token, stem = self.mask_token_3d, self.stem_3d
        x = per_frame(stem, token(pose, joints_masked).flatten(2))
        return self.shared_temporal(per_frame(self.shared_spatial, x), keep_index)


class MPMPretrain(PretrainedEncoderMixin, nn.Module):
    """Stage I: masked 2D modeling (+ lift) on even steps, masked 3D modeling on odd steps
    (only when ``pose_3d`` is given: without it every step is a masked-2D step)."""

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 decoder_depth: int = 1, decoder_dim: Optional[int] = None, lift: bool = True):
        super().__init__()
        decoder_dim = decoder_dim or dim
        self.lift = lift
        self.encoder = MPMEncoder(num_frames, dim, depth, heads, ffn_dim, dropout, sem_hidden, True)
        self.decoder_2d = MaskedDecoder(dim, decoder_dim, decoder_depth, heads, ffn_dim, num_frames, dropout)
        self.decoder_3d = MaskedDecoder(dim, decoder_dim, decoder_depth, heads, ffn_dim, num_frames, dropout)
        self.head_2d = PoseHead(decoder_dim, 2)
        self.head_3d = PoseHead(decoder_dim, 3)

    def _decode_3d(self, tokens: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        return self.head_3d(self.decoder_3d(tokens, keep))

    def forward(self, pose_2d: torch.Tensor, masks: Optional[Masks] = None,
                pose_3d: Optional[torch.Tensor] = None, step: int = 0) -> dict[str, torch.Tensor]:
        keep = visible_index(masks.frames_masked) if masks is not None else None
        joints = masks.joints_masked if masks is not None else None
        if step % 2 == 1 and pose_3d is not None:
            return {"rec_3d": self._decode_3d(self.encoder(pose_3d, joints, keep), keep)}
        tokens = self.encoder(pose_2d, joints, keep)
        out = {"rec_2d": self.head_2d(self.decoder_2d(tokens, keep))}
        if self.lift:
            out["lift_3d"] = self._decode_3d(tokens, keep)
        return out

    @torch.no_grad()
    def complete_3d(self, pose_3d: torch.Tensor, joints_missing: torch.Tensor,
                    frames_missing: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fill missing joints (and frames) of partial root-relative 3D (observed joints are kept).

        Why ``frames_missing`` is separate: masked-3D pretraining *drops* hidden frames from the
        encoder and lets the decoder fill them, so a wholly missing frame is completed the same
        way (every clip of the batch must miss the same number of frames); a frame of 17 joint
        mask tokens is an input the model never saw.
        """
        keep = visible_index(frames_missing) if frames_missing is not None else None
        full = self._decode_3d(self.encoder(pose_3d, joints_missing, keep), keep)
        hidden = joints_missing if frames_missing is None else joints_missing | frames_missing[..., None]
        return torch.where(hidden.unsqueeze(-1), full, pose_3d)


class MPMLift(PretrainedEncoderMixin, nn.Module):
    """Stage II: 2D stem + shared layers (loaded by name) → lifting tail."""

    #: the 3D modality's token and stem serve only masked-3D pretraining
    PRETRAINING_ONLY = ("encoder.mask_token_3d.", "encoder.stem_3d.")

    def __init__(self, num_frames: int, dim: int = 256, depth: int = 4, heads: int = 8,
                 ffn_dim: int = 512, dropout: float = 0.1, sem_hidden: int = 512,
                 strides: Optional[Sequence[int]] = None):
        super().__init__()
        self.num_frames = num_frames
        self.encoder = MPMEncoder(num_frames, dim, depth, heads, ffn_dim, dropout, sem_hidden, False)
        self.tail = LiftingTail(dim, num_frames, list(strides or default_strides(num_frames)),
                                heads, ffn_dim, dropout)

    def forward(self, pose_2d: torch.Tensor, joints_missing: Optional[torch.Tensor] = None
                ) -> dict[str, torch.Tensor]:
        return self.tail(self.encoder(pose_2d, joints_missing))
