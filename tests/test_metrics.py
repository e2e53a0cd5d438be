"""Metrics against hand-computed cases, on numpy and torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raypose import metrics
from raypose.skeleton import BONES, PCK_JOINTS_3DHP


def _pose(rng: np.random.Generator, shape=(17, 3), scale: float = 300.0) -> np.ndarray:
    return rng.normal(scale=scale, size=shape)


def _rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _rot_x(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def test_mpjpe_of_constant_offset_is_the_offset():
    rng = np.random.default_rng(0)
    target = _pose(rng, (5, 17, 3))
    offset = np.array([3.0, 4.0, 12.0])  # |offset| = 13
    assert metrics.mpjpe(target + offset, target) == pytest.approx(13.0)
    per_frame = metrics.mpjpe(target + offset, target, reduce=False)
    assert per_frame.shape == (5,)
    np.testing.assert_allclose(per_frame, 13.0)


def test_mpjpe_hand_computed_two_joints():
    target = np.zeros((2, 3))
    pred = np.array([[1.0, 0, 0], [0, 3.0, 4.0]])  # errors 1 and 5
    assert metrics.mpjpe(pred, target) == pytest.approx(3.0)


def test_p_mpjpe_recovers_similarity_transform():
    rng = np.random.default_rng(1)
    target = _pose(rng, (4, 17, 3))
    R = _rot_z(40) @ _rot_x(-25)
    pred = 1.7 * target @ R.T + np.array([100.0, -50.0, 2000.0])
    assert metrics.mpjpe(pred, target) > 500
    assert metrics.p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(metrics.procrustes_align(pred, target), target, atol=1e-8)


def test_p_mpjpe_does_not_use_a_reflection():
    rng = np.random.default_rng(2)
    target = _pose(rng)
    mirrored = target * np.array([-1.0, 1.0, 1.0])  # improper: det = -1
    aligned = metrics.procrustes_align(mirrored, target)
    # The map actually applied must be a proper rotation: recover it by least squares.
    P = mirrored - mirrored.mean(0)
    A = np.linalg.lstsq(P, aligned - aligned.mean(0), rcond=None)[0]
    assert np.linalg.det(A) > 0
    assert metrics.p_mpjpe(mirrored, target) > 10.0
    # A mirrored pose is a valid pose; a proper rotation of it must still align perfectly.
    rotated_mirror = mirrored @ _rot_z(30).T
    assert metrics.p_mpjpe(rotated_mirror, mirrored) == pytest.approx(0.0, abs=1e-8)


def test_p_mpjpe_hand_computed_scale_only_case():
    # Two points on the x axis; pred is target scaled by 2 and shifted: aligned exactly.
    target = np.array([[-1.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0]])
    pred = 2 * target + 5
    assert metrics.p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-12)


def test_n_mpjpe_with_pure_scale_is_zero():
    rng = np.random.default_rng(3)
    target = _pose(rng, (3, 17, 3))
    assert metrics.n_mpjpe(0.6 * target, target) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mpjpe(0.6 * target, target) > 50
    # Translation is not factored out by N-MPJPE.
    assert metrics.n_mpjpe(target + 10.0, target) > 0.1


def test_mpjve_of_constant_offset_is_zero_and_of_drift_is_rate():
    rng = np.random.default_rng(4)
    target = _pose(rng, (2, 6, 17, 3))
    assert metrics.mpjve(target + np.array([5.0, -2.0, 1.0]), target) == pytest.approx(0.0, abs=1e-9)
    drift = np.arange(6)[None, :, None, None] * np.array([0.0, 3.0, 4.0])  # 5 units per frame
    per = metrics.mpjve(target + drift, target, reduce=False)
    assert per.shape == (2, 5)
    np.testing.assert_allclose(per, 5.0)
    with pytest.raises(ValueError):
        metrics.mpjve(target[:, :1], target[:, :1])


def test_pck_of_constructed_error_pattern():
    target = np.zeros((2, 17, 3))
    pred = target.copy()
    beyond = list(PCK_JOINTS_3DHP[:7])
    pred[0, beyond, 0] = 200.0  # 7 of 14 protocol joints beyond 150 mm
    pred[0, 9, 0] = 1000.0  # neck/nose is not a protocol joint: ignored
    pred[1, :, 2] = 150.0  # exactly at the threshold counts as correct
    per = metrics.pck(pred, target, reduce=False)
    np.testing.assert_allclose(per, [50.0, 100.0])
    assert metrics.pck(pred, target) == pytest.approx(75.0)
    assert metrics.pck(pred / 1000, target / 1000, threshold=0.15) == pytest.approx(75.0)
    assert metrics.pck(pred, target, joints=None, reduce=False)[0] == pytest.approx(100 * 9 / 17)


def test_auc_hand_computed():
    target = np.zeros((1, 17, 3))
    assert metrics.auc(target, target) == pytest.approx(100.0)
    pred = target.copy()
    pred[..., 0] = 72.0  # every joint 72 mm off: correct at thresholds 75..150 → 16 of 31
    assert metrics.auc(pred, target) == pytest.approx(100 * 16 / 31)
    pred[..., 0] = 1000.0
    assert metrics.auc(pred, target) == pytest.approx(0.0)


def test_bone_length_error():
    rng = np.random.default_rng(5)
    target = _pose(rng)
    assert metrics.bone_length_error(target @ _rot_z(70).T + 3, target) == pytest.approx(0.0, abs=1e-9)
    stretched = target.copy()
    child, parent = BONES[2]  # r_foot ← r_knee: a leaf bone, no other bone changes
    stretched[child] = target[parent] + 2 * (target[child] - target[parent])
    length = np.linalg.norm(target[child] - target[parent])
    assert metrics.bone_length_error(stretched, target) == pytest.approx(length / 16)


def test_per_action_mean_frame_weighted_within_plain_over_actions():
    errors = {
        "Walking": [np.array([10.0, 20.0]), np.array([30.0])],  # 3 frames → 20
        "Eating": np.array([50.0] * 7),  # 7 frames → 50
    }
    assert metrics.per_action_errors(errors) == {"Walking": 20.0, "Eating": 50.0}
    assert metrics.per_action_mean(errors) == pytest.approx(35.0)  # not (60 + 350) / 10 = 41
    sub = {"Walking": np.array([10.0]), "Walking 1": np.array([40.0, 40.0]), "Eating": np.array([0.0])}
    assert metrics.per_action_errors(sub, group_subactions=True) == {"Walking": 30.0, "Eating": 0.0}
    assert metrics.per_action_mean(sub, group_subactions=True) == pytest.approx(15.0)
    with pytest.raises(ValueError):
        metrics.per_action_mean({})


@pytest.mark.parametrize("name", ["mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "pck", "auc", "bone_length_error"])
def test_numpy_and_torch_agree(name):
    rng = np.random.default_rng(6)
    target = _pose(rng, (2, 5, 17, 3), scale=200)
    pred = target + rng.normal(scale=80, size=target.shape)
    fn = getattr(metrics, name)
    ref = fn(pred, target)
    got = fn(torch.from_numpy(pred), torch.from_numpy(target))
    assert isinstance(ref, np.floating)
    assert isinstance(got, torch.Tensor) and got.ndim == 0
    assert float(got) == pytest.approx(float(ref), rel=1e-9, abs=1e-9)
    per_np = fn(pred, target, reduce=False)
    per_t = fn(torch.from_numpy(pred), torch.from_numpy(target), reduce=False)
    assert isinstance(per_t, torch.Tensor) and tuple(per_t.shape) == per_np.shape
    np.testing.assert_allclose(per_t.numpy(), per_np, rtol=1e-9, atol=1e-9)
    # float32 tensors (what models produce) agree to float32 precision
    got32 = fn(torch.from_numpy(pred).float(), torch.from_numpy(target).float())
    assert got32.dtype == torch.float32
    assert float(got32) == pytest.approx(float(ref), rel=1e-3, abs=1e-3)


def test_torch_metrics_are_differentiable():
    rng = np.random.default_rng(7)
    target = torch.from_numpy(_pose(rng, (3, 17, 3)))
    pred = (target + 5.0).requires_grad_(True)
    loss = metrics.p_mpjpe(pred, target) + metrics.mpjpe(pred, target)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    exact = target.clone().requires_grad_(True)  # zero error: gradient must not be NaN
    metrics.mpjpe(exact, target).backward()
    assert torch.isfinite(exact.grad).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        metrics.mpjpe(np.zeros((17, 3)), np.zeros((16, 3)))
