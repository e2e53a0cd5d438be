"""The 17-joint Human3.6M skeleton every tensor in raypose uses, and mappings into it.

Everything downstream (flip augmentation, bone losses, APTPose anatomy masks, metrics on
the 3DHP protocol) indexes joints through this module, so the layout is defined once here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "r_hip", "r_knee", "r_foot", "l_hip", "l_knee", "l_foot",
    "spine", "thorax", "neck_nose", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
ROOT = 0
JOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(JOINT_NAMES)}

#: Parent of each joint (-1 for the root), as in VideoPose3D's reduced H36M skeleton.
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
LEFT_JOINTS: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS: tuple[int, ...] = (1, 2, 3, 14, 15, 16)


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_JOINTS))
    for left, right in zip(LEFT_JOINTS, RIGHT_JOINTS):
        perm[left], perm[right] = right, left
    return tuple(perm)


#: ``flipped[..., j, :] = pose[..., FLIP_PERMUTATION[j], :]`` after negating x.
FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation()

#: Bones as (child, parent) pairs in child order: 16 for 17 joints.
BONES: tuple[tuple[int, int], ...] = tuple((j, p) for j, p in enumerate(PARENTS) if p >= 0)
NUM_BONES = len(BONES)

#: APTPose limbs: three consecutive joints of each leg and arm.
LIMBS: tuple[tuple[int, int, int], ...] = ((1, 2, 3), (4, 5, 6), (11, 12, 13), (14, 15, 16))
#: APTPose body halves: the right side and the left side (arm + leg).
BODY_HALVES: tuple[tuple[int, ...], ...] = ((14, 15, 16, 1, 2, 3), (11, 12, 13, 4, 5, 6))

#: 3DHP protocol: PCK/AUC are computed on 14 joints (no pelvis, spine, neck/nose).
PCK_JOINTS_3DHP: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16)
#: Joints with a clear anatomical definition (limbs), for reports on approximate mocap.
LIMB_JOINTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16)

ANATOMY_LEVELS = ("keypoint", "bone", "limb", "body")


def anatomy_groups(level: str) -> tuple[tuple[int, ...], ...]:
    """Joint groups masked together at one APTPose hierarchy level."""
    if level == "keypoint":
        return tuple((j,) for j in range(NUM_JOINTS))
    if level == "bone":
        return tuple((c, p) for c, p in BONES)
    if level == "limb":
        return LIMBS
    if level == "body":
        return BODY_HALVES
    raise ValueError(f"unknown anatomy level {level!r}; expected one of {ANATOMY_LEVELS}")


def flip_pose(pose, x_axis: int = 0):
    """Mirror a pose array/tensor (..., 17, C): negate x and swap left/right joints.

    Works for pixel-free coordinates centred on 0 (normalised 2D or camera-space 3D).
    """
    out = pose[..., list(FLIP_PERMUTATION), :]
    out = out.clone() if hasattr(out, "clone") else out.copy()
    out[..., x_axis] = -out[..., x_axis]
    return out


def bone_vectors(pose):
    """(…, 17, C) joints → (…, 16, C) child-minus-parent vectors (numpy or torch)."""
    child = [c for c, _ in BONES]
    parent = [p for _, p in BONES]
    return pose[..., child, :] - pose[..., parent, :]


def joints_from_bones(bones, root=None):
    """Inverse of :func:`bone_vectors`: accumulate bones from the root (zeros by default)."""
    is_torch = hasattr(bones, "clone")
    shape = tuple(bones.shape[:-2]) + (NUM_JOINTS, bones.shape[-1])
    if is_torch:
        import torch

        joints = [torch.zeros(shape[:-2] + shape[-1:], dtype=bones.dtype, device=bones.device)
                  if root is None else root] + [None] * (NUM_JOINTS - 1)
    else:
        joints = [np.zeros(shape[:-2] + shape[-1:], dtype=bones.dtype)
                  if root is None else root] + [None] * (NUM_JOINTS - 1)
    for b, (c, p) in enumerate(BONES):  # parents precede children in this ordering
        joints[c] = joints[p] + bones[..., b, :]
    if is_torch:
        import torch

        return torch.stack(joints, dim=-2)
    return np.stack(joints, axis=-2)


def bone_lengths(pose):
    """(…, 17, 3) → (…, 16) Euclidean bone lengths."""
    v = bone_vectors(pose)
    return (v**2).sum(-1) ** 0.5


# --------------------------------------------------------------------------------------------
# Mappings from other joint layouts. Each is a (17, K) matrix W so that h36m = W @ source,
# which keeps derived joints (mid-hips, mid-shoulders, ...) exact linear combinations.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JointMapping:
    """A linear map from a source layout of ``num_source`` joints into H36M-17."""

    name: str
    num_source: int
    weights: np.ndarray  # (17, num_source)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(…, K, C) → (…, 17, C)."""
        if points.shape[-2] != self.num_source:
            raise ValueError(
                f"{self.name} mapping expects {self.num_source} joints, got shape {points.shape}")
        lost = ~np.isfinite(points).all(-1)                                # (…, K) missing joints
        if not lost.any():
            return np.einsum("jk,...kc->...jc", self.weights, points).astype(points.dtype, copy=False)
        # a missing (NaN) source joint makes only the joints derived from it missing: NaN · 0
        # in the matrix product would otherwise spread it over the whole frame
        out = np.einsum("jk,...kc->...jc", self.weights, np.where(lost[..., None], 0.0, points))
        out[(lost[..., None, :] & (self.weights != 0)).any(-1)] = np.nan
        return out.astype(points.dtype, copy=False)

    def apply_confidence(self, conf: np.ndarray) -> np.ndarray:
        """(…, K) → (…, 17): a derived joint is only as confident as its least confident source."""
        used = self.weights != 0
        big = np.where(used, conf[..., None, :], np.inf)
        return big.min(-1).astype(conf.dtype, copy=False)


