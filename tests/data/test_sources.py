"""Readers on format-exact files, each kind of bad input, the embedded/shared mocap, and views()."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raypose import skeleton
from raypose.cameras import Camera, h36m_cameras
from raypose.config import SourceConfig
from raypose.data.record import SequenceRecord
from raypose.data.sources import (default_mocap_path, read_amass, read_coco, read_h36m, read_mocap,
                                  read_mpi_inf_3dhp, read_source, views)
from raypose.errors import RayposeDataError
from tests.data.formats import (h36m_to_3dhp_order, pose_sequence, write_3dhp_npz,
                                write_amass_joints, write_coco_json, write_pseudo_labels,
                                write_videopose3d_2d, write_videopose3d_3d)


def raises(path: Path, problem: str):
    """The error names the file and the problem."""
    return pytest.raises(RayposeDataError, match=rf"{path.name}.*{problem}")


def project_all(pos_world: np.ndarray, cams: list[Camera]) -> list[np.ndarray]:
    return [cam.project(cam.world_to_camera(pos_world)) for cam in cams]


# --------------------------------------------------------------------------------------------
# H36M (VideoPose3D layout)
# --------------------------------------------------------------------------------------------

@pytest.fixture
def h36m_files(tmp_path):
    """S1 with two actions, S9 with one; 2D from the real S1/S9 cameras, 3 frames too long."""
    positions, keypoints = {}, {}
    for subject, actions in (("S1", ("Walking", "Walking 1")), ("S9", ("Eating",))):
        positions[subject], keypoints[subject] = {}, {}
        for k, action in enumerate(actions):
            pos = pose_sequence(40 + 10 * k, seed=k, origin=(0.5, -0.3, 0.0))
            positions[subject][action] = pos
            longer = np.concatenate([pos, pos[-3:]])
            keypoints[subject][action] = project_all(longer, h36m_cameras(subject))
    p3 = write_videopose3d_3d(tmp_path / "data_3d_h36m.npz", positions)
    p2 = write_videopose3d_2d(tmp_path / "data_2d_h36m_gt.npz", keypoints)
    return p3, p2, positions, keypoints


def test_h36m_reads_3d_2d_cameras_and_truncates(h36m_files):
    p3, _, positions, keypoints = h36m_files
    recs = read_source(SourceConfig(format="h36m", path=str(p3.parent)), target_fps=50.0, detector="gt")
    assert [r.key for r in recs] == ["h36m/S1/Walking", "h36m/S1/Walking 1", "h36m/S9/Eating"]
    r = recs[1]
    assert r.fps == 50.0 and r.frame_3d == "world" and r.num_frames == 50
    np.testing.assert_allclose(r.positions_3d, positions["S1"]["Walking 1"])
    assert [c.name for c in r.cameras] == [c.name for c in h36m_cameras("S1")]
    assert len(r.keypoints_2d) == 4
    for c in range(4):  # cut to the mocap length, confidence 1 added
        assert r.keypoints_2d[c].shape == (50, 17, 3)
        np.testing.assert_allclose(r.keypoints_2d[c][..., :2], keypoints["S1"]["Walking 1"][c][:50])
        assert (r.keypoints_2d[c][..., 2] == 1).all()


def test_h36m_filters_and_32_joint_mapping(tmp_path):
    T = 5
    pos32 = np.zeros((T, 32, 3), np.float32)
    pos32[..., 0] = np.arange(32) * 0.01          # joint k sits at x = k cm
    pos32[..., 2] = np.arange(T)[:, None] * 0.1   # frame t at z = t·10 cm
    p3 = write_videopose3d_3d(tmp_path / "data_3d_h36m.npz",
                              {"S1": {"Walking": pos32, "Eating": pos32}, "S5": {"Walking": pos32}})
    recs = read_h36m(p3, subjects=["S1"], actions=["Walk"], detector=None)
    assert [r.key for r in recs] == ["h36m/S1/Walking"]
    r = recs[0]
    assert r.positions_3d.shape == (T, 17, 3) and r.keypoints_2d is None
    # 17 joints are the original joints 0,1,2,3,6,7,8,12,13,14,15,17,18,19,25,26,27
    np.testing.assert_allclose(r.positions_3d[0, :, 0] * 100,
                               [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27], atol=1e-4)
    np.testing.assert_allclose(r.positions_3d[:, 5, 2], np.arange(T) * 0.1, atol=1e-6)
    assert len(r.cameras) == 4  # 3D only, still the real calibrated cameras


def test_h36m_coco_layout_detections_are_mapped(tmp_path):
    pos = pose_sequence(10)
    coco = np.zeros((10, 17, 3), np.float32)
    coco[..., 0] = np.arange(17) * 10.0
    coco[..., 1] = 100.0
    coco[..., 2] = 0.9
    coco[:, 12, 2] = 0.2   # right hip barely detected
    p3 = write_videopose3d_3d(tmp_path / "data_3d_h36m.npz", {"S1": {"Walking": pos}})
    write_videopose3d_2d(tmp_path / "data_2d_h36m_detectron_pt_coco.npz",
                         {"S1": {"Walking": [coco] * 4}}, layout_name="coco")
    r = read_h36m(p3)[0]
    kp = r.keypoints_2d[0]
    assert kp[0, 0, 0] == pytest.approx((110 + 120) / 2)   # pelvis = mid-hips (COCO 11, 12)
    assert kp[0, 0, 2] == pytest.approx(0.2)                # min rule
    assert kp[0, 4, 0] == pytest.approx(110) and kp[0, 4, 2] == pytest.approx(0.9)  # left hip


def test_h36m_bad_inputs(tmp_path, h36m_files):
    p3, p2, positions, keypoints = h36m_files
    with raises(tmp_path / "nowhere.npz", "file not found"):
        read_h36m(tmp_path / "nowhere.npz")
    with raises(p3, "unknown subject 'S7'"):
        read_h36m(p3, subjects=["S7"])
    with raises(p3, "unknown action"):
        read_h36m(p3, actions=["Smoking"])
    with raises(tmp_path / "data_2d_h36m_cpn.npz", "file not found"):
        read_h36m(p3, detector="cpn")
    # 2D shorter than the mocap: ragged beyond the allowed truncation
    short = {s: {a: [k[:20] for k in cams] for a, cams in acts.items()} for s, acts in keypoints.items()}
    write_videopose3d_2d(p2, short)
    with raises(p2, "20 frames, fewer than the 40"):
        read_h36m(p3)
    # three cameras instead of four
    write_videopose3d_2d(p2, {s: {a: cams[:3] for a, cams in acts.items()} for s, acts in keypoints.items()})
    with raises(p2, "3 cameras, expected 4"):
        read_h36m(p3)
    write_videopose3d_2d(p2, keypoints, layout_name="openpose25")
    with raises(p2, "layout_name 'openpose25'"):
        read_h36m(p3)
    p2.unlink()
    # wrong joint count, millimetres, wrong top-level key (NaN is a missing joint, not an error)
    bad = tmp_path / "bad" / "data_3d_h36m.npz"
    write_videopose3d_3d(bad, {"S1": {"Walking": np.zeros((4, 16, 3), np.float32)}})
    with raises(bad, "16 joints, expected 17 or 32"):
        read_h36m(bad)
    nan = pose_sequence(4)
    nan[2, 3, 1] = np.nan
    write_videopose3d_3d(bad, {"S1": {"Walking": nan}})
    (got,) = read_h36m(bad)
    assert np.isnan(got.positions_3d[2, 3, 1]) and np.isfinite(np.delete(got.positions_3d, 2, 0)).all()
    write_videopose3d_3d(bad, {"S1": {"Walking": pose_sequence(4) * 1000}})
    with raises(bad, "millimetres"):
        read_h36m(bad)
    np.savez(bad, poses=np.zeros(3))
    with raises(bad, "missing key.*'positions_3d'"):
        read_h36m(bad)
    bad.write_bytes(b"not a zip")
    with raises(bad, "not a readable .npz"):
        read_h36m(bad)


# --------------------------------------------------------------------------------------------
# AMASS joints
# --------------------------------------------------------------------------------------------

def test_amass_tree_resampling_and_keys(tmp_path):
    T = 100
    pos = pose_sequence(T, fps=100.0)
    pos[:, :, 0] += np.arange(T)[:, None] * 0.01   # x grows 1 cm per source frame
    write_amass_joints(tmp_path / "CMU" / "01" / "01_01_poses.npz", pos, 100.0)
    write_amass_joints(tmp_path / "CMU" / "02" / "02_01_poses.npz", pos[:30], 30.0,
                       key="positions_3d", fps_key="fps")
    write_amass_joints(tmp_path / "BMLrub" / "s1" / "walk.npz", pos[:10], 120.0,
                       key="poses_3d", fps_key="mocap_frame_rate")
    np.savez(tmp_path / "CMU" / "01" / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    recs = read_source(SourceConfig(format="amass", path=str(tmp_path)), target_fps=50.0)
    assert sorted(r.key for r in recs) == ["amass/BMLrub/s1/walk", "amass/CMU/01/01_01_poses",
                                           "amass/CMU/02/02_01_poses"]
    r = next(r for r in recs if r.action == "01_01_poses")
    assert r.fps == 50.0 and r.num_frames == 50 and r.keypoints_2d is None and r.frame_3d == "world"
    np.testing.assert_allclose(r.positions_3d, pos[::2], atol=1e-6)   # 100 → 50 keeps even frames
    # 30 → 50 fps interpolates linearly between source frames
    r = next(r for r in recs if r.action == "02_01_poses")
    assert r.num_frames == int(29 / 30 * 50) + 1
    t1 = 1 / 50 * 30   # output frame 1 at source position 0.6
    np.testing.assert_allclose(r.positions_3d[1], pos[0] * (1 - t1) + pos[1] * t1, atol=1e-5)
    # subject folders: prefix and exact
    assert {r.subject for r in read_amass(tmp_path, subjects=["CMU"])} == {"CMU/01", "CMU/02"}
    assert [r.subject for r in read_amass(tmp_path, subjects=["CMU/02"])] == ["CMU/02"]
    # a single file
    one = read_amass(tmp_path / "CMU" / "01" / "01_01_poses.npz")
    assert one[0].fps == 100.0 and one[0].num_frames == T


def test_amass_y_up_is_turned_to_z_up(tmp_path):
    pos = pose_sequence(5)
    y_up = np.stack([pos[..., 0], pos[..., 2], -pos[..., 1]], -1)
    f = write_amass_joints(tmp_path / "seq.npz", y_up, 60.0)
    np.testing.assert_allclose(read_amass(f, up_axis="y")[0].positions_3d, pos, atol=1e-6)
    with raises(f, "up_axis"):
        read_amass(f, up_axis="x")


def test_amass_bad_inputs(tmp_path):
    with raises(tmp_path / "missing", "not found"):
        read_amass(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with raises(tmp_path / "empty", "no .npz"):
        read_amass(tmp_path / "empty")
    f = write_amass_joints(tmp_path / "a" / "s.npz", pose_sequence(5)[:, :15], 60.0)
    with raises(f, "15 joints, expected 17"):
        read_amass(f)
    bad = pose_sequence(5)
    bad[3, 0, 0] = np.inf
    write_amass_joints(f, bad, 60.0)
    (got,) = read_amass(f)  # a missing joint (inf) stays missing, the rest is read
    assert not np.isfinite(got.positions_3d[3, 0]).all() and np.isfinite(got.positions_3d[:3]).all()
    write_amass_joints(f, pose_sequence(5), 60.0, key="trans")
    with raises(f, "no joint positions: expected one of joints, positions_3d, poses_3d"):
        read_amass(f)
    np.savez(f, joints=pose_sequence(5))
    with raises(f, "no frame rate"):
        read_amass(f)
    write_amass_joints(f, pose_sequence(5), 0.0)
    with raises(f, "one positive number"):
        read_amass(f)
    write_amass_joints(f, pose_sequence(5), 60.0)
    with raises(tmp_path, "unknown subject 'KIT'"):
        read_amass(tmp_path, subjects=["KIT"])


# --------------------------------------------------------------------------------------------
# COCO keypoints JSON
# --------------------------------------------------------------------------------------------

def coco_person(x0: float, y0: float, hidden: tuple[int, ...] = ()) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 0] = x0 + np.arange(17) * 3.0
    kp[:, 1] = y0 + np.arange(17) * 5.0
    kp[:, 2] = 2
    for j in hidden:
        kp[j] = 0
    return kp


def test_coco_stills_mapping_confidence_camera_and_pseudo_labels(tmp_path):
    images = [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 500, "height": 800}]
    anns = [{"id": 10, "image_id": 1, "keypoints": coco_person(100, 50)},
            {"id": 11, "image_id": 2, "keypoints": coco_person(20, 30, hidden=(12,))},
            {"id": 12, "image_id": 2, "keypoints": np.zeros((17, 3))}]   # nothing labelled: skipped
    f = write_coco_json(tmp_path / "person_keypoints_val2017.json", images, anns)
    label = pose_sequence(1)[0] - pose_sequence(1)[0, 0] + np.array([0, 0, 4.0], np.float32)
    labels = write_pseudo_labels(tmp_path / "labels.json", {10: label})
    recs = read_coco(f, pseudo_labels=labels)
    assert [r.action for r in recs] == ["ann10", "ann11"]
    a, b = recs
    assert a.subject == "person_keypoints_val2017" and a.num_frames == 1 and a.frame_3d == "camera"
    k = a.keypoints_2d[0][0]
    kp = coco_person(100, 50)
    np.testing.assert_allclose(k[0, :2], (kp[11, :2] + kp[12, :2]) / 2)   # pelvis = mid-hips
    np.testing.assert_allclose(k[8, :2], (kp[5, :2] + kp[6, :2]) / 2)     # thorax = mid-shoulders
    np.testing.assert_allclose(k[16, :2], kp[10, :2])                     # right wrist
    assert (k[:, 2] == 1).all()
    cam = a.cameras[0]
    assert (cam.width, cam.height, cam.cx, cam.cy, cam.fx) == (640, 480, 320, 240, 640)
    np.testing.assert_allclose(a.positions_3d[0], label, atol=1e-6)
    # hidden right hip: right hip, pelvis and spine unconfident, everything else confident
    conf = b.keypoints_2d[0][0, :, 2]
    assert set(np.flatnonzero(conf == 0)) == {0, 1, 7}
    assert b.positions_3d is None and b.cameras[0].height == 800
    # npz labels work the same; views keep the still's 2D and centre the 3D on the pelvis
    npz_labels = write_pseudo_labels(tmp_path / "labels.npz", {10: label})
    a2 = read_coco(f, pseudo_labels=npz_labels)[0]
    (v,) = views(a2, np.random.default_rng(0), 4)
    np.testing.assert_allclose(v.keypoints_2d, a2.keypoints_2d[0])
    np.testing.assert_allclose(v.joints_3d[0], label - label[0], atol=1e-6)


def test_coco_bad_inputs(tmp_path):
    images = [{"id": 1, "width": 640, "height": 480}]
    f = write_coco_json(tmp_path / "kp.json", images, [{"id": 1, "image_id": 1, "keypoints": coco_person(0, 0)}])
    with raises(tmp_path / "none.json", "file not found"):
        read_coco(tmp_path / "none.json")
    with raises(f, "unknown subject 'train'"):
        read_coco(f, subjects=["train"])
    doc = json.loads(f.read_text())
    doc["annotations"][0]["keypoints"] = doc["annotations"][0]["keypoints"][:48]
    f.write_text(json.dumps(doc))
    with raises(f, "48 values, expected 51"):
        read_coco(f)
    f.write_text(json.dumps({"images": images}))
    with raises(f, "'images' and 'annotations'"):
        read_coco(f)
    write_coco_json(f, images, [{"id": 1, "image_id": 7, "keypoints": coco_person(0, 0)}])
    with raises(f, "unknown image_id 7"):
        read_coco(f)
    f.write_text("{ not json")
    with raises(f, "not valid JSON"):
        read_coco(f)
    write_coco_json(f, images, [{"id": 1, "image_id": 1, "keypoints": coco_person(0, 0)}])
    lab = write_pseudo_labels(tmp_path / "lab.json", {1: np.zeros((16, 3))})
    with raises(lab, r"shape \(16, 3\), expected \(17, 3\)"):
        read_coco(f, pseudo_labels=lab)
    lab = write_pseudo_labels(tmp_path / "lab.json", {99: np.zeros((17, 3))})
    with raises(lab, "no pseudo-label matches"):
        read_coco(f, pseudo_labels=lab)


# --------------------------------------------------------------------------------------------
# MPI-INF-3DHP (P-STMO npz layout)
# --------------------------------------------------------------------------------------------

FX, FY, CX, CY = 1497.7, 1495.1, 1017.3, 1043.0


def camera_clip(T: int, seed: int, width: int = 2048, intr=(FX, FY, CX, CY)):
    """3DHP-order data_3d (mm, camera frame) and data_2d (pixels) of one person 4 m away."""
    world = pose_sequence(T, seed=seed)
    cam = np.stack([world[..., 0], -(world[..., 2] - 0.9), world[..., 1] + 4.0], -1)  # y down, z forward
    fx, fy, cx, cy = intr
    uv = np.stack([fx * cam[..., 0] / cam[..., 2] + cx, fy * cam[..., 1] / cam[..., 2] + cy], -1)
    return h36m_to_3dhp_order(cam * 1000.0), h36m_to_3dhp_order(uv), cam


def test_3dhp_train_and_test_layouts(tmp_path):
    d3, d2, cam = camera_clip(30, 0)
    e3, e2, _ = camera_clip(20, 1)
    write_3dhp_npz(tmp_path / "data_train_3dhp.npz",
                   {"S1 Seq1": {0: {"data_3d": d3, "data_2d": d2}, 2: {"data_3d": e3[:20], "data_2d": e2}},
                    "S2 Seq2": {0: {"data_3d": d3, "data_2d": d2}}})
    valid = np.ones(30, bool)
    valid[:4] = False
    o3, o2, ocam = camera_clip(30, 2, intr=(1683.9, 1671.6, 939.9, 560.1))
    write_3dhp_npz(tmp_path / "data_test_3dhp.npz",
                   {"TS1": {"data_3d": d3, "data_2d": d2, "valid": valid},
                    "TS5": {"data_3d": o3, "data_2d": o2, "valid": valid.astype(np.float32)}}, test=True)
    recs = read_mpi_inf_3dhp(tmp_path)
    assert [r.key for r in recs] == ["mpi_inf_3dhp/S1/Seq1.cam0", "mpi_inf_3dhp/S1/Seq1.cam2",
                                     "mpi_inf_3dhp/S2/Seq2.cam0",
                                     "mpi_inf_3dhp/TS1/TS1", "mpi_inf_3dhp/TS5/TS5"]
    r = recs[0]
    assert r.frame_3d == "camera" and r.fps == 25.0 and r.valid is None and len(r.cameras) == 1
    np.testing.assert_allclose(r.positions_3d, cam, atol=1e-5)          # mm → m, H36M order
    np.testing.assert_allclose(r.positions_3d[:, 0], d3[:, 14] / 1000, atol=1e-6)   # pelvis = 3DHP 14
    np.testing.assert_allclose(r.positions_3d[:, 10], d3[:, 0] / 1000, atol=1e-6)   # head = 3DHP head top
    np.testing.assert_allclose(r.positions_3d[:, 8], d3[:, 1] / 1000, atol=1e-6)    # thorax = 3DHP neck
    np.testing.assert_allclose(r.keypoints_2d[0][..., :2], h36m_order_2d(d2), atol=1e-3)
    c = r.cameras[0]
    assert (c.width, c.height) == (2048, 2048)
    np.testing.assert_allclose([c.fx, c.fy, c.cx, c.cy], [FX, FY, CX, CY], rtol=1e-4)
    ts1, ts5 = recs[3], recs[4]
    np.testing.assert_array_equal(ts1.valid, valid)
    assert ts5.valid.dtype == bool and ts5.fps == 50.0
    assert (ts5.cameras[0].width, ts5.cameras[0].height) == (1920, 1080)
    np.testing.assert_allclose(ts5.cameras[0].fx, 1683.9, rtol=1e-4)
    # reading one file, subject filter, resampling carries valid along
    only = read_mpi_inf_3dhp(tmp_path / "data_test_3dhp.npz", subjects=["TS5"], target_fps=25.0)
    assert [r.subject for r in only] == ["TS5"] and only[0].num_frames == 15
    np.testing.assert_array_equal(only[0].valid, valid[::2])
    assert [r.key for r in read_mpi_inf_3dhp(tmp_path, subjects=["S2", "TS1"])] == [
        "mpi_inf_3dhp/S2/Seq2.cam0", "mpi_inf_3dhp/TS1/TS1"]
    # views of camera-frame data are the data itself
    (v,) = views(ts1, np.random.default_rng(0), 4)
    np.testing.assert_allclose(v.joints_3d, ts1.positions_3d - ts1.positions_3d[:, :1], atol=1e-6)
    np.testing.assert_array_equal(v.valid, valid)


def h36m_order_2d(d2: np.ndarray) -> np.ndarray:
    return skeleton.to_h36m(d2.astype(np.float32), "mpi_inf_3dhp17")


def test_3dhp_bad_inputs(tmp_path):
    d3, d2, _ = camera_clip(10, 0)
    f = tmp_path / "data_test_3dhp.npz"
    with raises(f, "file not found"):
        read_mpi_inf_3dhp(f)
    with raises(tmp_path, "neither"):
        read_mpi_inf_3dhp(tmp_path)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3, "data_2d": d2}}, test=True)
    with raises(f, "has no 'valid'"):
        read_mpi_inf_3dhp(f)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3, "data_2d": d2[:8], "valid": np.ones(10)}}, test=True)
    with raises(f, "10 3D frames but 8 2D frames"):
        read_mpi_inf_3dhp(f)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3, "data_2d": d2, "valid": np.ones(9)}}, test=True)
    with raises(f, "'valid'\\] has 9 frames"):
        read_mpi_inf_3dhp(f)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3[:, :16], "data_2d": d2, "valid": np.ones(10)}}, test=True)
    with raises(f, "16 joints, expected 17"):
        read_mpi_inf_3dhp(f)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3 / 1000, "data_2d": d2, "valid": np.ones(10)}}, test=True)
    with raises(f, "expected millimetres"):   # metres
        read_mpi_inf_3dhp(f)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3 * 1000, "data_2d": d2, "valid": np.ones(10)}}, test=True)
    with raises(f, "expected millimetres"):   # micrometres
        read_mpi_inf_3dhp(f)
    write_3dhp_npz(f, {"TS1": {"data_3d": d3, "data_2d": d2, "valid": np.ones(10)}}, test=True)
    with raises(f, "unknown subject 'TS9'"):
        read_mpi_inf_3dhp(f, subjects=["TS9"])
    g = tmp_path / "data_train_3dhp.npz"
    write_3dhp_npz(g, {"S1 Seq1": {0: {"data_3d": d3}}})
    with raises(g, "has no 'data_2d'"):
        read_mpi_inf_3dhp(g)
    np.savez(g, poses=np.zeros(2))
    with raises(g, "missing key.*'data'"):
        read_mpi_inf_3dhp(g)


# --------------------------------------------------------------------------------------------
# Mocap (VideoPose3D 3D layout + per-clip fps): format-exact, embedded and shared
# --------------------------------------------------------------------------------------------

def test_mocap_reads_and_resamples(tmp_path):
    pos = pose_sequence(100, fps=100.0)
    f = write_videopose3d_3d(tmp_path / "m.npz", {"a": {"walk": pos, "run": pos[:10]}, "b": {"jump": pos}},
                             fps={"a": {"walk": 100.0, "run": 50.0}, "b": {"jump": 25.0}},
                             metadata={"layout_name": "h36m", "num_joints": 17, "up_axis": "z"})
    recs = read_mocap(f, target_fps=50.0, subjects=["a"])
    assert [(r.action, r.num_frames, r.fps) for r in recs] == [("walk", 50, 50.0), ("run", 10, 50.0)]
    np.testing.assert_allclose(recs[0].positions_3d, pos[::2], atol=1e-6)
    np.testing.assert_allclose(recs[1].positions_3d, pos[:10])
    (jump,) = read_mocap(f, target_fps=50.0, subjects=["b"])
    assert jump.num_frames == 199   # 25 → 50 fps: one interpolated frame between each pair
    np.testing.assert_allclose(jump.positions_3d[1], (pos[0] + pos[1]) / 2, atol=1e-6)
    assert read_mocap(f)[2].num_frames == 100   # target 0 keeps the source rate


def test_mocap_bad_inputs(tmp_path):
    f = tmp_path / "m.npz"
    with raises(f, "file not found"):
        read_mocap(f)
    write_videopose3d_3d(f, {"a": {"walk": pose_sequence(5)}})
    with raises(f, "missing key.*'fps'"):
        read_mocap(f)
    write_videopose3d_3d(f, {"a": {"walk": pose_sequence(5)}}, fps={"a": {}})
    with raises(f, r"fps\['a'\]\['walk'\] is missing"):
        read_mocap(f)
    write_videopose3d_3d(f, {"a": {"walk": pose_sequence(5)}}, fps={"a": {"walk": 30.0}})
    with raises(f, "unknown subject 'z'"):
        read_mocap(f, subjects=["z"])
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((17, 3)), np.zeros((16, 3))
    write_videopose3d_3d(f, {"a": {"walk": ragged}}, fps={"a": {"walk": 30.0}})
    with raises(f, "ragged"):
        read_mocap(f)
    write_videopose3d_3d(f, {"a": "walk"}, fps={"a": {"walk": 30.0}})
    with raises(f, r"positions_3d\['a'\] must be a dict"):
        read_mocap(f)


def test_embedded_mocap_loads_through_read_source():
    path = default_mocap_path()
    assert path.is_file() and path.stat().st_size < 2_000_000
    assert (path.parent / "LICENSE-data.md").is_file()
    recs = read_source(SourceConfig(), target_fps=50.0)
    # both shared motion files: the optical capture and the CMU subjects
    assert {r.subject for r in recs} == {"climb_a", "climb_b", "deepmimic", "cmu_02", "cmu_06"}
    assert len(recs) == 30 and all(r.fps == 50.0 and r.positions_3d.shape[1:] == (17, 3) for r in recs)
    native = read_source(SourceConfig(), target_fps=0)
    climb = next(r for r in native if r.action == "climb_0")
    assert climb.fps == 60.0 and climb.num_frames == 1000
    with pytest.raises(RayposeDataError, match="format 'coco' needs a path"):
        read_source(SourceConfig(format="coco"), 50.0)
    with pytest.raises(RayposeDataError, match="unknown source format 'fbx'"):
        read_source(SourceConfig(format="fbx", path="x.fbx"), 50.0)


def test_shared_mocap_loads(shared_data):
    recs = read_source(SourceConfig(path=str(shared_data / "mocap_h36m17.npz")), target_fps=0,
                       subjects=["climb_b"])
    assert [(r.action, r.num_frames, r.fps) for r in recs] == [("climb_4", 2303, 120.0)]
    small = read_mocap(default_mocap_path(), subjects=["climb_b"])[0]
    # the embedded clip is the shared one's first 2000 frames, every second one
    np.testing.assert_array_equal(small.positions_3d, recs[0].positions_3d[:2000:2])
    walk = read_mocap(shared_data / "mocap_h36m17.npz", target_fps=50.0, subjects=["deepmimic"],
                      actions=["walk"])[0]
    assert walk.fps == 50.0 and walk.num_frames == int(38 / 30.001 * 50) + 1


# --------------------------------------------------------------------------------------------
# views()
# --------------------------------------------------------------------------------------------

def test_views_of_3d_only_world_record_use_virtual_cameras():
    rec = read_mocap(default_mocap_path(), target_fps=50.0, subjects=["deepmimic"], actions=["walk"])[0]
    out = views(rec, np.random.default_rng(3), num_virtual=5)
    assert len(out) == 5 and len({v.camera.name for v in out}) == 5
    for v in out:
        T = rec.num_frames
        assert v.keypoints_2d.shape == (T, 17, 3) and v.joints_3d.shape == (T, 17, 3)
        assert v.valid.shape == (T,) and v.valid.all() and (v.keypoints_2d[..., 2] == 1).all()
        np.testing.assert_allclose(v.joints_3d[:, 0], 0)
        xy = v.keypoints_2d[..., :2]
        inside = ((xy[..., 0] >= 0) & (xy[..., 0] < v.camera.width)
                  & (xy[..., 1] >= 0) & (xy[..., 1] < v.camera.height)).all(-1)
        assert inside.mean() > 0.9
        # the cameras follow the subject (they translate, never rotate): the 3D is the world pose
        # turned into the camera's orientation, and frame 0 is exactly the stored camera's view
        world_rel = rec.positions_3d - rec.positions_3d[:, :1]
        np.testing.assert_allclose(v.joints_3d, world_rel @ v.camera.R.T, atol=1e-5)
        cam_pos = v.camera.world_to_camera(rec.positions_3d[:1])
        np.testing.assert_allclose(xy[:1], v.camera.project(cam_pos, distort=False), atol=1e-3)
        assert (cam_pos[..., 2] > 2).all()   # in front of the camera, metres away
    # same seed → same cameras
    again = views(rec, np.random.default_rng(3), num_virtual=5)
    np.testing.assert_allclose(again[2].camera.R, out[2].camera.R)


def test_views_of_h36m_use_real_cameras(h36m_files):
    p3, p2, positions, keypoints = h36m_files
    with_2d = read_h36m(p3, subjects=["S9"])[0]
    out = views(with_2d, np.random.default_rng(0), num_virtual=2)
    assert [v.camera.name for v in out] == [c.name for c in h36m_cameras("S9")]
    np.testing.assert_allclose(out[1].keypoints_2d[..., :2], keypoints["S9"]["Eating"][1][:40])
    only_3d = read_h36m(p3, subjects=["S9"], detector=None)[0]
    projected = views(only_3d, np.random.default_rng(0), num_virtual=2)
    assert len(projected) == 4   # real cameras win over virtual ones
    np.testing.assert_allclose(projected[1].keypoints_2d, out[1].keypoints_2d, atol=1e-3)
    np.testing.assert_allclose(projected[1].joints_3d, out[1].joints_3d)


def test_views_reject_inconsistent_records():
    rec = SequenceRecord("x", "s", "a", 50.0, positions_3d=pose_sequence(5), valid=np.ones(4, bool),
                         source_path="clip.npz")
    with pytest.raises(RayposeDataError, match="clip.npz.*valid has 4 frames, expected 5"):
        views(rec, np.random.default_rng(0), 2)


# --------------------------------------------------------------------------------------------
# sources on S3 (a real moto server on 127.0.0.1)
# --------------------------------------------------------------------------------------------

def test_read_source_from_s3(tmp_path, s3_server, monkeypatch):
    import pyarrow.fs as pafs

    from raypose.data.store import filesystem_for

    monkeypatch.setenv("RAYPOSE_CACHE", str(tmp_path / "cache"))
    pos = pose_sequence(20)
    write_amass_joints(tmp_path / "up" / "CMU" / "01" / "a.npz", pos, 100.0)
    write_videopose3d_3d(tmp_path / "up" / "m.npz", {"s": {"walk": pos}}, fps={"s": {"walk": 25.0}})
    fs, _ = filesystem_for("s3://raw-src", s3_server.endpoint)
    fs.create_dir("raw-src")
    pafs.copy_files(str(tmp_path / "up"), "raw-src/data", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    (mocap,) = read_source(SourceConfig(path="s3://raw-src/data/m.npz"), 50.0,
                           s3_endpoint=s3_server.endpoint)
    assert mocap.key == "mocap/s/walk" and mocap.num_frames == 39
    (amass,) = read_source(SourceConfig(format="amass", path="s3://raw-src/data/CMU"), 0,
                           s3_endpoint=s3_server.endpoint)
    assert amass.subject == "01" and amass.num_frames == 20
    np.testing.assert_allclose(amass.positions_3d, pos)
    with pytest.raises(RayposeDataError, match="s3://raw-src/data/none.npz: file not found"):
        read_source(SourceConfig(path="s3://raw-src/data/none.npz"), 50.0, s3_endpoint=s3_server.endpoint)


# --------------------------------------------------------------------------------------------
# missing data is data: NaN/inf joints in real files
# --------------------------------------------------------------------------------------------

def _with_gaps(a: np.ndarray, seed: int, fraction: float, value: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``a`` (…, T, J, C) with ``fraction`` of its joint-frames set to ``value`` (one
    coordinate each), and the (…, T, J) mask of those joints."""
    rng = np.random.default_rng(seed)
    gaps = rng.random(a.shape[:-1]) < fraction
    out = a.copy()
    out[..., 0][gaps] = value
    return out, gaps


