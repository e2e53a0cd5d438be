"""Video input in the one environment (`./setup.sh --video`): MediaPipe 0.10.21 beside Ray.

These run where the video extra is installed (`.ci/run` installs it after the main suite and runs
them with the job-server tests); elsewhere they skip, and `test_detections.py` checks the error
that names the extra.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raypose import skeleton
from raypose.data import detections as D



def _video_extra_imports() -> bool:
    """True when MediaPipe imports (installed *and* matching this numpy: a later plain
    ./setup.sh moves numpy back to 2, which leaves a MediaPipe that fails to import)."""
    if importlib.util.find_spec("mediapipe") is None:
        return False
    try:
        from mediapipe.python.solutions import pose  # noqa: F401
    except Exception:
        return False
    return True


pytestmark = [
    pytest.mark.video,
    pytest.mark.skipif(not _video_extra_imports(),
                       reason="the video extra is not installed (./setup.sh --video)"),
]


def test_environment_holds_the_video_stack_beside_ray():
    """The pins of constraints-video.txt, with Ray, Ray Data's Parquet and DeepSpeed importable."""
    import google.protobuf
    import mediapipe
    import pyarrow.parquet  # noqa: F401  (pyarrow 26 refuses numpy 1.x at import)
    import ray.data  # noqa: F401
    import ray.train.torch  # noqa: F401

    assert mediapipe.__version__ == "0.10.21"
    assert np.__version__.startswith("1.") and google.protobuf.__version__.startswith("4.")


