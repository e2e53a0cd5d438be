"""The H36M-17 layout, flips, bones, anatomy groups and mappings from other layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from raypose import skeleton as sk


def _pose(seed: int = 0, shape=(4, 17, 3)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_layout_is_consistent():
    assert sk.NUM_JOINTS == len(sk.PARENTS) == 17
    assert sk.PARENTS[sk.ROOT] == -1
    assert all(p < j for j, p in enumerate(sk.PARENTS) if p >= 0)  # parents precede children
    assert sk.JOINT_NAMES[0] == "pelvis"
    assert set(sk.LEFT_JOINTS).isdisjoint(sk.RIGHT_JOINTS)


@pytest.mark.parametrize("as_torch", [False, True])
def test_flip_twice_is_identity(as_torch):
    pose = _pose()
    x = torch.from_numpy(pose) if as_torch else pose
    once = sk.flip_pose(x)
    twice = sk.flip_pose(once)
    assert type(twice) is type(x)
    np.testing.assert_array_equal(np.asarray(twice), pose)
    assert not np.allclose(np.asarray(once), pose)
    np.testing.assert_array_equal(np.asarray(x), pose)  # input untouched


def test_flip_permutation_swaps_left_and_right_names():
    for j, name in enumerate(sk.JOINT_NAMES):
        other = sk.JOINT_NAMES[sk.FLIP_PERMUTATION[j]]
        if name.startswith("l_"):
            assert other == "r_" + name[2:]
        elif name.startswith("r_"):
            assert other == "l_" + name[2:]
        else:
            assert other == name
    pose = _pose()
    flipped = sk.flip_pose(pose)
    li, ri = sk.JOINT_INDEX["l_wrist"], sk.JOINT_INDEX["r_wrist"]
    np.testing.assert_array_equal(flipped[..., li, 0], -pose[..., ri, 0])
    np.testing.assert_array_equal(flipped[..., li, 1:], pose[..., ri, 1:])


def test_bone_vectors_invert():
    pose = _pose(1)
    pose = pose - pose[..., :1, :]  # root-relative
    bones = sk.bone_vectors(pose)
    assert bones.shape == (4, 16, 3)
    np.testing.assert_allclose(sk.joints_from_bones(bones), pose, atol=1e-5)
    t = torch.from_numpy(pose)
    torch.testing.assert_close(sk.joints_from_bones(sk.bone_vectors(t)), t, atol=1e-5, rtol=0)
    root = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_allclose(sk.joints_from_bones(bones, root=root), pose + 1, atol=1e-5)
    # a hand-checked bone: r_knee − r_hip
    b = sk.BONES.index((sk.JOINT_INDEX["r_knee"], sk.JOINT_INDEX["r_hip"]))
    np.testing.assert_array_equal(bones[:, b], pose[:, 2] - pose[:, 1])


def test_bone_lengths_are_flip_invariant():
    pose = _pose(2)
    # flipping mirrors and relabels: the multiset of bone lengths is unchanged
    np.testing.assert_allclose(np.sort(sk.bone_lengths(sk.flip_pose(pose)), -1),
                               np.sort(sk.bone_lengths(pose), -1), rtol=1e-5)


def test_anatomy_group_counts():
    assert [len(sk.anatomy_groups(level)) for level in sk.ANATOMY_LEVELS] == [17, 16, 4, 2]
    assert all(len(limb) == 3 for limb in sk.anatomy_groups("limb"))
    for limb in sk.anatomy_groups("limb"):  # three consecutive joints along the kinematic chain
        assert sk.PARENTS[limb[2]] == limb[1] and sk.PARENTS[limb[1]] == limb[0]
    halves = sk.anatomy_groups("body")
    assert set(halves[0]) == set(sk.RIGHT_JOINTS) and set(halves[1]) == set(sk.LEFT_JOINTS)
    with pytest.raises(ValueError):
        sk.anatomy_groups("finger")


def _coco_pose() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(size=(2, 17, 2)).astype(np.float64)


def test_coco_to_h36m_on_constructed_pose():
    coco = _coco_pose()
    c = {n: i for i, n in enumerate(sk.COCO17_NAMES)}
    h = sk.to_h36m(coco, "coco17")
    J = sk.JOINT_INDEX
    mid_hips = (coco[:, c["l_hip"]] + coco[:, c["r_hip"]]) / 2
    mid_sho = (coco[:, c["l_shoulder"]] + coco[:, c["r_shoulder"]]) / 2
    mid_eyes = (coco[:, c["l_eye"]] + coco[:, c["r_eye"]]) / 2
    np.testing.assert_allclose(h[:, J["pelvis"]], mid_hips)
    np.testing.assert_allclose(h[:, J["thorax"]], mid_sho)
    np.testing.assert_allclose(h[:, J["spine"]], (mid_hips + mid_sho) / 2)
    np.testing.assert_allclose(h[:, J["neck_nose"]], coco[:, c["nose"]])
    np.testing.assert_allclose(h[:, J["head"]], mid_eyes + 0.35 * (mid_eyes - mid_sho))
    for name in ("l_hip", "r_knee", "l_shoulder", "r_elbow", "l_wrist"):
        np.testing.assert_allclose(h[:, J[name]], coco[:, c[name]])
    np.testing.assert_allclose(h[:, J["r_foot"]], coco[:, c["r_ankle"]])
    # every row of the map sums to 1: translation commutes with the mapping
    np.testing.assert_allclose(sk.to_h36m(coco + 5.0, "coco17"), h + 5.0)


def test_coco_confidence_is_min_of_sources():
    conf = np.linspace(0.1, 0.9, 17)[None]
    c = {n: i for i, n in enumerate(sk.COCO17_NAMES)}
    out = sk.COCO17_TO_H36M.apply_confidence(conf)
    J = sk.JOINT_INDEX
    assert out.shape == (1, 17)
    assert out[0, J["pelvis"]] == pytest.approx(min(conf[0, c["l_hip"]], conf[0, c["r_hip"]]))
    assert out[0, J["spine"]] == pytest.approx(conf[0, [c["l_hip"], c["r_hip"], c["l_shoulder"], c["r_shoulder"]]].min())
    assert out[0, J["head"]] == pytest.approx(conf[0, [c["l_eye"], c["r_eye"], c["l_shoulder"], c["r_shoulder"]]].min())
    assert out[0, J["l_wrist"]] == pytest.approx(conf[0, c["l_wrist"]])


def test_mpi_3dhp_mapping():
    src = np.arange(17 * 3, dtype=np.float64).reshape(17, 3)  # joint k has x = 3k
    h = sk.to_h36m(src, "mpi_inf_3dhp17")
    J = sk.JOINT_INDEX
    # 3DHP test order: 0 head_top, 1 neck, 2 r_sho, …, 8 r_hip, 14 pelvis, 15 spine, 16 head
    expected = {"pelvis": 14, "head": 0, "thorax": 1, "neck_nose": 16, "spine": 15,
                "r_shoulder": 2, "l_wrist": 7, "r_hip": 8, "l_foot": 13}
    for name, k in expected.items():
        np.testing.assert_array_equal(h[J[name]], src[k])
    assert sorted(sk.MPI3DHP17_TO_H36M_INDEX) == list(range(17))  # a permutation


def test_h36m32_mapping():
    src = np.arange(32, dtype=np.float64)[:, None].repeat(3, 1)
    h = sk.to_h36m(src, "h36m32")
    np.testing.assert_array_equal(h[:, 0], [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27])


def test_wrong_joint_count_errors():
    with pytest.raises(ValueError, match="17"):
        sk.to_h36m(np.zeros((16, 2)), "coco17")
    with pytest.raises(ValueError, match="32"):
        sk.to_h36m(np.zeros((17, 3)), "h36m32")
    with pytest.raises(ValueError, match="17"):
        sk.to_h36m(np.zeros((16, 3)), "h36m17")
    with pytest.raises(ValueError, match="unknown joint layout"):
        sk.to_h36m(np.zeros((17, 3)), "openpose25")


def test_pck_joints_are_the_3dhp_fourteen():
    assert len(sk.PCK_JOINTS_3DHP) == 14
    excluded = set(range(17)) - set(sk.PCK_JOINTS_3DHP)
    assert {sk.JOINT_NAMES[j] for j in excluded} == {"pelvis", "spine", "neck_nose"}


# ----------------------------------------------------------------------------- COCO-17 or H36M-17?

def _sports2d_tracks(shared_data) -> dict[str, np.ndarray]:
    """The real MediaPipe detections of the Sports2D demo, COCO-17 order, per track."""
    import json

    doc = json.loads((shared_data / "sports2d_demo" / "detections_coco17.json").read_text())
    out = {}
    for tid in sorted({r["idx"] for r in doc["results"]}):
        rows = sorted((r for r in doc["results"] if r["idx"] == tid), key=lambda r: r["image_id"])
        out[f"sports2d_{tid}"] = np.array([r["keypoints"] for r in rows], np.float32).reshape(-1, 17, 3)
    return out


def _h36m_projections(shared_data, cameras: int = 4) -> dict[str, np.ndarray]:
    """The shared mocap (H36M-17 order) seen by virtual cameras: (T, 17, 2) pixels per view."""
    from raypose.cameras import virtual_cameras

    mocap = np.load(shared_data / "mocap_h36m17.npz", allow_pickle=True)["positions_3d"].item()
    rng = np.random.default_rng(0)
    out = {}
    for subject, actions in mocap.items():
        for action, world in actions.items():
            for cam in virtual_cameras(world[:, 0].mean(0), cameras, rng):
                out[f"{subject}/{action}/{cam.name}"] = cam.project(cam.world_to_camera(world))
    return out


def test_real_coco_detections_are_told_coco(shared_data):
    pose2sim = np.load(shared_data / "pose2sim_demo.npz")["keypoints_coco17"]   # OpenPose, 4 cameras
    files = {**_sports2d_tracks(shared_data), **{f"pose2sim_{c}": pose2sim[c] for c in range(4)}}
    for name, kp in files.items():
        layout, why = sk.guess_layout17(kp)
        assert layout == "coco17", (name, why)
        # their H36M-order conversion (pelvis = mid-hips) reads as H36M
        m = sk.COCO17_TO_H36M
        h36m = np.concatenate([m.apply(kp[..., :2]), m.apply_confidence(kp[..., 2])[..., None]], -1)
        assert sk.guess_layout17(h36m)[0] == "h36m17", name


def test_h36m_order_projections_of_real_mocap_are_told_h36m(shared_data):
    views = _h36m_projections(shared_data)
    assert len(views) == 4 * 20
    wrong = {n: sk.guess_layout17(xy) for n, xy in views.items() if sk.guess_layout17(xy)[0] != "h36m17"}
    assert not wrong
    # per frame (a single still), on the hardest motions: cartwheels, crawling, rolls, climbing
    frames = np.concatenate(list(views.values()))
    f = sk.layout_features(frames)
    coco_votes = (f["head_spread"] < sk.COCO_HEAD_SPREAD_MAX).mean()
    assert f["usable"].all() and coco_votes < 0.002


def test_a_17_joint_order_that_is_neither_is_refused(shared_data):
    # MPI-INF-3DHP order has 17 joints too: neither a head cluster at 0–4 nor a mid-hip joint 0
    for name, xy in list(_h36m_projections(shared_data, cameras=1).items())[:8]:
        layout, why = sk.guess_layout17(xy[:, list(sk.MPI3DHP17_TO_H36M_INDEX)])
        assert layout is None and "H36M-17" in why, name
    missing = np.zeros((5, 17, 3), np.float32)   # nothing detected
    assert sk.guess_layout17(missing)[0] is None


def test_a_missing_source_joint_only_loses_the_joints_made_from_it():
    """NaN · 0 is NaN: without care one NaN joint of a 32-joint H36M or a COCO frame spread over
    every joint of the frame through the mapping matrix."""
    pts = np.random.default_rng(0).normal(size=(3, 32, 3)).astype(np.float32)
    pts[1, 5] = np.nan      # not one of the 17 kept joints
    pts[2, 13, 0] = np.nan  # kept: becomes H36M joint 8 (thorax)
    out = sk.to_h36m(pts, "h36m32")
    lost = ~np.isfinite(out).all(-1)
    assert not lost[:2].any() and lost[2].tolist() == [j == 8 for j in range(17)]
    coco = np.random.default_rng(1).normal(size=(1, 17, 2))
    coco[0, 11] = np.nan    # left hip: the pelvis and spine (mid-hips) and the left hip itself
    lost = ~np.isfinite(sk.to_h36m(coco, "coco17")).all(-1)[0]
    assert np.flatnonzero(lost).tolist() == [0, 4, 7]


def test_up_axis_of_and_the_y_z_turns():
    """Pelvis → head mostly along +z or +y names that axis; anything else is refused with the
    direction; the Y↔Z turns are inverse and put +y up onto +z."""
    from raypose import skeleton as S

    rng = np.random.default_rng(0)
    up_z = rng.normal(0, 0.05, (50, 3)) + [0.0, 0.0, 0.6]
    assert S.up_axis_of(up_z) == "z" and S.up_axis_of(S.z_up_to_y_up(up_z)) == "y"
    np.testing.assert_allclose(S.y_up_to_z_up(S.z_up_to_y_up(up_z)), up_z)
    np.testing.assert_allclose(S.y_up_to_z_up(np.array([0.0, 1.0, 0.0])), [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="pelvis → head direction"):
        S.up_axis_of(-up_z)