def test_nan_2d_detections_train_as_missing_joints_as_at_inference(shared_data, tmp_path):
    """The original failure: a NaN in a training file's 2D rejected the whole file, while
    inference read the same export as missing joints. Real OpenPose detections (Pose2Sim, COCO
    order) with NaN and inf holes, read as H36M 2D: the holes are joints with confidence 0, and
    the reader's keypoints equal what the inference side makes of the same array."""
    from raypose.data.detections import to_h36m

    demo = np.load(shared_data / "pose2sim_demo.npz")
    coco, _ = _with_gaps(demo["keypoints_coco17"], seed=1, fraction=0.1)
    coco[0, 5, 7, 1] = np.inf
    coco[1, 9, 3, 2] = np.nan  # a NaN confidence is a miss too
    world = demo["positions_3d_h36m17"]
    p3 = write_videopose3d_3d(tmp_path / "data_3d_h36m.npz", {"S1": {"Balance": world}})
    write_videopose3d_2d(tmp_path / "data_2d_h36m_openpose.npz", {"S1": {"Balance": list(coco)}},
                         layout_name="coco")
    (rec,) = read_h36m(p3, subjects=["S1"])
    assert len(rec.keypoints_2d) == 4
    for c, kp in enumerate(rec.keypoints_2d):
        assert np.isfinite(kp).all()
        np.testing.assert_array_equal(kp, to_h36m(coco[c], "coco17", p3))  # = the inference reading
    missing = np.stack([kp[..., 2] <= 0 for kp in rec.keypoints_2d])
    before = np.stack([to_h36m(k, "coco17", p3)[..., 2] <= 0 for k in demo["keypoints_coco17"]])
    assert (missing >= before).all() and missing.sum() > before.sum() + 0.05 * missing.size
    # a hole in a COCO hip makes the pelvis (their midpoint) missing
    hip_hole = ~np.isfinite(coco[..., [11, 12], :]).all(-1).any(-1)
    assert missing[..., 0][hip_hole].all()
    # and the views the store is written from carry them on, finite, as confidence 0
    vs = views(rec, np.random.default_rng(0))
    assert all(np.isfinite(v.keypoints_2d).all() for v in vs)
    assert sum(int((v.keypoints_2d[..., 2] <= 0).sum()) for v in vs) == int(missing.sum())