def up_axis_of(pelvis_to_head: np.ndarray) -> str:
    """'y' or 'z': the world axis the (N, 3) pelvis → head vectors mostly point along, upwards
    (mocap files use one or the other). ``ValueError`` naming the direction otherwise."""
    up = np.median(np.asarray(pelvis_to_head, np.float64).reshape(-1, 3), axis=0)
    axis = int(np.argmax(np.abs(up)))
    if axis == 0 or up[axis] <= 0:
        raise ValueError(f"cannot tell the up axis: the pelvis → head direction is "
                         f"{np.round(up, 3).tolist()} (x, y, z)")
    return "yz"[axis - 1]


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Y-up world points (x, y, z) as Z up: (x, −z, y); the inverse is :func:`z_up_to_y_up`."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], -1)


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], -1)


def _mapping(name: str, num_source: int, rows: Sequence[dict[int, float]]) -> JointMapping:
    w = np.zeros((NUM_JOINTS, num_source), dtype=np.float64)
    for j, row in enumerate(rows):
        for k, v in row.items():
            w[j, k] = v
    return JointMapping(name, num_source, w)


COCO17_NAMES: tuple[str, ...] = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)

#: COCO-17 → H36M-17: pelvis = mid-hips, thorax = mid-shoulders, spine = their midpoint,
#: neck/nose = nose, head ≈ mid-eyes pushed away from the thorax (no head-top in COCO).
COCO17_TO_H36M = _mapping("coco17", 17, [
    {11: 0.5, 12: 0.5},                       # pelvis
    {12: 1.0}, {14: 1.0}, {16: 1.0},          # right leg
    {11: 1.0}, {13: 1.0}, {15: 1.0},          # left leg
    {11: 0.25, 12: 0.25, 5: 0.25, 6: 0.25},   # spine
    {5: 0.5, 6: 0.5},                         # thorax
    {0: 1.0},                                 # neck/nose
    {1: 0.675, 2: 0.675, 5: -0.175, 6: -0.175},  # head ≈ eyes + 0.35·(eyes − thorax)
    {5: 1.0}, {7: 1.0}, {9: 1.0},             # left arm
    {6: 1.0}, {8: 1.0}, {10: 1.0},            # right arm
])

#: MPI-INF-3DHP's 17 test joints (head_top, neck, r_sho, r_elb, r_wri, l_sho, l_elb, l_wri,
#: r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, pelvis, spine, head) → H36M-17.
MPI3DHP17_TO_H36M_INDEX: tuple[int, ...] = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)
MPI3DHP17_TO_H36M = _mapping("mpi_inf_3dhp17", 17, [{k: 1.0} for k in MPI3DHP17_TO_H36M_INDEX])

#: The original 32-joint Human3.6M skeleton → the 17 joints VideoPose3D keeps.
H36M32_TO_H36M_INDEX: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
H36M32_TO_H36M = _mapping("h36m32", 32, [{k: 1.0} for k in H36M32_TO_H36M_INDEX])

MAPPINGS: dict[str, JointMapping] = {
    m.name: m for m in (COCO17_TO_H36M, MPI3DHP17_TO_H36M, H36M32_TO_H36M)
}


