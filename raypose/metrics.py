"""3D pose metrics as the lifting literature reports them, on numpy arrays or torch tensors.

Every metric takes ``pred, target`` of shape (…, J, 3) in one unit and returns that unit
(PCK/AUC: percent). The result has the kind of ``pred``: a numpy float for arrays, a 0-d
tensor for tensors (differentiable where the metric is). ``reduce=False`` returns one value
per frame, shape (…), so evaluation can build per-action tables; averaging those values
frame-weighted gives the reduced number.

Protocols: MPJPE (#1), P-MPJPE (#2, after a per-frame similarity Procrustes alignment),
N-MPJPE (after a per-frame scale fit), MPJVE (velocity error, frames on axis -3),
PCK/AUC on the 14 joints of the MPI-INF-3DHP protocol.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from raypose.skeleton import BONES, NUM_JOINTS, PCK_JOINTS_3DHP

Array = Any  # np.ndarray | torch.Tensor

#: PCK threshold (mm) and AUC thresholds 0, 5, …, 150 mm of the 3DHP protocol.
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in range(0, 151, 5))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _pair(pred: Array, target: Array) -> tuple[Array, Array, bool]:
    """Bring both inputs to pred's kind (and dtype/device); check shapes."""
    if _is_torch(pred):
        import torch

        target = torch.as_tensor(target, dtype=pred.dtype, device=pred.device)
        torch_ = True
    else:
        if _is_torch(target):
            target = target.detach().cpu().numpy()
        pred = np.asarray(pred, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        torch_ = False
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim < 2:
        raise ValueError(f"expected (..., J, C) poses, got shape {tuple(pred.shape)}")
    return pred, target, torch_


def _norm(x: Array) -> Array:
    """Euclidean norm over the last axis; torch's has a zero (not NaN) gradient at 0."""
    if _is_torch(x):
        import torch

        return torch.linalg.vector_norm(x, dim=-1)
    return np.sqrt((x**2).sum(-1))


def _finish(per_frame: Array, reduce: bool) -> Array:
    if not reduce:
        return per_frame
    return per_frame.mean() if _is_torch(per_frame) else np.float64(per_frame.mean())


def mpjpe(pred: Array, target: Array, reduce: bool = True) -> Array:
    """Mean per-joint position error (Protocol #1)."""
    pred, target, _ = _pair(pred, target)
    return _finish(_norm(pred - target).mean(-1), reduce)


def procrustes_align(pred: Array, target: Array) -> Array:
    """``pred`` aligned to ``target`` per frame by the best rotation, scale and translation.

    Umeyama/Kabsch via SVD of the (3×3) cross-covariance. The sign of the smallest singular
    direction is flipped when needed so the rotation is proper (det +1): a mirror image must
    not be "aligned" away by a reflection.
    """
    pred, target, is_torch = _pair(pred, target)
    mu_p = pred.mean(-2, keepdims=True) if not is_torch else pred.mean(-2, keepdim=True)
    mu_t = target.mean(-2, keepdims=True) if not is_torch else target.mean(-2, keepdim=True)
    P, T = pred - mu_p, target - mu_t
    cov = P.swapaxes(-1, -2) @ T if not is_torch else P.transpose(-1, -2) @ T  # (…, 3, 3)
    if is_torch:
        import torch

        U, S, Vt = torch.linalg.svd(cov)
        sign = torch.sign(torch.linalg.det(U @ Vt))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        D = torch.ones_like(S)
        D = torch.cat([D[..., :-1], sign[..., None]], dim=-1)
        R = (U * D[..., None, :]) @ Vt
        var = (P**2).sum((-1, -2))
        scale = (S * D).sum(-1) / var.clamp_min(torch.finfo(var.dtype).tiny)
    else:
        U, S, Vt = np.linalg.svd(cov)
        sign = np.sign(np.linalg.det(U @ Vt))
        sign = np.where(sign == 0, 1.0, sign)
        D = np.ones_like(S)
        D[..., -1] = sign
        R = (U * D[..., None, :]) @ Vt
        var = (P**2).sum((-1, -2))
        scale = (S * D).sum(-1) / np.maximum(var, np.finfo(var.dtype).tiny)
    return scale[..., None, None] * (P @ R) + mu_t


def p_mpjpe(pred: Array, target: Array, reduce: bool = True) -> Array:
    """MPJPE after per-frame Procrustes alignment with scale (Protocol #2)."""
    pred, target, _ = _pair(pred, target)
    return mpjpe(procrustes_align(pred, target), target, reduce)


def n_mpjpe(pred: Array, target: Array, reduce: bool = True) -> Array:
    """MPJPE after the per-frame least-squares scale ``<pred, target> / <pred, pred>``.

    No re-centring: poses are root-relative, so only the scale ambiguity of monocular
    lifting is factored out (as in VideoPose3D / Rhodin et al.).
    """
    pred, target, _ = _pair(pred, target)
    num = (pred * target).sum((-1, -2))
    den = (pred * pred).sum((-1, -2))
    if _is_torch(den):
        den = den.clamp_min(float(np.finfo(np.float32).tiny))
    else:
        den = np.maximum(den, np.finfo(den.dtype).tiny)
    return mpjpe((num / den)[..., None, None] * pred, target, reduce)


def mpjve(pred: Array, target: Array, reduce: bool = True) -> Array:
    """Mean per-joint velocity error: MPJPE of first differences along the frames axis (-3).

    Per-frame values have shape (…, F-1): one per consecutive pair of frames.
    """
    pred, target, _ = _pair(pred, target)
    if pred.ndim < 3 or pred.shape[-3] < 2:
        raise ValueError(f"mpjve needs (..., F>=2, J, C) sequences, got shape {tuple(pred.shape)}")
    return mpjpe(pred[..., 1:, :, :] - pred[..., :-1, :, :],
                 target[..., 1:, :, :] - target[..., :-1, :, :], reduce)


def _select_joints(x: Array, joints: Sequence[int] | None) -> Array:
    if joints is None:
        return x
    if x.shape[-2] != NUM_JOINTS:
        raise ValueError(f"joint subset {tuple(joints)} needs the {NUM_JOINTS}-joint H36M layout, "
                         f"got {x.shape[-2]} joints (pass joints=None to use all)")
    return x[..., list(joints), :]


def _pck_per_frame(dist: Array, thresholds: Sequence[float]) -> Array:
    """Percent of joints within each threshold, averaged over thresholds: (…, J) → (…)."""
    out = 0
    for thr in thresholds:
        within = dist <= thr
        out = out + (within.to(dist.dtype) if _is_torch(within) else within.astype(np.float64)).mean(-1)
    return 100.0 * out / len(thresholds)


def pck(pred: Array, target: Array, threshold: float = PCK_THRESHOLD_MM,
        joints: Sequence[int] | None = PCK_JOINTS_3DHP, reduce: bool = True) -> Array:
    """Percentage of correct keypoints: joints with error ≤ ``threshold`` (3DHP protocol).

    ``threshold`` is in the unit of the poses — the protocol's 150 is millimetres, so pass
    poses in mm (or ``threshold=0.15`` for metres). ``joints`` defaults to the protocol's 14
    joints of the H36M-17 layout; ``None`` uses every joint.
    """
    pred, target, _ = _pair(pred, target)
    dist = _norm(_select_joints(pred, joints) - _select_joints(target, joints))
    return _finish(_pck_per_frame(dist, [threshold]), reduce)


def auc(pred: Array, target: Array, thresholds: Sequence[float] = AUC_THRESHOLDS_MM,
        joints: Sequence[int] | None = PCK_JOINTS_3DHP, reduce: bool = True) -> Array:
    """Area under the PCK curve: PCK averaged over thresholds 0, 5, …, 150 (percent).

    Thresholds are in the unit of the poses (defaults: millimetres — pass poses in mm).
    """
    pred, target, _ = _pair(pred, target)
    dist = _norm(_select_joints(pred, joints) - _select_joints(target, joints))
    return _finish(_pck_per_frame(dist, thresholds), reduce)


def bone_length_error(pred: Array, target: Array, reduce: bool = True) -> Array:
    """Mean absolute difference of the 16 bone lengths (H36M-17 layout)."""
    pred, target, _ = _pair(pred, target)
    if pred.shape[-2] != NUM_JOINTS:
        raise ValueError(f"bone_length_error needs {NUM_JOINTS} joints, got shape {tuple(pred.shape)}")
    child = [c for c, _ in BONES]
    parent = [p for _, p in BONES]
    lp = _norm(pred[..., child, :] - pred[..., parent, :])
    lt = _norm(target[..., child, :] - target[..., parent, :])
    return _finish(abs(lp - lt).mean(-1), reduce)


def _frames(errors: Any) -> np.ndarray:
    """Per-frame errors of one action (an array, tensor, or list of them) → flat float64."""
    parts = errors if isinstance(errors, (list, tuple)) else [errors]
    flat = []
    for e in parts:
        if _is_torch(e):
            e = e.detach().cpu().numpy()
        flat.append(np.asarray(e, dtype=np.float64).reshape(-1))
    return np.concatenate(flat) if flat else np.zeros(0)


#: H36M spells two actions differently across subjects (S1 'TakingPhoto'/'WalkingDog', S9/S11
#: 'Photo'/'WalkDog'); the papers' tables have one column each.
ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


def action_name(name: str) -> str:
    """H36M action family: 'Walking 1' and 'Walking' → 'Walking' (VideoPose3D's grouping).

    Only a trailing number after whitespace is a sub-action index, so names of other datasets
    ('climb_0', 'dance_a', 'Free dance') stay whole.
    """
    base = re.sub(r"\s+\d+$", "", name.strip())
    return ACTION_ALIASES.get(base, base)


def per_action_errors(errors_by_action: Mapping[str, Any], group_subactions: bool = False) -> dict[str, float]:
    """Frame-weighted mean per action. Values are per-frame errors (array/tensor or a list of
    them, e.g. one per sequence and camera); ``group_subactions`` merges 'Walking 1' into
    'Walking' first."""
    grouped: dict[str, list[np.ndarray]] = {}
    for name, errors in errors_by_action.items():
        key = action_name(name) if group_subactions else name
        grouped.setdefault(key, []).append(_frames(errors))
    out = {}
    for name, parts in grouped.items():
        frames = np.concatenate(parts)
        if frames.size == 0:
            raise ValueError(f"action {name!r} has no frames")
        out[name] = float(frames.mean())
    return out


def per_action_mean(errors_by_action: Mapping[str, Any], group_subactions: bool = False) -> float:
    """The papers' headline number: frame-weighted within each action, plain mean over actions."""
    table = per_action_errors(errors_by_action, group_subactions)
    if not table:
        raise ValueError("no actions to average")
    return float(np.mean(list(table.values())))