def test_raypose_infer_reads_the_video_in_the_same_environment(shared_data, tmp_path):
    """`raypose infer --input demo.mp4 --single-person` with no --detector-python: every frame
    lifted to a body of plausible proportions, and no MediaPipe start-up notices on the terminal."""
    video = shared_data / "sports2d_demo" / "demo.mp4"
    out = tmp_path / "out.npz"
    raypose = Path(sys.executable).with_name("raypose")
    proc = subprocess.run([str(raypose), "infer", "--input", str(video), "--out", str(out),
                           "--single-person"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    terminal = proc.stdout + proc.stderr
    assert not any(notice in terminal for notice in D.MEDIAPIPE_HARMLESS), terminal
    assert "track 0: 230 frames lifted" in terminal
    with np.load(out) as f:
        pose = f["track_0"]
        frames = f["frames_0"]
    assert pose.shape == (230, 17, 3) and np.isfinite(pose).all()
    np.testing.assert_array_equal(frames, np.arange(230))
    thigh = np.linalg.norm(pose[:, skeleton.JOINT_INDEX["r_knee"]]
                           - pose[:, skeleton.JOINT_INDEX["r_hip"]], axis=-1)
    assert 0.15 < np.median(thigh) < 0.7


def test_mediapipe_agrees_with_the_real_detections(shared_data):
    """The detected person matches one of the two people in the real COCO-17 detections that
    ship with the video (a different detector): median 5 px on a 1768-px frame when measured."""
    video = D.read_detections(shared_data / "sports2d_demo" / "demo.mp4", single_person=True)
    coco = D.read_detections(shared_data / "sports2d_demo" / "detections_coco17.json")
    person = video.tracks["0"]
    errors = []
    for f in range(person.num_frames):
        ours = person.keypoints[f]
        per_track = []
        for track in coco.tracks.values():
            hit = np.nonzero(track.frames == f)[0]
            if len(hit) == 0:
                continue
            theirs = track.keypoints[hit[0]]
            both = (ours[:, 2] > 0.5) & (theirs[:, 2] > 0.3)
            if both.sum() >= 8:
                per_track.append(np.median(np.linalg.norm(ours[both, :2] - theirs[both, :2], axis=-1)))
        if per_track:
            errors.append(min(per_track))
    errors = np.asarray(errors)
    assert len(errors) > 180
    assert np.median(errors) < 10 and np.mean(errors < 20) > 0.8


def test_raypose_infer_online_lifts_the_video_as_it_is_decoded(shared_data, tmp_path):
    """`raypose infer --online` on the real video: every person is detected and tracked on each
    frame as it is decoded, and each frame's 3D is written as a JSON line when it is lifted (the
    shipped centred model: 8 frames late at 30 fps); the latency printed; each published person
    lifted from their first detection on, the same frames as offline detection gives them."""
    from raypose.data.people import detect_people

    video = shared_data / "sports2d_demo" / "demo.mp4"
    out, lines = tmp_path / "online.npz", tmp_path / "live.jsonl"
    raypose = Path(sys.executable).with_name("raypose")
    proc = subprocess.run([str(raypose), "infer", "--input", str(video), "--online", "--max-frames", "80",
                           "--stream-out", str(lines), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frames of delay (267 ms: centred window)" in proc.stdout, proc.stdout
    rows = [json.loads(x) for x in lines.read_text().splitlines()]
    offline = detect_people(video, max_frames=80)          # the same detector and tracker, offline
    with np.load(out) as f:
        tracks = {k[len("track_"):]: f[k] for k in f.files if k.startswith("track_")}
        frames = {k[len("frames_"):]: f[k] for k in f.files if k.startswith("frames_")}
    assert set(tracks) == set(offline.tracks) == {"0", "1"}   # the walker enters at frame ~59
    for tid, pose in tracks.items():
        seen = offline.tracks[tid].frames
        np.testing.assert_array_equal(frames[tid], np.arange(seen[0], seen[-1] + 1))
        streamed = [r for r in rows if r["track"] == tid]
        assert [r["frame"] for r in streamed] == frames[tid].tolist()
        np.testing.assert_allclose(pose, np.asarray([r["joints_3d"] for r in streamed]), atol=1e-4)
        assert np.isfinite(pose).all()
    thigh = np.linalg.norm(tracks["0"][:, skeleton.JOINT_INDEX["r_knee"]]
                           - tracks["0"][:, skeleton.JOINT_INDEX["r_hip"]], axis=-1)
    assert 0.15 < np.median(thigh) < 0.7
    assert f"online: {sum(len(p) for p in tracks.values())} frames lifted" in proc.stdout


def test_every_person_in_the_video_is_tracked_and_lifted(shared_data, tmp_path):
    """`raypose infer --input demo.mp4` (every person, the default): the two people become two
    tracks, each lifted, whose 2D (saved with --save-2d) agrees with the two tracks of the
    video's reference detections (MediaPipe's heavy PoseLandmarker, run by others) with no id
    switch. Measured: coverage 0.85 / 0.95, mean 8.4 / 5.4 px, median 5.4 / 4.0 px on a
    1768 × 994 frame (bench/people.py)."""
    from raypose.data.people import compare_tracks

    video = shared_data / "sports2d_demo" / "demo.mp4"
    out, saved = tmp_path / "out.npz", tmp_path / "people.json"
    raypose = Path(sys.executable).with_name("raypose")
    proc = subprocess.run([str(raypose), "infer", "--input", str(video), "--out", str(out),
                           "--save-2d", str(saved)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    terminal = proc.stdout + proc.stderr
    assert not any(notice in terminal for notice in D.MEDIAPIPE_HARMLESS + ("EGL",)), terminal
    with np.load(out) as f:
        tracks = {k: f[k] for k in f.files if k.startswith("track_")}
    assert set(tracks) == {"track_0", "track_1"}
    for pose in tracks.values():
        assert np.isfinite(pose).all() and len(pose) > 150
    ours = D.read_detections(saved)
    report = compare_tracks(ours.tracks, D.read_detections(
        shared_data / "sports2d_demo" / "detections_coco17.json").tracks)
    print(report)
    assert sorted(r["track"] for r in report.values()) == ["0", "1"]
    for r in report.values():
        assert r["id_switches"] == 0 and r["coverage"] > 0.8, report
        assert r["median_px"] < 8 and r["mean_px"] < 12, report


def test_a_video_with_nobody_in_it_is_a_clear_error(shared_data, tmp_path):
    """Frames of the demo with the people cut out (the top right: trees, a building, sky)."""
    import imageio.v3 as iio

    from raypose.data.people import detect_people
    from raypose.errors import RayposeDataError

    frames = [f[:480, 1300:] for _, f in zip(range(12), D.iter_video_frames(shared_data / "sports2d_demo" / "demo.mp4"))]
    empty = tmp_path / "empty.mp4"
    iio.imwrite(empty, np.stack(frames), fps=30)
    with pytest.raises(RayposeDataError, match="nobody was tracked"):
        detect_people(empty)
