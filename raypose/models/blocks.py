"""Building blocks shared by every lifting model — each defined once, composed in the model files.

Shapes follow the repo convention outside a block: ``(N, F, J, C)`` poses, ``(N, F, D)`` frame
tokens. Per-frame MLPs flatten frames into the batch so BatchNorm sees ``(N*F, C)`` — the same
statistics as the reference 1×1 Conv1d + BatchNorm1d over ``(N, C, F)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raypose.errors import ConfigError
from raypose.skeleton import NUM_JOINTS, ROOT


# ----------------------------------------------------------------------------- helpers

def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a (B, C) module to every frame of (N, F, C)."""
    n, f, c = x.shape
    return module(x.reshape(n * f, c)).reshape(n, f, -1)


def default_strides(num_frames: int) -> list[int]:
    """MOFA strides mapping ``num_frames`` tokens to one.

    Rule (P-STMO §A.2): stride-3 layers, as many as needed to reach one token
    (k = ceil(log3 F)), padded in front with stride-1 layers to at least three layers.
    9 → [1, 3, 3], 27 → [3, 3, 3], 81 → [3, 3, 3, 3], 243 → [3, 3, 3, 3, 3]. For other odd F
    each layer keeps ceil(L / 3) tokens (kernel 3, padding 1), so the last layer still has one.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    k = 0
    while 3 ** k < num_frames:
        k += 1
    return [1] * max(0, 3 - k) + [3] * k


def strided_lengths(num_frames: int, strides: Sequence[int]) -> list[int]:
    """Token count entering each strided layer, then the final count."""
    lengths = [num_frames]
    for s in strides:
        lengths.append(math.ceil(lengths[-1] / s))
    return lengths


def visible_index(frames_masked: torch.Tensor) -> torch.Tensor:
    """(N, F) bool mask → (N, V) sorted indices of visible frames.

    Every clip must keep the same number of frames (the masking helper draws an exact ratio),
    which is what lets the encoder run on a dense (N, V, D) tensor.
    """
    visible = ~frames_masked
    counts = visible.sum(1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise ValueError(f"clips keep different numbers of visible frames: {counts.tolist()}")
    v = int(counts[0]) if counts.numel() else 0
    # stable sort puts visible (key 0) before masked (key 1) in frame order
    order = torch.sort(frames_masked.to(torch.int8), dim=1, stable=True).indices
    return order[:, :v]


def gather_frames(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (N, F, D), index (N, V) → (N, V, D)."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# ----------------------------------------------------------------------------- spatial MLPs

def _activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


class MLPStem(nn.Module):
    """Linear → BN → activation → dropout: the first layer of a per-frame MLP."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.1, activation: str = "leaky_relu"):
        super().__init__()
        self.linear = nn.Linear(in_dim, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.act = _activation(activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) → (B, hidden)
        return self.drop(self.act(self.norm(self.linear(x))))


class ResidualMLP(nn.Module):
    """x + [Linear → BN → act → dropout] × 2 (Martinez et al. 2017; P-STMO's SEM sub-block)."""

    def __init__(self, hidden: int, dropout: float = 0.1, activation: str = "leaky_relu"):
        super().__init__()
        self.body = nn.Sequential(MLPStem(hidden, hidden, dropout, activation),
                                  MLPStem(hidden, hidden, dropout, activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MLPTrunk(nn.Module):
    """Residual blocks then a linear projection to ``out_dim`` (MPM's shared spatial layers)."""

    def __init__(self, hidden: int, out_dim: int, num_blocks: int = 1, dropout: float = 0.1,
                 activation: str = "leaky_relu"):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualMLP(hidden, dropout, activation) for _ in range(num_blocks)])
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(x))


