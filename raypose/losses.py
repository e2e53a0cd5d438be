"""Losses keyed by model output name, weighted by :class:`raypose.config.LossConfig`.

All pose losses are MPJPE-style: the Euclidean distance per joint, averaged. 3D terms only
count clips that have 3D ground truth (``has_3d``) and, within them, joints whose target is known
(``valid_3d``, else the finite ones: a mocap gap is masked, never a NaN gradient); bones and
velocities count when both their joints are known. Reconstruction terms can be restricted to
the positions the encoder did not see (``masked_only``, MAE-style).
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from raypose.cameras import root_to_screen_depth
from raypose.errors import ConfigError
from raypose.masking import Masks
from raypose.skeleton import BONES, bone_vectors


def _mean(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``values`` where ``weight`` (broadcastable, bool/float) is set; 0 if nothing is."""
    if weight is None:
        return values.mean()
    w = weight.to(values.dtype).expand_as(values)
    total = w.sum()
    # keep the graph connected (and the value 0) when no element counts
    return (values * w).sum() / total.clamp_min(1.0)


def _clip_weight(values: torch.Tensor, clips: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(N,) clip selector → shape broadcastable to per-joint ``values`` (N, ...)."""
    if clips is None:
        return None
    return clips.reshape(-1, *([1] * (values.dim() - 1)))


def mpjpe_loss(pred: torch.Tensor, target: torch.Tensor, clips: Optional[torch.Tensor] = None,
               joints: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean per-joint L2 distance. pred/target (N, F, J, C); clips (N,) and joints (N, F, J) select."""
    err = torch.linalg.vector_norm(pred - target, dim=-1)  # (N, F, J)
    weight = _clip_weight(err, clips.to(torch.bool) if clips is not None else None)
    if joints is not None:
        weight = joints if weight is None else weight & joints
    return _mean(err, weight)


def bone_loss(pred: torch.Tensor, target: torch.Tensor, clips: Optional[torch.Tensor] = None,
              joints: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean L2 distance between bone vectors (child − parent): orientation and length at once.
    ``joints`` (N, F, 17) known joints: a bone counts when both its ends are known."""
    bones = None
    if joints is not None:
        bones = joints[..., [c for c, _ in BONES]] & joints[..., [p for _, p in BONES]]
    return mpjpe_loss(bone_vectors(pred), bone_vectors(target), clips, bones)


def velocity_loss(pred: torch.Tensor, target: torch.Tensor, clips: Optional[torch.Tensor] = None,
                  joints: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean L2 distance between frame-to-frame joint displacements (needs F ≥ 2); a joint's
    displacement counts when it is known in both frames."""
    if pred.shape[1] < 2:
        return pred.sum() * 0.0
    both = None if joints is None else joints[:, 1:] & joints[:, :-1]
    return mpjpe_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1], clips, both)


