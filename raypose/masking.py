"""Masks for masked pose modeling: pure, batched, seeded functions on tensors.

Every function draws its randomness from a ``torch.Generator`` on the generator's own device and
moves the result to ``device``, so one seed gives the same masks on CPU and GPU. No Python loop
runs over clips or frames: choices are made MAE-style, by ranking uniform noise (``argsort``) and
keeping the first k — which gives *exactly* k distinct picks per row.

Strategies (``MaskingConfig.strategy``):

- ``temporal`` (P-STMO §3.1): ``round(q_T·F)`` frames per clip dropped.
- ``spatial`` (P-STMO §3.1): ``m_S`` joints per frame, different in every frame; no frame dropped.
- ``spatiotemporal`` (P-STMO, MPM): temporal, then ``m_S`` joints on each *visible* frame, so the
  total ratio is ``q_T + (1 − q_T)·m_S/J``.
- ``tube`` (MPM appendix B): the same ``m_S`` joints in every frame of a clip; no frame dropped.
- ``hierarchical`` (APTPose HMPM §3.1): one joint mask per anatomy level, see
  :func:`hierarchical_masks` for the reading of the paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch

from raypose import skeleton


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


#: APTPose's public code masks one bone, one limb and one body half per frame at those levels;
#: the keypoint level masks ``spatial_joints`` (m_S) joints, like P-STMO's spatial masking.
DEFAULT_LEVEL_GROUPS: dict[str, int] = {"bone": 1, "limb": 1, "body": 1}


# --------------------------------------------------------------------------------------------
# random draws
# --------------------------------------------------------------------------------------------

def _gen_device(generator: Optional[torch.Generator]) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def uniform(shape: Sequence[int], generator: Optional[torch.Generator],
            device: torch.device | str | None = None) -> torch.Tensor:
    """U[0, 1) float32 drawn on the generator's device, then moved to ``device``."""
    out = torch.rand(tuple(shape), generator=generator, device=_gen_device(generator))
    return out if device is None else out.to(device)


def normal(shape: Sequence[int], generator: Optional[torch.Generator],
           device: torch.device | str | None = None) -> torch.Tensor:
    """N(0, 1) float32 drawn on the generator's device, then moved to ``device``."""
    out = torch.randn(tuple(shape), generator=generator, device=_gen_device(generator))
    return out if device is None else out.to(device)


def _choose(shape: Sequence[int], k: int, generator: Optional[torch.Generator],
            device) -> torch.Tensor:
    """Bool mask of ``shape`` with exactly ``k`` True entries along the last axis, at random."""
    shape = tuple(shape)
    if not 0 <= k <= shape[-1]:
        raise ValueError(f"cannot choose {k} of {shape[-1]}")
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    if k == 0:
        return mask
    order = uniform(shape, generator, device).argsort(dim=-1)
    return mask.scatter_(-1, order[..., :k], True)


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------