def to_h36m(points: np.ndarray, layout: str) -> np.ndarray:
    """Map (…, K, C) points in ``layout`` ('h36m17', 'coco17', 'mpi_inf_3dhp17', 'h36m32')."""
    if layout == "h36m17":
        if points.shape[-2] != NUM_JOINTS:
            raise ValueError(f"h36m17 expects 17 joints, got shape {points.shape}")
        return points
    try:
        return MAPPINGS[layout].apply(points)
    except KeyError:
        raise ValueError(f"unknown joint layout {layout!r}; known: h36m17, {', '.join(MAPPINGS)}") from None


# --------------------------------------------------------------------------------------------
# telling COCO-17 from H36M-17 by geometry
# --------------------------------------------------------------------------------------------

#: Per-frame thresholds of :func:`layout_features` (measured on real COCO detections and H36M-
#: order projections of real mocap; see tests/test_skeleton.py). COCO's joints 0–4 (nose, eyes,
#: ears) cluster in the head: their spread is ≈ 0.07–0.15 of the body's. In H36M order the same
#: indices are pelvis, right leg and left hip, spread over half the body (≈ 0.6–0.75).
COCO_HEAD_SPREAD_MAX = 0.25
H36M_HEAD_SPREAD_MIN = 0.3
#: H36M's pelvis is the mid-hip point: its offset from (RHip + LHip)/2, over the pelvis–thorax
#: length, stays near 0 (a 3DHP- or other-ordered 17-joint array fails this).
H36M_PELVIS_OFFSET_MAX = 0.2
#: Share of usable frames that must agree before a layout is chosen.
LAYOUT_AGREEMENT = 0.8


def _spread(xy: np.ndarray) -> np.ndarray:
    """RMS distance of the finite points to their centroid, per frame: (T, K, 2) → (T,)."""
    centre = np.nanmean(xy, axis=1, keepdims=True)
    return np.sqrt(np.nanmean(((xy - centre) ** 2).sum(-1), axis=1))


def layout_features(points: np.ndarray, min_conf: float = 0.1) -> dict[str, np.ndarray]:
    """Per-frame evidence for COCO-17 vs H36M-17 order of (T, 17, 2|3) pixels (+confidence).

    ``head_spread``: spread of joints 0–4 over the spread of all joints; ``pelvis_offset``: the
    H36M pelvis test above; ``usable``: frames with ≥ 3 of joints 0–4 and ≥ 12 joints found.
    Missing joints (confidence ≤ ``min_conf``, non-finite, or exactly (0, 0)) are ignored.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] != NUM_JOINTS or p.shape[2] not in (2, 3):
        raise ValueError(f"expected (T, 17, 2|3) points, got shape {p.shape}")
    xy = p[..., :2].copy()
    missing = ~np.isfinite(xy).all(-1) | (xy == 0).all(-1)
    if p.shape[2] == 3:
        missing |= ~(p[..., 2] > min_conf)
    xy[missing] = np.nan
    found = ~missing
    usable = (found[:, :5].sum(1) >= 3) & (found.sum(1) >= 12)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        head = _spread(xy[:, :5]) / _spread(xy)
        torso = np.linalg.norm(xy[:, 8] - xy[:, 0], axis=-1)
        pelvis = np.linalg.norm(xy[:, 0] - (xy[:, 1] + xy[:, 4]) / 2, axis=-1) / torso
    return {"head_spread": head, "pelvis_offset": pelvis, "usable": usable & np.isfinite(head)}


def guess_layout17(points: np.ndarray, min_conf: float = 0.1) -> tuple[Optional[str], str]:
    """('coco17' | 'h36m17' | None, why) for 17-joint 2D of unknown order.

    A frame votes COCO when joints 0–4 cluster (eyes and ears at the nose), H36M when they
    spread over the body *and* joint 0 is the mid-hip point; a layout is chosen only when at
    least :data:`LAYOUT_AGREEMENT` of the usable frames vote for it, else None (ask the user).
    """
    f = layout_features(points, min_conf)
    n = int(f["usable"].sum())
    if n == 0:
        return None, "no frame has enough joints detected to tell the layout"
    head, pelvis = f["head_spread"][f["usable"]], f["pelvis_offset"][f["usable"]]
    coco = float((head < COCO_HEAD_SPREAD_MAX).mean())
    h36m = float(((head > H36M_HEAD_SPREAD_MIN) & (pelvis < H36M_PELVIS_OFFSET_MAX)).mean())
    votes = f"{coco:.0%} of {n} frames look COCO-17 (eyes and ears at the nose), {h36m:.0%} " \
            f"H36M-17 (joint 0 the mid-hip point, joints 0–4 spread over the hips and a leg)"
    if coco >= LAYOUT_AGREEMENT:
        return "coco17", votes
    if h36m >= LAYOUT_AGREEMENT:
        return "h36m17", votes
    return None, votes