def trajectory_loss(pred: torch.Tensor, root_3d: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Root position error relative to depth, VideoPose3D's 1/z-weighted trajectory loss in a
    form whose gradient stays bounded: ``pred`` (N, 1, 3) in the unit-focal frame
    (:func:`raypose.cameras.root_to_screen_depth`), ``root_3d`` (N, 3) camera metres (z ≤ 0:
    unknown, not counted), ``camera`` (N, 23).

    Per clip the error is the norm of (Δ(x/z), Δ(y/z), Δ log z) — the direction of the root from
    the camera and its log depth — which for small errors equals ‖Δroot‖ / z (a far subject's
    depth is ambiguous by more centimetres for the same 2D error, so it counts relative to its
    depth), while a wild depth guess early in training costs log-many, not z-many, units."""
    known = torch.isfinite(root_3d).all(-1) & (root_3d[:, 2] > 0)
    root = torch.where(known[:, None], root_3d, torch.ones_like(root_3d))
    target = root_to_screen_depth(root, camera)
    p = pred[:, 0]
    z = p[:, 2:3].clamp_min(1e-6)
    err = torch.cat([p[:, :2] / z - target[:, :2] / target[:, 2:3], torch.log(z) - torch.log(target[:, 2:3])], -1)
    return _mean(torch.linalg.vector_norm(err, dim=-1), known)


def known_targets(pose_3d: torch.Tensor, valid_3d: Optional[torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(target with unknown joints set to 0, (N, F, J) known joints): ``valid_3d`` when given,
    and in any case only finite joints — a NaN times a zero weight is still NaN."""
    finite = torch.isfinite(pose_3d).all(-1)
    known = finite if valid_3d is None else finite & valid_3d.to(torch.bool)
    return torch.where(known[..., None], pose_3d, torch.zeros_like(pose_3d)), known


def _and(a: Optional[torch.Tensor], b: torch.Tensor) -> torch.Tensor:
    return b if a is None else a & b


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, hidden: Optional[torch.Tensor] = None,
                        clips: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Masked pose modeling loss: over every joint of every frame, or over ``hidden`` (N, F, J) only."""
    return mpjpe_loss(pred, target, clips, hidden)


def hidden_positions(masks: Optional[Masks]) -> Optional[torch.Tensor]:
    """(N, F, J) joints the encoder did not see: dropped frames, masked joints, masked levels."""
    if masks is None:
        return None
    hidden = masks.joints_masked | masks.frames_masked.unsqueeze(-1)
    for level in masks.levels.values():
        hidden = hidden | level
    return hidden


def weighted(terms: dict[str, tuple[float, torch.Tensor]]) -> torch.Tensor:
    """Σ weight · value over the named terms."""
    values = [w * v for w, v in terms.values()]
    return torch.stack(values).sum() if values else torch.zeros(())


def _target(targets: Any, key: str, default: Any = KeyError) -> Any:
    if isinstance(targets, dict):
        return targets[key] if default is KeyError else targets.get(key, default)
    return getattr(targets, key) if default is KeyError else getattr(targets, key, default)


def compute_losses(outputs: dict[str, torch.Tensor], targets: Any, masks: Optional[Masks],
                   cfg: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its unweighted parts (detached 0-dim tensors, for logging).

    ``targets``: dict (or a ClipBatch) with 'pose_2d' (N, F, 17, 2), 'pose_3d' (N, F, 17, 3),
    'has_3d' (N,), 'centre_index' and optionally 'valid_3d' (N, F, 17): known 3D joints. Output → term: 'multi' → multi_frame (+ bone_multi_frame,
    + velocity); 'centre' → single_frame (+ bone_single_frame); 'rec_2d' and 'reproj_2d' →
    rec_2d; 'rec_3d' and 'lift_3d' → rec_3d; 'trajectory' → trajectory (needs 'root_3d' (N, F, 3)
    and 'camera' (N, 23)). Terms with weight 0 are skipped.
    """
    pose_2d = _target(targets, "pose_2d")
    pose_3d, known = known_targets(_target(targets, "pose_3d"), _target(targets, "valid_3d", None))
    has_3d = _target(targets, "has_3d")
    has_3d = has_3d.to(torch.bool) if has_3d is not None else None
    c = int(_target(targets, "centre_index"))
    hidden = hidden_positions(masks) if cfg.masked_only else None

    terms: dict[str, tuple[float, torch.Tensor]] = {}

    def add(name: str, weight: float, fn, *args) -> None:
        if weight:
            terms[name] = (float(weight), fn(*args))

    if "multi" in outputs:
        m = outputs["multi"]
        add("multi_frame", cfg.multi_frame, mpjpe_loss, m, pose_3d, has_3d, known)
        add("bone_multi_frame", cfg.bone_multi_frame, bone_loss, m, pose_3d, has_3d, known)
        add("velocity", cfg.velocity, velocity_loss, m, pose_3d, has_3d, known)
    if "centre" in outputs:
        centre_3d, centre_known = pose_3d[:, c:c + 1], known[:, c:c + 1]
        add("single_frame", cfg.single_frame, mpjpe_loss, outputs["centre"], centre_3d, has_3d, centre_known)
        add("bone_single_frame", cfg.bone_single_frame, bone_loss, outputs["centre"], centre_3d, has_3d,
            centre_known)
    if "rec_2d" in outputs:
        add("rec_2d", cfg.rec_2d, reconstruction_loss, outputs["rec_2d"], pose_2d, hidden)
    if "reproj_2d" in outputs:
        add("reproj_2d", cfg.rec_2d, reconstruction_loss, outputs["reproj_2d"], pose_2d, hidden)
    if "rec_3d" in outputs:
        add("rec_3d", cfg.rec_3d, reconstruction_loss, outputs["rec_3d"], pose_3d, _and(hidden, known), has_3d)
    if "lift_3d" in outputs:
        add("lift_3d", cfg.rec_3d, mpjpe_loss, outputs["lift_3d"], pose_3d, has_3d, known)
    if "trajectory" in outputs and getattr(cfg, "trajectory", 0.0):
        root_3d, camera = _target(targets, "root_3d", None), _target(targets, "camera", None)
        if root_3d is None or camera is None:
            raise ConfigError("the model has a trajectory head (model.trajectory) but its clips carry "
                              "no camera-space root positions (root_3d) and cameras: data from a "
                              "store written before root positions were stored? re-run `raypose prepare`")
        add("trajectory", cfg.trajectory, trajectory_loss, outputs["trajectory"], root_3d[:, c], camera)

    if not terms:
        raise ValueError(f"no loss term applies to outputs {sorted(outputs)} with these weights")
    total = weighted(terms)
    # detached tensors, not floats: a float per part per step would make the host wait for the
    # GPU at every step; the training loop sums them and converts once per epoch
    parts = {name: v.detach() for name, (_, v) in terms.items()}
    parts["total"] = total.detach()
    return total, parts