def test_nan_3d_mocap_stays_missing_and_mostly_missing_sequences_are_reported(shared_data, tmp_path):
    """Real mocap with NaN joints is read (not rejected): the NaN joints stay NaN in the 3D
    target and become confidence-0 2D in its virtual views; a sequence more than half missing
    is read too, but with a warning naming the file and the sequence."""
    from raypose.errors import MissingDataWarning

    src = np.load(shared_data / "mocap_h36m17.npz", allow_pickle=True)
    pos, fps = src["positions_3d"].item(), src["fps"].item()
    walk, walk_gaps = _with_gaps(pos["deepmimic"]["walk"], seed=2, fraction=0.05)
    kick, _ = _with_gaps(pos["deepmimic"]["kick"], seed=3, fraction=0.7, value=np.inf)
    path = write_videopose3d_3d(tmp_path / "gappy_mocap.npz", {"deepmimic": {"walk": walk, "kick": kick}},
                                fps={"deepmimic": {"walk": fps["deepmimic"]["walk"], "kick": fps["deepmimic"]["kick"]}})
    recs = {r.action: r for r in read_mocap(path, subjects=["deepmimic"])}
    assert np.array_equal(~np.isfinite(recs["walk"].positions_3d).all(-1), walk_gaps)
    with pytest.warns(MissingDataWarning, match=r"gappy_mocap\.npz: mocap/deepmimic/kick is mostly missing \(7\d%"):
        kick_views = views(recs["kick"], np.random.default_rng(0), 2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingDataWarning)  # 5 % missing is not reported
        walk_views = views(recs["walk"], np.random.default_rng(0), 2)
    for v in walk_views + kick_views:
        assert np.isfinite(v.keypoints_2d).all()
    for v in walk_views:
        lost_3d = ~np.isfinite(v.joints_3d).all(-1)
        # a missing joint is missing in 3D and 2D; a missing pelvis takes its frame's 3D with it
        assert np.array_equal(lost_3d, walk_gaps | walk_gaps[:, :1])
        assert np.array_equal(v.keypoints_2d[..., 2] <= 0, walk_gaps)
        assert np.isfinite(v.joints_3d[~lost_3d]).all()