def num_masked_frames(num_frames: int, ratio: float) -> int:
    """``round(ratio·F)`` (half up), capped at F − 1 so the encoder always sees one frame."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"temporal ratio must be in [0, 1], got {ratio}")
    k = int(math.floor(ratio * num_frames + 0.5))
    return max(0, min(k, num_frames - 1))


def temporal_mask(num_clips: int, num_frames: int, ratio: float,
                  generator: Optional[torch.Generator], device=None) -> torch.Tensor:
    """(N, F) bool: exactly :func:`num_masked_frames` frames dropped per clip (MAE-style)."""
    return _choose((num_clips, num_frames), num_masked_frames(num_frames, ratio), generator, device)


def spatial_mask(num_clips: int, num_frames: int, joints: int,
                 generator: Optional[torch.Generator], device=None,
                 num_joints: int = skeleton.NUM_JOINTS) -> torch.Tensor:
    """(N, F, J) bool: exactly ``joints`` of the J joints per frame, drawn anew in every frame."""
    return _choose((num_clips, num_frames, num_joints), joints, generator, device)


def spatiotemporal_mask(num_clips: int, num_frames: int, ratio: float, joints: int,
                        generator: Optional[torch.Generator], device=None,
                        num_joints: int = skeleton.NUM_JOINTS) -> tuple[torch.Tensor, torch.Tensor]:
    """P-STMO: frames dropped first, then ``joints`` joints on each visible frame only."""
    frames = temporal_mask(num_clips, num_frames, ratio, generator, device)
    spatial = spatial_mask(num_clips, num_frames, joints, generator, device, num_joints)
    return frames, spatial & ~frames[..., None]


def tube_mask(num_clips: int, num_frames: int, joints: int,
              generator: Optional[torch.Generator], device=None,
              num_joints: int = skeleton.NUM_JOINTS) -> torch.Tensor:
    """(N, F, J) bool: the same ``joints`` joints hidden in every frame of a clip (MPM tube)."""
    per_clip = _choose((num_clips, num_joints), joints, generator, device)
    return per_clip[:, None, :].expand(num_clips, num_frames, num_joints).contiguous()


def group_matrix(level: str, device=None) -> torch.Tensor:
    """(G, 17) bool: row g marks the joints of anatomy group g at ``level``."""
    groups = skeleton.anatomy_groups(level)
    m = torch.zeros(len(groups), skeleton.NUM_JOINTS, dtype=torch.bool)
    for g, joints in enumerate(groups):
        m[g, list(joints)] = True
    return m.to(device) if device is not None else m


def group_mask(num_clips: int, num_frames: int, level: str, count: int,
               generator: Optional[torch.Generator], device=None) -> torch.Tensor:
    """(N, F, 17) bool: the union of ``count`` distinct groups of ``level``, drawn per frame."""
    members = group_matrix(level, device)
    chosen = _choose((num_clips, num_frames, members.shape[0]), count, generator, device)
    return (chosen.to(torch.float32) @ members.to(torch.float32)) > 0


def level_group_counts(cfg) -> dict[str, int]:
    """Groups masked per frame at each level: keypoint → ``spatial_joints``, others → config or 1.

    Reads ``cfg.level_groups`` (a mapping level → count) when the config has it.
    """
    counts = {"keypoint": int(getattr(cfg, "spatial_joints", 1))}
    counts.update(DEFAULT_LEVEL_GROUPS)
    counts.update({k: int(v) for k, v in (getattr(cfg, "level_groups", None) or {}).items()})
    return counts


def hierarchical_masks(num_clips: int, num_frames: int, levels: Sequence[str],
                       generator: Optional[torch.Generator], device=None,
                       counts: Optional[Mapping[str, int]] = None) -> dict[str, torch.Tensor]:
    """APTPose HMPM: one (N, F, 17) joint mask per anatomy level, drawn independently per frame.

    Reading of the paper (§3.1, Eq. 1): each level masks "a fixed set" of joints per frame,
    ``m^level`` of them, with the choice varying by frame, and the levels are masked in parallel
    (one input per SEM branch). The paper does not give the per-level counts; the authors' public
    code masks ``m_S`` single joints at the keypoint level and one bone / one limb / one body half
    per frame at the others, which are the defaults here (``counts`` overrides them). Bones share
    joints, so two bones may cover 3 joints; a count is a number of *groups*, not joints. The
    temporal mask (Fig. 2 "temporal padding embedding") is applied by :func:`make_masks`, shared by
    all levels, as in P-STMO's spatio-temporal masking.
    """
    counts = {"keypoint": 2, **DEFAULT_LEVEL_GROUPS, **(counts or {})}
    return {lv: group_mask(num_clips, num_frames, lv, counts[lv], generator, device) for lv in levels}


def missing_mask(confidence: torch.Tensor) -> torch.Tensor:
    """(…, J) bool: joints the detector missed — confidence ≤ 0 or NaN."""
    return ~(confidence > 0)


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------

def make_masks(num_clips: int, num_frames: int, cfg, generator: Optional[torch.Generator],
               device=None, confidence: Optional[torch.Tensor] = None) -> Masks:
    """Masks for one batch of clips according to ``cfg`` (a :class:`MaskingConfig`).

    Joint masks cover visible frames only (a dropped frame never reaches the encoder), except
    for real missing detections: with ``cfg.mask_missing`` and ``confidence`` (N, F, 17) given,
    missing joints are OR-ed into ``joints_masked`` and into every level, on every frame.
    For 'hierarchical', ``levels`` holds one mask per ``cfg.levels`` entry and ``joints_masked``
    is the keypoint level (or, without it, the finest level requested), so a model or loss that
    knows only ``joints_masked`` still sees a P-STMO-like spatial mask.
    """
    n, f, j = num_clips, num_frames, skeleton.NUM_JOINTS
    strategy = cfg.strategy
    device = torch.device(device) if device is not None else _gen_device(generator)
    frames = torch.zeros(n, f, dtype=torch.bool, device=device)
    joints = torch.zeros(n, f, j, dtype=torch.bool, device=device)
    levels: dict[str, torch.Tensor] = {}
    if strategy == "none":
        pass
    elif strategy == "temporal":
        frames = temporal_mask(n, f, cfg.temporal_ratio, generator, device)
    elif strategy == "spatial":
        joints = spatial_mask(n, f, cfg.spatial_joints, generator, device)
    elif strategy == "spatiotemporal":
        frames, joints = spatiotemporal_mask(n, f, cfg.temporal_ratio, cfg.spatial_joints,
                                             generator, device)
    elif strategy == "tube":
        joints = tube_mask(n, f, cfg.spatial_joints, generator, device)
    elif strategy == "hierarchical":
        if not cfg.levels:
            raise ValueError("masking.strategy 'hierarchical' needs at least one level")
        frames = temporal_mask(n, f, cfg.temporal_ratio, generator, device)
        ordered = [lv for lv in skeleton.ANATOMY_LEVELS if lv in cfg.levels]
        raw = hierarchical_masks(n, f, ordered, generator, device, level_group_counts(cfg))
        levels = {lv: raw[lv] & ~frames[..., None] for lv in cfg.levels}
        joints = levels["keypoint"] if "keypoint" in levels else levels[ordered[0]]
    else:
        raise ValueError(f"unknown masking strategy {strategy!r}")

    if getattr(cfg, "mask_missing", False) and confidence is not None:
        if tuple(confidence.shape) != (n, f, j):
            raise ValueError(f"confidence has shape {tuple(confidence.shape)}, expected {(n, f, j)}")
        missing = missing_mask(confidence.to(device))
        joints = joints | missing
        levels = {lv: m | missing for lv, m in levels.items()}
    return Masks(frames, joints, levels)
