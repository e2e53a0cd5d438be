"""Readers of 2D keypoint files for inference: each format → H36M-17 tracks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from raypose import skeleton
from raypose.data import detections as D
from raypose.errors import RayposeDataError


def _coco_person(rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    """A plausible COCO-17 standing person in pixels (+ confidence), jittered."""
    base = np.array([[500, 200], [510, 190], [490, 190], [520, 195], [480, 195], [540, 260],
                     [460, 260], [560, 330], [440, 330], [570, 400], [430, 400], [525, 420],
                     [475, 420], [530, 520], [470, 520], [532, 620], [468, 620]], np.float32)
    xy = base + rng.normal(0, 2, base.shape).astype(np.float32) + np.float32(shift)
    conf = rng.uniform(0.5, 1.0, (17, 1)).astype(np.float32)
    return np.concatenate([xy, conf], 1)


def _alphapose_doc(rng, frames_by_track: dict[int, list[int]], wrap: bool) -> object:
    results = []
    for tid, frames in frames_by_track.items():
        for f in frames:
            kp = _coco_person(rng, shift=300 * tid)
            results.append({"image_id": f"{f:06d}.jpg" if tid else f, "category_id": 1,
                            "keypoints": kp.ravel().tolist(), "score": 2.5, "idx": tid})
    return {"results": results, "width": 1280, "height": 720, "fps": 25} if wrap else results


@pytest.mark.parametrize("wrap", [True, False])
def test_alphapose_json_two_tracks(tmp_path, wrap):
    rng = np.random.default_rng(0)
    doc = _alphapose_doc(rng, {0: list(range(0, 30)), 1: list(range(5, 20)) + [25, 26]}, wrap)
    path = tmp_path / "alphapose-results.json"
    path.write_text(json.dumps(doc))
    det = D.read_detections(path)
    assert set(det.tracks) == {"0", "1"}
    assert det.tracks["0"].keypoints.shape == (30, 17, 3)
    assert det.tracks["1"].num_frames == 17
    np.testing.assert_array_equal(det.tracks["1"].frames[-3:], [19, 25, 26])
    assert (det.width, det.height, det.fps) == ((1280, 720, 25.0) if wrap else (None, None, None))
    # pelvis is the mid-hip point, its confidence the lower hip confidence
    raw = np.asarray((doc["results"] if wrap else doc)[0]["keypoints"], np.float32).reshape(17, 3)
    kp = det.tracks["0"].keypoints[0]
    np.testing.assert_allclose(kp[0, :2], raw[[11, 12], :2].mean(0), rtol=1e-6)
    assert kp[0, 2] == pytest.approx(raw[[11, 12], 2].min())
    np.testing.assert_allclose(kp[skeleton.JOINT_INDEX["l_wrist"], :2], raw[9, :2])


def test_alphapose_duplicate_frame_keeps_best_score(tmp_path):
    rng = np.random.default_rng(1)
    a, b = _coco_person(rng), _coco_person(rng, shift=50)
    doc = [{"image_id": 3, "keypoints": a.ravel().tolist(), "score": 1.0, "idx": 7},
           {"image_id": 3, "keypoints": b.ravel().tolist(), "score": 2.0, "idx": 7}]
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(doc))
    tr = D.read_detections(path).tracks["7"]
    assert tr.num_frames == 1
    np.testing.assert_allclose(tr.keypoints[0, skeleton.JOINT_INDEX["l_wrist"], :2], b[9, :2], rtol=1e-6)


def test_real_sports2d_detections(shared_data):
    det = D.read_detections(shared_data / "sports2d_demo" / "detections_coco17.json")
    doc = json.loads((shared_data / "sports2d_demo" / "detections_coco17.json").read_text())
    assert set(det.tracks) == {"0", "1"}
    for tid, tr in det.tracks.items():
        frames = {r["image_id"] for r in doc["results"] if str(r["idx"]) == tid}
        assert tr.num_frames == len(frames)
        assert tr.keypoints.shape == (len(frames), 17, 3)
        assert np.all(np.diff(tr.frames) > 0)
        assert np.isfinite(tr.keypoints).all()
    assert (det.tracks["0"].num_frames, det.tracks["1"].num_frames) == (205, 159)
    assert (det.width, det.height, det.fps) == (1768, 994, 30.0)
    assert det.video_path is not None and det.video_path.endswith("demo.mp4")


def test_videopose3d_npz(tmp_path):
    rng = np.random.default_rng(2)
    a = np.stack([_coco_person(rng) for _ in range(12)])
    b = np.stack([_coco_person(rng) for _ in range(7)])[..., :2]
    path = tmp_path / "data_2d_custom_myvideos.npz"
    meta = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1, 3], [2, 4]],
            "video_metadata": {"a.mp4": {"w": 1920, "h": 1080}, "b.mp4": {"w": 1920, "h": 1080}}}
    np.savez_compressed(path, positions_2d={"a.mp4": {"custom": [a]}, "b.mp4": {"custom": [b]}},
                        metadata=meta)
    det = D.read_detections(path)
    assert {k: v.keypoints.shape for k, v in det.tracks.items()} == {"a.mp4": (12, 17, 3), "b.mp4": (7, 17, 3)}
    assert (det.width, det.height) == (1920, 1080)
    assert (det.tracks["b.mp4"].keypoints[..., 2] == 1).all()  # 2 channels: all detected


def test_npy_two_and_three_channels_and_nan(tmp_path):
    rng = np.random.default_rng(3)
    arr = np.stack([_coco_person(rng) for _ in range(10)])
    arr[4, 9, :2] = np.nan  # l_wrist lost in frame 4
    p3, p2 = tmp_path / "kp3.npy", tmp_path / "kp2.npy"
    np.save(p3, arr)
    np.save(p2, arr[..., :2])
    for path in (p3, p2):
        tr = D.read_detections(path).tracks["0"]
        assert tr.keypoints.shape == (10, 17, 3)
        assert np.isfinite(tr.keypoints).all()
        assert tr.keypoints[4, skeleton.JOINT_INDEX["l_wrist"], 2] == 0
    h36 = tmp_path / "h36.npy"
    np.save(h36, arr[..., :2])
    tr = D.read_detections(h36, layout="h36m17").tracks["0"]
    np.testing.assert_allclose(tr.keypoints[0, :, :2], arr[0, :, :2])


def test_mediapipe_mapping_matches_coco():
    rng = np.random.default_rng(4)
    mp = rng.uniform(0, 1000, (5, 33, 3)).astype(np.float32)
    coco = mp[:, list(D.MEDIAPIPE33_TO_COCO17_INDEX)]
    np.testing.assert_allclose(D.MEDIAPIPE33_TO_H36M.apply(mp), skeleton.COCO17_TO_H36M.apply(coco), rtol=1e-5)
    np.testing.assert_allclose(D.MEDIAPIPE33_TO_H36M.apply_confidence(mp[..., 2]),
                               skeleton.COCO17_TO_H36M.apply_confidence(coco[..., 2]))
    assert D.MEDIAPIPE33_NAMES[D.MEDIAPIPE33_TO_COCO17_INDEX[15]] == "l_ankle"


@pytest.mark.parametrize("name,content,problem", [
    ("bad.json", "{not json", "cannot read JSON"),
    ("nokp.json", json.dumps([{"image_id": 0}]), "no 'keypoints'"),
    ("bad.npy", None, "expected (T, joints"),
    ("x.txt", "hello", "unknown input type"),
])
def test_bad_input_names_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((3, 17)))
    else:
        path.write_text(content)
    with pytest.raises(RayposeDataError) as err:
        D.read_detections(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_wrong_joint_count(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.zeros((4, 15, 2)))
    with pytest.raises(RayposeDataError, match="17 joints"):
        D.read_detections(path)


def test_video_needs_the_extra_or_detects(shared_data):
    video = shared_data / "sports2d_demo" / "demo.mp4"
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(RayposeDataError, match=r"mediapipe==0.10.21.*setup.sh --video.*--detector-python"):
            D.read_detections(video)
        return
    det = D.detect_video(video, max_frames=40)
    tr = det.tracks["0"]
    assert tr.keypoints.shape == (40, 17, 3)
    assert (det.width, det.height) == (1768, 994)
    assert (tr.keypoints[..., 2] > 0).any()


def test_video_detector_subprocess(shared_data, tmp_path):
    """Detection in a separate interpreter (the fallback for environments that keep numpy 2):
    a failing one is a clear error; a MediaPipe environment — this one with the video extra, or
    RAYPOSE_DETECTOR_PYTHON — finds the one person in the first 30 frames (the second walks
    in at frame 39), tracked."""
    import os
    import sys

    video = shared_data / "sports2d_demo" / "demo.mp4"
    if D._has_mediapipe():
        python = sys.executable            # ./setup.sh --video: the subprocess path, run for real
    else:
        with pytest.raises(RayposeDataError, match="detection with"):
            D.read_detections(video, detector_python=sys.executable, max_frames=2)
        python = os.environ.get("RAYPOSE_DETECTOR_PYTHON")
    if not python:
        pytest.skip("set RAYPOSE_DETECTOR_PYTHON to an environment with mediapipe==0.10.21")
    det = D.detect_video_subprocess(video, python, max_frames=30)
    assert set(det.tracks) == {"0"} and det.video_path == str(video)
    tr = det.tracks["0"]
    assert 20 <= tr.num_frames <= 30 and tr.frames[-1] < 30
    assert (det.width, det.height, det.fps) == (1768, 994, 30.0)
    assert (tr.keypoints[..., 2] > 0.5).mean() > 0.5


def _mocap_in_h36m_order(shared_data) -> np.ndarray:
    """Real mocap (H36M-17 order) projected by a virtual camera: (T, 17, 2) pixels."""
    from raypose.cameras import virtual_cameras

    world = np.load(shared_data / "mocap_h36m17.npz", allow_pickle=True)["positions_3d"].item()["deepmimic"]["walk"]
    cam = virtual_cameras(world[:, 0].mean(0), 1, np.random.default_rng(0))[0]
    return cam.project(cam.world_to_camera(world)).astype(np.float32)


def test_h36m_order_npy_without_layout_is_read_as_h36m(shared_data, tmp_path):
    # the original failure: a (T, 17, 2) H36M-order npy was read as COCO order without a word
    xy = _mocap_in_h36m_order(shared_data)
    path = tmp_path / "h36m_order.npy"
    np.save(path, xy)
    det = D.read_detections(path)
    assert det.layout == "h36m17" and det.layout_reason.startswith("detected from the joints' geometry")
    np.testing.assert_allclose(det.tracks["0"].keypoints[..., :2], xy)   # not remapped as COCO
    assert D.read_detections(path, layout="coco17").layout_reason == "given by --layout"


def test_real_coco_detections_without_layout_are_read_as_coco(shared_data, tmp_path):
    doc = json.loads((shared_data / "sports2d_demo" / "detections_coco17.json").read_text())
    det = D.read_detections(shared_data / "sports2d_demo" / "detections_coco17.json")
    assert (det.layout, det.layout_reason) == ("coco17", "declared in the file")   # keypoint_format
    undeclared = tmp_path / "undeclared.json"
    undeclared.write_text(json.dumps({k: v for k, v in doc.items() if k != "keypoint_format"}))
    det = D.read_detections(undeclared)
    assert det.layout == "coco17" and "look COCO-17" in det.layout_reason
    rows = sorted((r for r in doc["results"] if r["idx"] == 0), key=lambda r: r["image_id"])
    path = tmp_path / "coco.npy"
    np.save(path, np.array([r["keypoints"] for r in rows], np.float32).reshape(-1, 17, 3))
    assert D.read_detections(path).layout == "coco17"


def test_an_unclear_17_joint_order_is_refused_with_a_request_for_layout(shared_data, tmp_path):
    from raypose import skeleton as sk

    path = tmp_path / "other_order.npy"   # real poses, MPI-INF-3DHP joint order
    np.save(path, _mocap_in_h36m_order(shared_data)[:, list(sk.MPI3DHP17_TO_H36M_INDEX)])
    with pytest.raises(RayposeDataError, match=r"COCO-17 or H36M-17 order .*pass --layout coco17 or --layout h36m17"):
        D.read_detections(path)
    assert D.read_detections(path, layout="h36m17").layout == "h36m17"   # the user decides


def test_a_missing_camera_is_named():
    """`camera:N` reads a capture device; where there is none (or no OpenCV) the error says so."""
    from raypose.data import detections as D
    from raypose.errors import RayposeDataError

    assert D.is_camera("camera:0") and not D.is_camera("camera.mp4")
    with pytest.raises(RayposeDataError, match="camera"):
        next(iter(D.iter_video_frames("camera:63")))
