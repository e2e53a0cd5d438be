"""Lifting by Image (Zhou, Yin, Li): 2D keypoints that query image features, in two stages.

Stage 1, "broad query": image → backbone → patch tokens T_I (HW × d); 2D pose → keypoint
tokens T_J (J × d, a linear projection plus a learned joint embedding); three layers
[transformer, **pose-guided transformer**, transformer]; a linear coarse 3D head.
A transformer layer here is MSA over keypoints → MCA keypoints→image → FFN (image tokens are
only read). The pose-guided layer replaces the MCA by a dual attention that also updates the
image tokens through the *same* attention map::

    A   = softmax(Q_J K_Iᵀ / √d)   (row-normalised over image tokens, BEFORE transposition)
    T_J = A · V_I + T_J
    T_I = Aᵀ · V_J + T_I           (image token i gathers with weights A[:, i]: its column sum)

so image tokens that keypoints attend to much gather much; background tokens gather little.

Adaptive feature selection: rank image tokens by the last stage-1 layer's attention summed over
keypoints (mean over heads) and keep the top ``round(r·HW)`` (r = ``keep_ratio``, default 0.3).

Stage 2, "focused exploration": stage 1 frozen (weights and BatchNorm statistics), ``depth``
new transformer layers over [keypoint tokens; kept image tokens], a refined 3D head.

``use_image=False`` turns the image branch off (a keypoint-only transformer with the same
layers, for the "2D alone" comparison); ``pose_guided=False`` uses a plain layer in the middle.
The model is single-frame: of a (N, F, 17, 2) clip only the centre frame is lifted.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from raypose.models.backbones import build_backbone
from raypose.models.blocks import QueryLayer, SpatialMaskToken, TransformerLayer
from raypose.skeleton import NUM_JOINTS


# ----------------------------------------------------------------------------- token selection


def num_kept(num_tokens: int, keep_ratio: float) -> int:
    """round(r·HW), at least one token."""
    return max(1, min(num_tokens, int(round(keep_ratio * num_tokens))))


def select_tokens(attn: torch.Tensor, tokens: torch.Tensor, keep_ratio: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive feature selection: attn (N, heads, J, HW), tokens (N, HW, D) →
    (kept tokens (N, K, D) best first, their indices (N, K)), K = :func:`num_kept`."""
    scores = attn.mean(1).sum(1)  # (N, HW): total keypoint attention per image token
    index = scores.topk(num_kept(tokens.shape[1], keep_ratio), dim=1, sorted=True).indices
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])), index


# ----------------------------------------------------------------------------- stage 1