def test_nan_joints_in_3dhp_and_coco_files_are_missing_not_errors(tmp_path):
    """The other training readers read NaN the same way: 3DHP 2D holes are confidence 0 and 3D
    holes stay NaN; a COCO keypoint with NaN coordinates is an unlabelled joint."""
    d3, d2, _ = camera_clip(12, 0)
    d3[3, 5], d2[4, 7, 0], d2[6, 2, 1] = np.nan, np.nan, np.inf   # joints in 3DHP order
    f = write_3dhp_npz(tmp_path / "data_test_3dhp.npz",
                       {"TS1": {"data_3d": d3, "data_2d": d2, "valid": np.ones(12)}}, test=True)
    (rec,) = read_mpi_inf_3dhp(f)
    kp = rec.keypoints_2d[0]
    assert np.isfinite(kp).all() and int((kp[..., 2] <= 0).sum()) == 2
    assert (kp[4][kp[4, :, 2] <= 0, :2] == 0).all() and (kp[6][kp[6, :, 2] <= 0, :2] == 0).all()
    assert int((~np.isfinite(rec.positions_3d).all(-1)).sum()) == 1 and np.isfinite(rec.positions_3d[:3]).all()

    person = coco_person(0, 0).astype(np.float64)
    person[9, :2] = np.nan  # a left wrist with NaN coordinates (and v = 2)
    f = tmp_path / "kp.json"
    f.write_text(json.dumps({"images": [{"id": 1, "width": 640, "height": 480}], "annotations": [
        {"id": 1, "image_id": 1, "iscrowd": 0, "keypoints": person.reshape(-1).tolist()}]}))
    (rec,) = read_coco(f)
    kp = rec.keypoints_2d[0]
    assert np.isfinite(kp).all() and kp[0, skeleton.JOINT_INDEX["l_wrist"], 2] == 0