class SpatialEncoder(nn.Module):
    """SEM: per-frame MLP ``in_dim → hidden`` (stem) → residual block(s) → ``out_dim``.

    P-STMO's SEM is ``SpatialEncoder(2J, d, 512, 1)``; APTPose's reprojection module is
    ``SpatialEncoder(3J, 2J, 512, 1)``; Martinez's baseline is ``(2J, 3J, 1024, 2, relu)``.
    Accepts (B, C) or (N, F, C).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, num_blocks: int = 1,
                 dropout: float = 0.1, activation: str = "leaky_relu"):
        super().__init__()
        self.stem = MLPStem(in_dim, hidden, dropout, activation)
        self.trunk = MLPTrunk(hidden, out_dim, num_blocks, dropout, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            n, f, c = x.shape
            return self.trunk(self.stem(x.reshape(n * f, c))).reshape(n, f, -1)
        return self.trunk(self.stem(x))


class SpatialMaskToken(nn.Module):
    """A learnable coordinate that stands in for masked / missing joints before the SEM."""

    def __init__(self, channels: int):
        super().__init__()
        self.token = nn.Parameter(torch.randn(channels) * 0.02)

    def forward(self, pose: torch.Tensor, masked: Optional[torch.Tensor]) -> torch.Tensor:
        """pose (N, F, J, C), masked (N, F, J) bool | None → pose with masked joints = token."""
        if masked is None:
            return pose
        return torch.where(masked.unsqueeze(-1), self.token.to(pose.dtype), pose)


# ----------------------------------------------------------------------------- transformers

class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class FeedForward(nn.Module):
    """Token-wise Linear → ReLU → dropout → Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StridedFeedForward(nn.Module):
    """STE's FFN: 1×1 conv → ReLU → dropout → kernel-3 temporal conv with stride ``stride``."""

    def __init__(self, dim: int, hidden: int, stride: int, dropout: float = 0.1):
        super().__init__()
        self.expand = nn.Conv1d(dim, hidden, kernel_size=1)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.reduce = nn.Conv1d(hidden, dim, kernel_size=3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D) → (N, ceil(T/s), D)
        y = self.reduce(self.drop(self.act(self.expand(x.transpose(1, 2)))))
        return y.transpose(1, 2)


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + drop(attn(LN x)); then residual + drop(ffn(LN x)).

    With ``stride > 1`` the FFN is a :class:`StridedFeedForward` and the residual is strided
    the same way (every s-th token, i.e. a kernel-1 max-pool), as in the Strided Transformer.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1, stride: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.stride = stride
        self.ffn = (StridedFeedForward(dim, ffn_dim, stride, dropout) if stride
                    else FeedForward(dim, ffn_dim, dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        residual = x[:, :: self.stride] if self.stride > 1 else x
        return residual + self.drop(self.ffn(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """TEM: learned positional embedding over ``num_frames`` positions + pre-norm layers.

    ``keep_index`` (N, V) runs the layers on the visible frames only (MAE-style temporal
    masking): positions are added first, so each kept token still knows where it came from.
    """

    def __init__(self, dim: int, depth: int, heads: int, ffn_dim: int, num_frames: int,
                 dropout: float = 0.1, final_norm: bool = False):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList([TransformerLayer(dim, heads, ffn_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, keep_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(f"expected {self.pos_embed.shape[1]} frames, got {x.shape[1]}")
        x = self.drop(x + self.pos_embed)
        if keep_index is not None:
            x = gather_frames(x, keep_index)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class StridedTransformer(nn.Module):
    """MOFA: strided transformer layers that shrink ``num_frames`` tokens to one.

    Each layer gets its own learned positional embedding sized to its input length.
    """

    def __init__(self, dim: int, strides: Sequence[int], heads: int, ffn_dim: int, num_frames: int,
                 dropout: float = 0.1):
        super().__init__()
        lengths = strided_lengths(num_frames, strides)
        if lengths[-1] != 1:
            raise ValueError(f"strides {list(strides)} leave {lengths[-1]} tokens of {num_frames}, need 1")
        self.strides = list(strides)
        self.pos_embeds = nn.ParameterList()
        for length in lengths[:-1]:
            p = nn.Parameter(torch.zeros(1, length, dim))
            nn.init.trunc_normal_(p, std=0.02)
            self.pos_embeds.append(p)
        # stride 1 still uses the (kernel-3) strided FFN so every MOFA layer mixes time
        self.layers = nn.ModuleList([TransformerLayer(dim, heads, ffn_dim, dropout, stride=max(s, 1))
                                     for s in strides])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, F, D) → (N, 1, D)
        for pos, layer in zip(self.pos_embeds, self.layers):
            x = layer(x + pos)
        return x


class MaskedDecoder(nn.Module):
    """MAE-style decoder: visible tokens + a learnable mask token at every hidden frame.

    Encoder tokens (N, V, D_enc) are normalised, projected to ``dec_dim`` and scattered back to
    their frame positions; the rest get the mask token; positional embeddings tell the
    transformer which frame each slot is. Returns (N, F, dec_dim).
    """

    def __init__(self, enc_dim: int, dec_dim: int, depth: int, heads: int, ffn_dim: int,
                 num_frames: int, dropout: float = 0.1):
        super().__init__()
        self.enc_norm = nn.LayerNorm(enc_dim)
        self.to_dec = nn.Linear(enc_dim, dec_dim, bias=False) if dec_dim != enc_dim else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.transformer = TransformerEncoder(dec_dim, depth, heads, ffn_dim, num_frames, dropout)
        self.num_frames = num_frames

    def forward(self, tokens: torch.Tensor, keep_index: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.to_dec(self.enc_norm(tokens))
        if keep_index is None:
            return self.transformer(x)
        n, _, d = x.shape
        full = self.mask_token.to(x.dtype).expand(n, self.num_frames, d).clone()
        full = full.scatter(1, keep_index.unsqueeze(-1).expand(-1, -1, d), x)
        return self.transformer(full)


# ----------------------------------------------------------------------------- keypoint→image attention
# (Lifting by Image's query layers: keypoint tokens read — and, pose-guided, update — image tokens)

def pose_guided_attention(q: torch.Tensor, k: torch.Tensor, v_image: torch.Tensor, v_joints: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dual attention of the pose-guided layer on (…, J, dh) / (…, HW, dh) heads.

    Returns (keypoint update A·V_I (…, J, dh), image update Aᵀ·V_J (…, HW, dh), A (…, J, HW)).
    A is softmax-normalised over image tokens first and only then transposed.
    """
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return attn @ v_image, attn.transpose(-1, -2) @ v_joints, attn


def keypoint_attention(q: torch.Tensor, k: torch.Tensor, v_image: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain cross-attention keypoints → image; returns (A·V_I, A)."""
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return attn @ v_image, attn


class CrossAttention(nn.Module):
    """Multi-head keypoints→image attention that returns its map; ``dual`` makes it the
    pose-guided attention (image tokens updated by Aᵀ·V_J through their own projections)."""

    def __init__(self, dim: int, heads: int, dual: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.dual = heads, dual
        self.q, self.k, self.v_image = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj_joints = nn.Linear(dim, dim)
        if dual:
            self.v_joints, self.proj_image = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D) → (N, h, T, dh)
        n, t, d = x.shape
        return x.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        n, h, t, dh = x.shape
        return x.transpose(1, 2).reshape(n, t, h * dh)

    def forward(self, joints: torch.Tensor, image: torch.Tensor
                ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        q, k, v_i = self._split(self.q(joints)), self._split(self.k(image)), self._split(self.v_image(image))
        if self.dual:
            upd_j, upd_i, attn = pose_guided_attention(q, k, v_i, self._split(self.v_joints(joints)))
            return self.proj_joints(self._merge(upd_j)), self.proj_image(self._merge(upd_i)), attn
        upd_j, attn = keypoint_attention(q, k, v_i)
        return self.proj_joints(self._merge(upd_j)), None, attn


class QueryLayer(nn.Module):
    """Stage-1 layer: MSA over keypoints → (dual) MCA keypoints→image → FFN.

    With ``pose_guided`` the image tokens are updated too (Aᵀ·V_J, then their own FFN);
    with ``use_image=False`` the MCA is skipped (keypoint-only transformer layer).
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, pose_guided: bool, use_image: bool):
        super().__init__()
        self.norm_sa, self.sa = nn.LayerNorm(dim), SelfAttention(dim, heads, dropout)
        self.use_image, self.pose_guided = use_image, pose_guided and use_image
        if use_image:
            self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.cross = CrossAttention(dim, heads, dual=self.pose_guided)
        if self.pose_guided:
            self.norm_image_ffn, self.image_ffn = nn.LayerNorm(dim), FeedForward(dim, ffn_dim, dropout)
        self.norm_ffn, self.ffn = nn.LayerNorm(dim), FeedForward(dim, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, joints: torch.Tensor, image: Optional[torch.Tensor]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        joints = joints + self.drop(self.sa(self.norm_sa(joints)))
        attn = None
        if self.use_image:
            upd_j, upd_i, attn = self.cross(self.norm_q(joints), self.norm_kv(image))
            joints = joints + self.drop(upd_j)
            if upd_i is not None:
                image = image + self.drop(upd_i)
                image = image + self.drop(self.image_ffn(self.norm_image_ffn(image)))
        joints = joints + self.drop(self.ffn(self.norm_ffn(joints)))
        return joints, image, attn


# ----------------------------------------------------------------------------- heads, fusion

class PoseHead(nn.Module):
    """1×1 head: BN → Linear from tokens (N, T, D) to poses (N, T, J, C)."""

    def __init__(self, dim: int, channels: int, num_joints: int = NUM_JOINTS):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)
        self.linear = nn.Linear(dim, num_joints * channels)
        self.shape = (num_joints, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        return per_frame(nn.Sequential(self.norm, self.linear), x).reshape(n, t, *self.shape)


class Fusion(nn.Module):
    """Fuse same-shape branch features (N, F, d): 'mul' (APTPose), 'mul_raw', 'add', 'avg' or
    'cat' (+ linear).

    'mul' is APTPose's element-wise product of the four SEM outputs (paper §3.1: "hierarchical
    feature fusion module, which performs element-wise multiplication"), made well-conditioned:
    each branch is LayerNorm'ed before the product and the product is LayerNorm'ed again. 'mul_raw' is the
    product exactly as the authors' code computes it (wenwen12321/APTPose,
    ``model/stageI/stmo_pretrain_Arc3_Geo1.py`` and ``model/stageII/stmo_Arc3_Geo1_Freeze3_MaskII.py``:
    ``x = x4 * x3 * x2 * x1`` straight from the SEMs' last linear layer, no normalisation or
    bounded activation, default init, then ``+ pos_embedding`` into the TEM).

    Why 'mul' normalises, although the reference does not: the four SEMs see near-identical
    inputs, so their features are strongly correlated, and a product of four aligned features is
    a 4th power — its scale and tails grow as the 4th power of the branches'. Measured on the
    study's APTPose (``configs/study/apt_mul.yaml``, ``bench/apt_fusion.py``): the branches stay
    below RMS 2.1 through training while their raw product goes from RMS 0.3 at init to 20 within
    20 steps and up to 3·10³ later, single entries up to 10⁵, swinging ×10 between batches. That
    product is the TEM's residual stream, so it swamps every attention/FFN update; test MPJPE was
    257 ± 37 mm over 3 seeds against add's 199 ± 12. LayerNorm per branch fixes each factor's
    scale (no branch can win by growing), and the final LayerNorm bounds the fused token (RMS 1,
    entries ≤ √d at init) whatever the product does; the fusion stays multiplicative (209 ± 20 mm
    on the same seeds). The extra tensors are in the state dict, so a checkpoint of the old
    unnormalised 'mul' is refused by both loaders (missing keys); rebuild it with 'mul_raw'.
    """

    MODES = ("mul", "mul_raw", "add", "avg", "cat")

    def __init__(self, mode: str, dim: int, num_branches: int):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown fusion {mode!r}")
        self.mode = mode
        self.proj = nn.Linear(dim * num_branches, dim) if mode == "cat" else None
        if mode == "mul":
            self.branch_norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(num_branches)])
            self.out_norm = nn.LayerNorm(dim)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.mode == "cat":
            return self.proj(torch.cat(list(feats), dim=-1))
        if self.mode == "mul":
            feats = [norm(f) for norm, f in zip(self.branch_norms, feats)]
        product = self.mode in ("mul", "mul_raw")
        out = feats[0]
        for f in feats[1:]:
            out = out * f if product else out + f
        if self.mode == "mul":
            return self.out_norm(out)
        return out / len(feats) if self.mode == "avg" else out


def frame_root_and_scale(frame_2d: torch.Tensor, missing: Optional[torch.Tensor] = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame's (N, 17, 2) normalised 2D → its root (N, 2) and its size (N, 1): the RMS
    distance of the detected joints from their mean (``missing`` (N, 17) joints left out)."""
    seen = torch.ones_like(frame_2d[..., 0]) if missing is None else (~missing).to(frame_2d.dtype)
    count = seen.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (frame_2d * seen[..., None]).sum(1) / count
    spread = (((frame_2d - mean[:, None]) ** 2).sum(-1) * seen).sum(-1, keepdim=True) / count
    return frame_2d[:, ROOT], spread.sqrt().clamp_min(1e-3)


def trajectory_point(raw: torch.Tensor, root_2d: torch.Tensor, size_2d: torch.Tensor) -> torch.Tensor:
    """A trajectory head's (N, 3) raw output, the predicted frame's observed (N, 2) normalised root
    and (N, 1) 2D size (:func:`frame_root_and_scale`) → (N, 1, 3) the root as a unit-focal camera
    sees it (:func:`raypose.cameras.root_to_screen_depth`).

    Depth is ``z = exp(raw_z) / size_2d``: under perspective a body of height H at depth z' looks
    H / z' tall, so the head learns only the body's size over its 2D spread (near-constant, from
    the pose), not a reciprocal of pixel distances — the weak-perspective trick, which holds at
    every distance and lens. ``xy = (root_2d + raw_xy) · z``: the observed root back-projected to
    that depth plus a learned correction (a missing or mis-detected pelvis); back-projecting
    instead of regressing x, y keeps the head exact wherever the subject is in the image
    (training cameras follow the subject; test footage need not)."""
    z = torch.exp(raw[:, 2:3].clamp(-6.0, 6.0)) / size_2d
    return torch.cat([(root_2d + raw[:, :2]) * z, z], dim=-1).unsqueeze(1)


class TrajectoryHead(nn.Module):
    """Features (N, D) of the predicted frame → its root, :func:`trajectory_point`.

    A linear head on the features the pose head reads, trained into them (``loss.trajectory``):
    the shared encoder learns the scale cues the root needs, at the cost of one linear layer where
    VideoPose3D trains a second network. The root term is weighted low (0.1) because it competes
    with the pose for those features (README, "World trajectory"). What the head must add is
    small: the 2D size and the observed root come in explicitly (:func:`trajectory_point`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)
        self.linear = nn.Linear(dim, 3)

    def forward(self, features: torch.Tensor, frame_2d: torch.Tensor,
                missing: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``features`` (N, D) of the predicted frame, its (N, 17, 2) 2D and missing joints."""
        return trajectory_point(self.linear(self.norm(features)),
                                *frame_root_and_scale(frame_2d, missing))


class LiftingTail(nn.Module):
    """TEM tokens → 'multi' (every frame, 1×1 head) and 'centre' (MOFA → 1×1 head); with
    ``trajectory``, also 'trajectory' (N, 1, 3) from the MOFA token (:class:`TrajectoryHead`)."""

    def __init__(self, dim: int, num_frames: int, strides: Sequence[int], heads: int, ffn_dim: int,
                 dropout: float = 0.1, trajectory: bool = False):
        super().__init__()
        self.multi_head = PoseHead(dim, 3)
        self.mofa = StridedTransformer(dim, strides, heads, ffn_dim, num_frames, dropout)
        self.centre_head = PoseHead(dim, 3)
        self.trajectory_head = TrajectoryHead(dim) if trajectory else None

    def forward(self, tokens: torch.Tensor, frame_2d: Optional[torch.Tensor] = None,
                frame_missing: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """``frame_2d`` (N, 17, 2) / ``frame_missing`` (N, 17): the predicted frame's 2D, for the
        trajectory head."""
        pooled = self.mofa(tokens)
        out = {"multi": self.multi_head(tokens), "centre": self.centre_head(pooled)}
        if self.trajectory_head is not None:
            out["trajectory"] = self.trajectory_head(pooled[:, 0], frame_2d, frame_missing)
        return out


@dataclass
class LoadReport:
    """What :meth:`PretrainedEncoderMixin.load_pretrained` did with every encoder tensor.

    Why it exists: a tensor skipped silently stays randomly initialised and fine-tuning then
    quietly starts from a half-pretrained model (e.g. a checkpoint of another width).
    """

    loaded: list[str] = field(default_factory=list)
    #: ``name: (1, 27, d) -> (1, 81, d)`` positional embeddings interpolated to this length
    resampled: list[str] = field(default_factory=list)
    #: ``name: why`` tensors left at their initial values (or checkpoint tensors not taken)
    skipped: list[str] = field(default_factory=list)
    #: checkpoint tensors of pretraining-only parts the lifting model has no use for
    unused: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"loaded {len(self.loaded)} encoder tensors"
               + (f" ({len(self.resampled)} positional embeddings resampled)" if self.resampled else "")]
        out += [f"  resampled {r}" for r in self.resampled]
        out += [f"  skipped {r}" for r in self.skipped]
        if self.unused:
            out.append(f"  not used (pretraining only): {len(self.unused)} tensors, e.g. {self.unused[0]}")
        return out


def resample_positions(pos: torch.Tensor, length: int) -> torch.Tensor:
    """A learned (1, F, D) positional embedding linearly interpolated to (1, length, D)."""
    x = pos.detach().float().transpose(1, 2)                    # (1, D, F)
    y = F.interpolate(x, size=length, mode="linear", align_corners=True)
    return y.transpose(1, 2).to(pos.dtype).contiguous()


def _is_positional(name: str, theirs: torch.Size, ours: torch.Size) -> bool:
    """Same (1, ·, D) frame-position table at another number of frames."""
    return ("pos_embed" in name and len(theirs) == len(ours) == 3 and theirs[0] == ours[0] == 1
            and theirs[2] == ours[2] and theirs[1] != ours[1])


class PretrainedEncoderMixin:
    """Weight hand-over between stages by parameter name (prefix ``encoder.``).

    A pretraining model's ``encoder_state_dict()`` holds its ``encoder`` submodule's tensors;
    a lifting model's ``load_pretrained`` copies them by name, resamples positional embeddings
    of another clip length, and refuses (``strict``) any other mismatch, listing each one.
    """

    ENCODER_PREFIX = "encoder."
    #: Name prefixes of encoder parts only pretraining has (e.g. MPM's 3D stem): not a mismatch.
    PRETRAINING_ONLY: tuple[str, ...] = ()

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(self.ENCODER_PREFIX)}

    def plan_pretrained(self, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], LoadReport]:
        """(tensors to load, report) — nothing is loaded yet."""
        own = {k: v for k, v in self.state_dict().items() if k.startswith(self.ENCODER_PREFIX)}
        theirs = {k: v for k, v in state_dict.items() if k.startswith(self.ENCODER_PREFIX)}
        take: dict[str, torch.Tensor] = {}
        report = LoadReport()
        for k, mine in own.items():
            if k not in theirs:
                report.skipped.append(f"{k}: not in the checkpoint (stays randomly initialised)")
            elif theirs[k].shape == mine.shape:
                take[k] = theirs[k]
                report.loaded.append(k)
            elif _is_positional(k, theirs[k].shape, mine.shape):
                take[k] = resample_positions(theirs[k], mine.shape[1])
                report.loaded.append(k)
                report.resampled.append(f"{k}: {tuple(theirs[k].shape)} -> {tuple(mine.shape)}")
            else:
                report.skipped.append(f"{k}: shape {tuple(theirs[k].shape)} in the checkpoint, "
                                      f"{tuple(mine.shape)} here")
        for k in theirs.keys() - own.keys():
            if self.PRETRAINING_ONLY and k.startswith(self.PRETRAINING_ONLY):
                report.unused.append(k)
            else:
                report.skipped.append(f"{k}: in the checkpoint, no tensor of that name here")
        report.loaded.sort()
        report.skipped.sort()
        report.unused.sort()
        return take, report

    def load_pretrained(self, state_dict: dict[str, torch.Tensor], strict: bool = True) -> LoadReport:
        """Load the encoder tensors of a pretraining model; a skipped tensor is a
        :class:`~raypose.errors.ConfigError` unless ``strict`` is False (then it is reported)."""
        take, report = self.plan_pretrained(state_dict)
        if strict and report.skipped:
            raise ConfigError(
                f"pretrained encoder does not fit this model: {len(report.skipped)} tensors would be "
                f"skipped ({len(report.loaded)} fit):\n" + "\n".join(f"  {r}" for r in report.skipped)
                + "\n(same model, width and depth needed; train.init_strict: false fine-tunes anyway "
                  "with those tensors left as initialised)")
        if not report.loaded:
            raise ConfigError("pretrained encoder: no tensor matched this model")
        self.load_state_dict(take, strict=False)
        return report


def iter_modules_of(model: nn.Module, kinds: Iterable[type]) -> list[nn.Module]:
    """All submodules of the given classes (used by tests and FLOP reports)."""
    kinds = tuple(kinds)
    return [m for m in model.modules() if isinstance(m, kinds)]