class ImageEncoder(nn.Module):
    """Backbone feature map → 1×1 projection to ``dim`` → pooled to a grid of
    ``patch_stride``-pixel patches → flattened tokens + learned 2D positions."""

    def __init__(self, dim: int, backbone: str, weights: str, image_size: tuple[int, int],
                 patch_stride: int, backbone_blocks: Optional[int] = None, backbone_branches: int = 3):
        super().__init__()
        h, w = image_size
        if h % patch_stride or w % patch_stride:
            raise ValueError(f"image size {h}×{w} is not a multiple of patch_stride {patch_stride}")
        self.backbone = build_backbone(backbone, weights, out_stride=min(patch_stride, 32),
                                       branches=backbone_branches, blocks=backbone_blocks)
        self.proj = nn.Conv2d(self.backbone.out_channels, dim, 1)
        self.image_size, self.grid = (h, w), (h // patch_stride, w // patch_stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(self.grid[0]), torch.arange(self.grid[1]), indexing="ij")
        centres = torch.stack([xs, ys], -1).reshape(-1, 2).float().add(0.5).mul(patch_stride)
        #: (HW, 2) patch centres in crop pixels (x, y), token order.
        self.register_buffer("patch_centres", centres, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape[-2:]) != self.image_size:
            raise ValueError(f"expected images of {self.image_size}, got {tuple(image.shape[-2:])}")
        feat = self.proj(self.backbone(image))
        if tuple(feat.shape[-2:]) != self.grid:
            feat = F.adaptive_avg_pool2d(feat, self.grid)
        return feat.flatten(2).transpose(1, 2) + self.pos_embed


class BroadQueryEncoder(nn.Module):
    """Stage 1: image encoder, keypoint tokens, three query layers, coarse head."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, pose_guided: bool,
                 use_image: bool, encoder_kw: dict[str, Any]):
        super().__init__()
        self.mask_token = SpatialMaskToken(2)
        self.pose_embed = nn.Linear(2, dim)
        self.joint_embed = nn.Parameter(torch.zeros(1, NUM_JOINTS, dim))
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        self.encoder = ImageEncoder(dim, **encoder_kw) if use_image else None
        self.layers = nn.ModuleList([QueryLayer(dim, heads, ffn_dim, dropout, i == 1 and pose_guided, use_image)
                                     for i in range(3)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3))

    def forward(self, pose: torch.Tensor, missing: Optional[torch.Tensor], image: Optional[torch.Tensor]
                ) -> dict[str, Any]:
        """pose (N, J, 2), missing (N, J) | None, image (N, 3, H, W) | None."""
        joints = self.pose_embed(self.mask_token(pose, missing)) + self.joint_embed
        tokens = self.encoder(image) if self.encoder is not None else None
        attns = []
        for layer in self.layers:
            joints, tokens, attn = layer(joints, tokens)
            attns.append(attn)
        return {"joints": joints, "tokens": tokens, "attn": attns, "coarse": self.head(joints)}


class ImageLift(nn.Module):
    """Lifting by Image; ``lift_stage`` 1 trains/outputs the coarse pose, 2 the refined one.

    ``forward(pose_2d (N, F, 17, 2), joints_missing (N, F, 17) | None, image (N, 3, H, W))``
    → {'centre', 'coarse'[, 'refined']} each (N, 1, 17, 3); ``return_attention=True`` adds
    'attention' (N, 3, J, HW) head-averaged maps of the three stage-1 layers and, in stage 2,
    'kept_index' (N, K). ``sem_hidden``/``strides`` are accepted for the registry's common
    config mapping and unused; ``image_data`` carries data-side settings in ``model.extra``
    (crop size, renderer options) and is ignored by the model.
    """

    def __init__(self, num_frames: int = 1, dim: int = 128, ffn_dim: int = 256, heads: int = 4,
                 depth: int = 3, dropout: float = 0.1, backbone: str = "hrnet_w32", weights: str = "",
                 image_height: int = 256, image_width: int = 192, patch_stride: int = 16,
                 keep_ratio: float = 0.3, pose_guided: bool = True, use_image: bool = True,
                 lift_stage: int = 1, backbone_blocks: Optional[int] = None, backbone_branches: int = 3,
                 sem_hidden: int = 0, strides: Any = None, image_data: Optional[dict] = None):
        super().__init__()
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        self.num_frames, self.keep_ratio, self.use_image = num_frames, keep_ratio, use_image
        encoder_kw = dict(backbone=backbone, weights=weights, image_size=(image_height, image_width),
                          patch_stride=patch_stride, backbone_blocks=backbone_blocks,
                          backbone_branches=backbone_branches)
        self.stage1 = BroadQueryEncoder(dim, heads, ffn_dim, dropout, pose_guided, use_image, encoder_kw)
        self.stage2 = nn.ModuleList([TransformerLayer(dim, heads, ffn_dim, dropout) for _ in range(depth)])
        self.type_embed = nn.Parameter(torch.zeros(1, 1, dim))  # marks image tokens in stage 2
        self.refined_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3))
        self.lift_stage = 1
        self.set_stage(lift_stage)

    @property
    def patch_centres(self) -> Optional[torch.Tensor]:
        return None if self.stage1.encoder is None else self.stage1.encoder.patch_centres

    def set_stage(self, stage: int) -> "ImageLift":
        """Stage 2 freezes stage 1 (no gradients, eval-mode BatchNorm/dropout) — progressive
        training; stage 1 trains stage 1 only (stage-2 parameters get no gradient)."""
        if stage not in (1, 2):
            raise ValueError(f"lift_stage must be 1 or 2, got {stage}")
        self.lift_stage = stage
        self.stage1.requires_grad_(stage == 1)
        for p in [*self.stage2.parameters(), self.type_embed, *self.refined_head.parameters()]:
            p.requires_grad_(stage == 2)
        for p in self.parameters():
            if not p.requires_grad:
                p.grad = None  # no stale gradient of the other stage reaches an optimizer
        return self.train(self.training)

    def train(self, mode: bool = True) -> "ImageLift":
        super().train(mode)
        if self.lift_stage == 2:
            self.stage1.eval()
        return self

    def stage_parameters(self) -> list[nn.Parameter]:
        """The parameters the current stage trains."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, pose_2d: torch.Tensor, joints_missing: Optional[torch.Tensor] = None,
                image: Optional[torch.Tensor] = None, return_attention: bool = False) -> dict[str, torch.Tensor]:
        if self.use_image and image is None:
            raise ValueError("ImageLift with use_image=True needs `image` (N, 3, H, W)")
        c = pose_2d.shape[1] // 2
        missing = joints_missing[:, c] if joints_missing is not None else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.lift_stage == 1):
            s1 = self.stage1(pose_2d[:, c], missing, image if self.use_image else None)
        coarse = s1["coarse"].unsqueeze(1)
        out: dict[str, torch.Tensor] = {"coarse": coarse, "centre": coarse}
        if return_attention and self.use_image:
            out["attention"] = torch.stack([a.mean(1) for a in s1["attn"]], 1)
        if self.lift_stage == 2:
            joints = s1["joints"].detach()
            if self.use_image:
                kept, index = select_tokens(s1["attn"][-1].detach(), s1["tokens"].detach(), self.keep_ratio)
                x = torch.cat([joints, kept + self.type_embed], 1)
                if return_attention:
                    out["kept_index"] = index
            else:
                x = joints
            for layer in self.stage2:
                x = layer(x)
            refined = self.refined_head(x[:, :NUM_JOINTS]).unsqueeze(1)
            out.update(refined=refined, centre=refined)
        return out


def background_attention_share(attn: torch.Tensor, keypoints_crop: torch.Tensor, patch_centres: torch.Tensor,
                               radius: float = 30.0) -> torch.Tensor:
    """Share of keypoint attention on background patches, per sample (paper, Table 5).

    attn (N, J, HW) head-averaged rows summing to 1; keypoints_crop (N, J, 2) crop pixels;
    patch_centres (HW, 2) crop pixels. A patch is background when its centre lies outside the
    ``radius``-pixel circles around every keypoint. Returns (N,) = mean over keypoints of the
    attention mass on background patches.
    """
    d = torch.cdist(patch_centres.unsqueeze(0).expand(len(keypoints_crop), -1, -1).float(),
                    keypoints_crop.float())  # (N, HW, J)
    background = (d > radius).all(-1)  # (N, HW)
    return (attn * background.unsqueeze(1)).sum(-1).mean(-1) / attn.sum(-1).mean(-1)


def background_fraction(keypoints_crop: torch.Tensor, patch_centres: torch.Tensor, radius: float = 30.0
                        ) -> torch.Tensor:
    """(N,) share of patches that are background: the share uniform attention would give."""
    d = torch.cdist(patch_centres.unsqueeze(0).expand(len(keypoints_crop), -1, -1).float(), keypoints_crop.float())
    return (d > radius).all(-1).float().mean(-1)
