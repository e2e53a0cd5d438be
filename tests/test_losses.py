"""Losses: MPJPE, bones, velocity, masked-only reconstruction, has_3d, name → weight mapping."""
from __future__ import annotations

import torch

from raypose.config import LossConfig
from raypose.losses import bone_loss, compute_losses, mpjpe_loss, velocity_loss
from raypose.masking import Masks
from raypose.skeleton import bone_vectors, joints_from_bones


def test_bone_vectors_invert():
    pose = torch.randn(2, 5, 17, 3)
    pose = pose - pose[..., :1, :]
    assert torch.allclose(joints_from_bones(bone_vectors(pose)), pose, atol=1e-6)


def test_mpjpe_bone_velocity_values():
    t = torch.zeros(1, 3, 17, 3)
    p = t.clone()
    p[..., 0] += 0.3  # a global shift: 0.3 m per joint, no bone or velocity error
    assert torch.isclose(mpjpe_loss(p, t), torch.tensor(0.3))
    assert bone_loss(p, t) == 0 and velocity_loss(p, t) == 0
    q = t.clone()
    q[:, 1, 3, 2] = 0.17  # one joint in one frame
    assert torch.isclose(mpjpe_loss(q, t), torch.tensor(0.17 / 51))
    assert velocity_loss(q, t) > 0 and bone_loss(q, t) > 0


def _targets(n=2, f=5):
    return {"pose_2d": torch.randn(n, f, 17, 2), "pose_3d": torch.randn(n, f, 17, 3),
            "has_3d": torch.tensor([True, False]), "centre_index": f // 2}


def test_3d_terms_use_only_clips_with_3d():
    tg = _targets()
    out = {"multi": tg["pose_3d"].clone(), "centre": tg["pose_3d"][:, 2:3].clone()}
    out["multi"][1] += 10.0
    out["centre"][1] += 10.0
    total, parts = compute_losses(out, tg, None, LossConfig(velocity=1.0, bone_multi_frame=1.0))
    assert total.item() == 0 and parts["multi_frame"] == 0 and parts["single_frame"] == 0
    tg["has_3d"] = torch.tensor([False, False])
    total, _ = compute_losses(out, tg, None, LossConfig())
    assert total.item() == 0


def test_weights_and_masked_only_reconstruction():
    tg = _targets()
    rec = tg["pose_2d"].clone()
    rec[0, 0, 0] += 1.0  # wrong only at a visible position
    frames = torch.zeros(2, 5, dtype=torch.bool)
    frames[:, 4] = True
    joints = torch.zeros(2, 5, 17, dtype=torch.bool)
    masks = Masks(frames, joints)
    _, all_parts = compute_losses({"rec_2d": rec}, tg, masks, LossConfig(rec_2d=2.0))
    total, hid_parts = compute_losses({"rec_2d": rec}, tg, masks, LossConfig(rec_2d=2.0, masked_only=True))
    assert all_parts["rec_2d"] > 0 and hid_parts["rec_2d"] == 0 and total.item() == 0
    _, p = compute_losses({"rec_2d": rec}, tg, masks, LossConfig(rec_2d=2.0))
    assert abs(p["total"] - 2.0 * p["rec_2d"]) < 1e-6


def test_reprojection_and_3d_reconstruction_terms():
    tg = _targets()
    out = {"rec_2d": tg["pose_2d"] + 0.1, "reproj_2d": tg["pose_2d"], "rec_3d": tg["pose_3d"] + 0.0,
           "lift_3d": tg["pose_3d"]}
    total, parts = compute_losses(out, tg, None, LossConfig(rec_2d=2.0, rec_3d=3.0))
    assert set(parts) == {"rec_2d", "reproj_2d", "rec_3d", "lift_3d", "total"}
    assert abs(parts["total"] - 2.0 * parts["rec_2d"]) < 1e-5 and parts["reproj_2d"] == 0
