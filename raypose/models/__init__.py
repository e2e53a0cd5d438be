"""Model registry: every lifting model is built by name; callers never import a model class.

``build(name, num_frames, stage, **overrides)`` returns the pretraining model
(``forward(pose_2d, masks, pose_3d=None, step=0) -> dict`` + ``encoder_state_dict()``) or the
lifting model (``forward(pose_2d, joints_missing=None) -> dict`` with 'centre' and, where it has
one, 'multi'; + ``load_pretrained(state_dict) -> list[str]``).
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import nn

from raypose.models.aptpose import APTPoseLift, APTPosePretrain
from raypose.models.baseline import MartinezBaseline, WindowMLPLift
from raypose.models.blocks import default_strides
from raypose.models.image_lift import ImageLift
from raypose.models.mpm import MPMLift, MPMPretrain
from raypose.models.pstmo import PSTMOLift, PSTMOPretrain
from raypose.skeleton import FLIP_PERMUTATION, NUM_JOINTS, flip_pose

_COMMON = dict(dim=256, ffn_dim=512, heads=8, dropout=0.1, sem_hidden=512)

#: name → (pretraining class | None, lifting class, default hyper-parameters)
REGISTRY: dict[str, tuple[Optional[type], type, dict[str, Any]]] = {
    "pstmo": (PSTMOPretrain, PSTMOLift, dict(_COMMON, depth=4, decoder_depth=3)),
    "pstmo_s": (PSTMOPretrain, PSTMOLift, dict(_COMMON, depth=3, decoder_depth=2)),
    "mpm": (MPMPretrain, MPMLift, dict(_COMMON, depth=4, decoder_depth=1)),
    "aptpose": (APTPosePretrain, APTPoseLift, dict(_COMMON, depth=4, decoder_depth=3, fusion="mul")),
    "baseline": (None, MartinezBaseline, dict(hidden=1024, blocks=2, dropout=0.5)),
    "window_mlp": (None, WindowMLPLift, dict(hidden=1024, blocks=2, dropout=0.25)),
    "image_lift": (None, ImageLift, dict(dim=128, ffn_dim=256, heads=4, depth=3, dropout=0.1)),
}

STAGES = ("pretrain", "finetune")

#: Lifting models that can carry a trajectory head (``model.trajectory``): the root's
#: camera-space position from the same features as the pose.
TRAJECTORY_MODELS = ("pstmo", "pstmo_s", "window_mlp")


def names() -> list[str]:
    return sorted(REGISTRY)


def build(name: str, num_frames: int = 27, stage: str = "finetune", **overrides: Any) -> nn.Module:
    """Build model ``name`` for ``stage``; ``overrides`` replace the registry defaults.

    Overrides a model class does not take (e.g. ``decoder_depth`` for a lifting model) are
    ignored if some stage of that model takes them; unknown names raise ``TypeError``.
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {names()}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    pre_cls, lift_cls, defaults = REGISTRY[name]
    cls = pre_cls if stage == "pretrain" else lift_cls
    if cls is None:
        raise ValueError(f"model {name!r} has no {stage} stage")
    known = {p for c in (pre_cls, lift_cls) if c is not None
             for p in inspect.signature(c.__init__).parameters}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"model {name!r} takes no argument(s) {sorted(unknown)}")
    kwargs = dict(defaults, **overrides)
    if kwargs.get("strides") is not None and len(kwargs["strides"]) == 0:
        kwargs["strides"] = None  # empty list = derive from num_frames
    accepted = inspect.signature(cls.__init__).parameters
    return cls(num_frames=num_frames, **{k: v for k, v in kwargs.items() if k in accepted})


def build_from_config(cfg: Any, stage: Optional[str] = None) -> nn.Module:
    """Build from a :class:`raypose.config.Config` (``model`` section + ``data.num_frames``)."""
    m = cfg.model
    stage = stage or cfg.train.stage
    if m.name in ("baseline", "window_mlp"):  # MLPs: width/depth from model.extra (hidden, blocks)
        kw: dict[str, Any] = dict(dropout=m.dropout)
    else:
        kw = dict(dim=m.dim, ffn_dim=m.ffn_dim, heads=m.heads, depth=m.depth, dropout=m.dropout,
                  sem_hidden=m.sem_hidden, strides=list(m.strides) or None)
        if stage == "pretrain":
            kw.update(decoder_depth=m.decoder_depth)
            if m.decoder_dim:
                kw["decoder_dim"] = m.decoder_dim
        if m.name == "aptpose":
            kw["fusion"] = m.fusion
    if getattr(m, "trajectory", False):
        if m.name not in TRAJECTORY_MODELS:
            from raypose.errors import ConfigError

            raise ConfigError(f"model.trajectory: model {m.name!r} has no trajectory head; "
                              f"models with one: {', '.join(TRAJECTORY_MODELS)}")
        if stage == "finetune":
            kw["trajectory"] = True
    kw.update(m.extra)
    return build(m.name, num_frames=cfg.data.num_frames, stage=stage, **kw)


def flip_average(model: nn.Module, pose_2d: torch.Tensor,
                 joints_missing: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Test-time flip augmentation: mean of f(x) and flip(f(flip(x))) for every output (poses:
    x → −x and left ↔ right; the (N, 1, 3) 'trajectory' root: x → −x)."""
    out = model(pose_2d, joints_missing)
    flipped_missing = joints_missing[..., list(FLIP_PERMUTATION)] if joints_missing is not None else None
    out_f = model(flip_pose(pose_2d), flipped_missing)
    mirror = torch.tensor([-1.0, 1.0, 1.0], device=pose_2d.device)
    return {k: (v + (out_f[k] * mirror.to(v.dtype) if k == "trajectory" else flip_pose(out_f[k]))) / 2
            for k, v in out.items()}


@torch.no_grad()
def count_flops(model: nn.Module, num_frames: int) -> int:
    """FLOPs (multiply and add counted separately, i.e. 2 × MACs) per output frame.

    Runs one clip (batch 1) through the lifting model in eval mode under
    ``torch.utils.flop_counter.FlopCounterMode``; the lifting models emit one centre frame
    per clip, so the clip's count is the per-frame count. Norms/activations are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, num_frames, NUM_JOINTS, 2, dtype=param.dtype, device=param.device)
    try:
        with FlopCounterMode(display=False) as counter:
            out = model(x)
    finally:
        model.train(was_training)
    frames = out["centre"].shape[1] if "centre" in out else num_frames
    return int(counter.get_total_flops() // frames)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["REGISTRY", "TRAJECTORY_MODELS", "build", "build_from_config", "count_flops", "count_parameters",
           "default_strides", "flip_average", "names"]
