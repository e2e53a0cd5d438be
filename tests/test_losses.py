"""Losses: MPJPE, bones, velocity, masked-only reconstruction, has_3d, name → weight mapping."""
from __future__ import annotations

import numpy as np
import pytest
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


def test_nan_3d_targets_are_masked_out_of_the_loss_end_to_end(shared_data, tmp_path):
    """Real mocap with NaN joints, written as a file, read, viewed, stored (Parquet) and cut into
    clips on the device: the missing joints are ``valid_3d`` False, every loss term is finite,
    no NaN reaches a gradient, and what the model predicts at a missing joint does not matter."""
    import numpy as np
    import pyarrow.parquet as pq

    from raypose.config import DataConfig
    from raypose.data import store
    from raypose.data.clips import eval_clips, train_clips
    from raypose.data.pipeline import CHUNK_COLUMNS, chunk_table, torch_dtypes
    from raypose.data.sources import read_mocap, views
    from tests.data.formats import write_videopose3d_3d

    src = np.load(shared_data / "mocap_h36m17.npz", allow_pickle=True)
    walk = src["positions_3d"].item()["deepmimic"]["walk"].copy()
    gaps = np.random.default_rng(0).random(walk.shape[:2]) < 0.1
    gaps[:, 0] = False  # pelvis kept: each gap is one joint
    walk[gaps] = np.nan
    path = write_videopose3d_3d(tmp_path / "walk_nan.npz", {"deepmimic": {"walk": walk}},
                                fps={"deepmimic": {"walk": float(src["fps"].item()["deepmimic"]["walk"])}})
    (rec,) = read_mocap(path)
    table = store.views_to_table(views(rec, np.random.default_rng(0), 2))
    pq.write_table(table, tmp_path / "shard.parquet")  # NaN survives the store
    table = pq.read_table(tmp_path / "shard.parquet")
    cfg = DataConfig(num_frames=9, chunk_frames=64, clips_per_sequence=16, noise_std=0.01)
    chunks = {k: torch.as_tensor(v).to(torch_dtypes()[k]) for k, v in chunk_table(table, 64, 4).items()
              if k in CHUNK_COLUMNS}
    assert torch.isnan(chunks["joints_3d"]).any()
    clips = train_clips(chunks, cfg, torch.Generator().manual_seed(0))
    every = next(eval_clips(chunks, cfg))
    for c in (clips, every):
        assert torch.isfinite(c.pose_3d).all() and torch.isfinite(c.pose_2d).all()
        assert (~c.valid_3d).any() and c.valid_3d.float().mean() > 0.8
        assert (c.confidence[~c.valid_3d] == 0).all()  # the same joints are missing in the 2D

    pred = (clips.pose_3d + 0.05 * torch.randn_like(clips.pose_3d)).requires_grad_()
    outputs = {"multi": pred, "centre": pred[:, 4:5]}
    cfg_loss = LossConfig(bone_multi_frame=1.0, bone_single_frame=1.0, velocity=1.0)
    total, parts = compute_losses(outputs, clips, None, cfg_loss)
    total.backward()
    assert all(np.isfinite(v) and v > 0 for v in parts.values()), parts
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~clips.valid_3d] == 0).all()
    moved = pred.detach().clone()
    moved[~clips.valid_3d] += 10.0  # wild guesses at unknown joints cost nothing
    again, _ = compute_losses({"multi": moved, "centre": moved[:, 4:5]}, clips, None, cfg_loss)
    assert torch.isclose(again, total)


def test_a_nan_target_without_valid_3d_is_masked_too():
    """Targets from anywhere (a dict, no ``valid_3d``) with NaN: the finite joints alone count."""
    t = _targets()
    t["pose_3d"][0, 2, 5] = float("nan")
    pred = torch.zeros_like(t["pose_3d"], requires_grad=True)
    total, parts = compute_losses({"multi": pred}, t, None, LossConfig(velocity=1.0, bone_multi_frame=1.0))
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(pred.grad).all()


def test_trajectory_loss_is_depth_weighted_and_skips_unknown_roots():
    from raypose.cameras import root_to_screen_depth
    from raypose.errors import ConfigError
    from raypose.losses import trajectory_loss

    camera = torch.zeros(3, 23)
    camera[:, 0], camera[:, 2] = 1000.0, 1145.0
    root = torch.tensor([[0.1, 0.2, 4.0], [0.0, -0.1, 8.0], [0.0, 0.0, 0.0]])   # the last is unknown
    exact = root_to_screen_depth(root.clone(), camera)[:, None]
    exact[2] = 123.0                                      # whatever is predicted for it does not count
    assert float(trajectory_loss(exact, root, camera)) == pytest.approx(0.0, abs=1e-7)
    off = exact.clone()
    off[:2, 0, 0] += 0.04                                 # 4 cm sideways at 4 m and at 8 m: ‖Δ‖ / z
    assert float(trajectory_loss(off, root, camera)) == pytest.approx((0.04 / (4 / 2.29) + 0.04 / (8 / 2.29)) / 2)
    deep = exact.clone()
    deep[:2, 0, 2] *= 1.02                                # 2 % too deep (direction kept): ≈ Δz / z
    deep[:2, 0, :2] *= 1.02
    assert float(trajectory_loss(deep, root, camera)) == pytest.approx(np.log(1.02), rel=1e-5)
    wild = exact.clone()
    wild[:2, 0] *= 400.0                                  # a wild depth guess costs log(400), not 400
    assert float(trajectory_loss(wild, root, camera)) == pytest.approx(np.log(400.0), rel=1e-5)
    none_known = torch.zeros(3, 3)
    assert float(trajectory_loss(off, none_known, camera)) == 0.0

    targets = {"pose_2d": torch.zeros(3, 1, 17, 2), "pose_3d": torch.zeros(3, 1, 17, 3),
               "has_3d": torch.ones(3, dtype=torch.bool), "centre_index": 0,
               "root_3d": root[:, None], "camera": camera}
    outputs = {"centre": torch.zeros(3, 1, 17, 3), "trajectory": off}
    _, parts = compute_losses(outputs, targets, None, LossConfig(trajectory=2.0))
    assert float(parts["trajectory"]) == pytest.approx(float(trajectory_loss(off, root, camera)))
    assert float(parts["total"]) == pytest.approx(float(parts["single_frame"]) + 2 * float(parts["trajectory"]))
    del targets["root_3d"]                                # e.g. clips from a store without root positions
    with pytest.raises(ConfigError, match="root"):
        compute_losses(outputs, targets, None, LossConfig())
