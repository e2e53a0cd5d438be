"""Inference: 2D files → root-relative 3D per track; masking, windows, flip; the writers."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from raypose import infer, metrics, models, skeleton
from raypose.data.detections import Track, read_detections, to_h36m
from raypose.errors import RayposeDataError
from tests.data.formats import read_position_bvh

torch.set_num_threads(1)
NUM_FRAMES = 9


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return models.build("pstmo_s", num_frames=NUM_FRAMES, dim=32, ffn_dim=64, heads=2, depth=1,
                        sem_hidden=32).eval()


class Recording(nn.Module):
    """Passes through to a real lifter and keeps what it was given (to check the masking)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, pose_2d, joints_missing=None):
        self.seen.append((pose_2d.clone(), joints_missing.clone()))
        return self.inner(pose_2d, joints_missing)


def _person(t: int, seed: int = 0, width: int = 1000, height: int = 1000) -> np.ndarray:
    """(T, 17, 3) H36M pixels + confidence of a walking-in-place person (from real mocap shape)."""
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0], [-12, 0], [-14, 45], [-15, 90], [12, 0], [14, 45], [15, 90],
                     [0, -25], [0, -50], [0, -60], [0, -75], [18, -48], [28, -22], [30, 5],
                     [-18, -48], [-28, -22], [-30, 5]], np.float32) * 3
    phase = np.sin(np.linspace(0, 4 * np.pi, t))[:, None, None]
    xy = base[None] + np.array([width / 2, height / 2], np.float32) + phase * 10
    xy = xy + rng.normal(0, 1.0, xy.shape).astype(np.float32)
    conf = rng.uniform(0.6, 1.0, (t, 17, 1)).astype(np.float32)
    return np.concatenate([xy, conf], -1)


def test_lift_sequence_shape_root_and_padding(model):
    for t in (3, 40):  # shorter and longer than the window
        out = infer.lift_sequence(model, _person(t), 1000, 1000, NUM_FRAMES, batch_size=16)
        assert out.shape == (t, 17, 3) and out.dtype == np.float32
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[:, 0], 0)
        assert np.abs(out).max() > 0


def test_every_frame_is_a_centre_with_edge_padding(model):
    rec = Recording(model)
    kp = _person(12)
    infer.lift_sequence(rec, kp, 1000, 1000, NUM_FRAMES, batch_size=5, flip=False)
    seen = torch.cat([p for p, _ in rec.seen])
    assert [p.shape[0] for p, _ in rec.seen] == [5, 5, 2]
    xy, _ = infer.prepare_2d(kp, 1000, 1000)
    for centre in (0, 6, 11):
        idx = np.clip(np.arange(centre - 4, centre + 5), 0, 11)
        np.testing.assert_allclose(seen[centre].numpy(), xy[idx], rtol=1e-6)


def test_batch_size_does_not_change_the_result(model):
    kp = _person(30, seed=1)
    a = infer.lift_sequence(model, kp, 1000, 1000, NUM_FRAMES, batch_size=1)
    b = infer.lift_sequence(model, kp, 1000, 1000, NUM_FRAMES, batch_size=256)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_missing_joints_are_masked_not_zeroed(model):
    kp = _person(20, seed=2)
    wrist = skeleton.JOINT_INDEX["l_wrist"]
    kp[5:9, wrist, 2] = 0.05          # low confidence
    kp[10, 3, :2] = np.nan            # lost detection
    rec = Recording(model)
    out = infer.lift_sequence(rec, kp, 1000, 1000, NUM_FRAMES, flip=False, conf_threshold=0.2)
    pose, missing = rec.seen[0]
    assert missing.dtype == torch.bool
    assert missing[5:9, NUM_FRAMES // 2, wrist].all()
    assert missing[10, NUM_FRAMES // 2, 3]
    assert missing.sum() == sum(((np.clip(np.arange(c - 4, c + 5), 0, 19)[:, None] == np.array([5, 6, 7, 8])).sum()
                                 + (np.clip(np.arange(c - 4, c + 5), 0, 19) == 10).sum()) for c in range(20))
    assert torch.isfinite(pose).all()
    # masked means ignored: moving a masked joint anywhere leaves the 3D unchanged
    moved = kp.copy()
    moved[5:9, wrist, :2] += 300
    again = infer.lift_sequence(model, moved, 1000, 1000, NUM_FRAMES, flip=False, conf_threshold=0.2)
    np.testing.assert_allclose(out, again, atol=1e-6)
    unmasked = infer.lift_sequence(model, moved, 1000, 1000, NUM_FRAMES, flip=False, conf_threshold=0.0)
    assert np.abs(unmasked - out).max() > 1e-4


def test_flip_average_is_mirror_equivariant(model):
    kp = _person(15, seed=3)
    mirrored = kp[:, list(skeleton.FLIP_PERMUTATION)].copy()
    mirrored[..., 0] = 1000 - mirrored[..., 0]
    a = infer.lift_sequence(model, kp, 1000, 1000, NUM_FRAMES, flip=True)
    b = infer.lift_sequence(model, mirrored, 1000, 1000, NUM_FRAMES, flip=True)
    np.testing.assert_allclose(skeleton.flip_pose(b), a, atol=1e-5)
    no_flip = infer.lift_sequence(model, kp, 1000, 1000, NUM_FRAMES, flip=False)
    assert np.abs(no_flip - a).max() > 1e-5


def test_lift_tracks_fills_gaps(model):
    kp = _person(6, seed=4)
    tracks = {"a": Track(np.array([10, 11, 12, 15, 16, 17]), kp), 3: (np.arange(4), kp[:4])}
    res = infer.lift_tracks(model, tracks, 1000, 1000, NUM_FRAMES, batch_size=8)
    assert set(res) == {"a", "3"}
    np.testing.assert_array_equal(res["a"][0], np.arange(10, 18))
    assert res["a"][1].shape == (8, 17, 3) and res["3"][1].shape == (4, 17, 3)
    packed = infer.lift_tracks(model, tracks, 1000, 1000, NUM_FRAMES, fill_gaps=False)
    assert packed["a"][1].shape == (6, 17, 3)


def _args(**kw):
    import argparse

    parser = infer.add_infer_arguments(argparse.ArgumentParser())
    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            argv.append(flag)
        elif isinstance(v, (list, tuple)):
            argv += [flag, *map(str, v)]
        else:
            argv += [flag, str(v)]
    return parser.parse_args(["--checkpoint", "unused", *argv])


def _alphapose_file(path: Path) -> Path:
    results = []
    for tid, frames in ((0, range(0, 14)), (1, range(3, 11))):
        kp = _person(len(frames), seed=tid)
        kp[..., 0] += 200 * tid
        inv = np.linalg.pinv(skeleton.COCO17_TO_H36M.weights)  # an H36M person back in COCO-ish layout
        coco = np.einsum("kj,tjc->tkc", inv, kp[..., :2])
        for i, f in enumerate(frames):
            flat = np.concatenate([coco[i], np.full((17, 1), 0.9)], 1)
            results.append({"image_id": f, "keypoints": flat.ravel().tolist(), "score": 1.0, "idx": tid})
    path.write_text(json.dumps({"results": results, "width": 1000, "height": 1000, "fps": 25}))
    return path


@pytest.mark.parametrize("fmt", ["json", "npz", "npy2", "npy3"])
def test_each_input_format_end_to_end(model, tmp_path, capsys, fmt):
    if fmt == "json":
        # the pinv-made "COCO" person has no real head, so its layout must be stated
        src, tracks, extra = _alphapose_file(tmp_path / "dets.json"), {"0": 14, "1": 8}, {"layout": "coco17"}
    elif fmt == "npz":
        src = tmp_path / "data_2d_custom.npz"
        np.savez(src, positions_2d={"clip.mp4": {"custom": [_person(11)]}},
                 metadata={"layout_name": "h36m", "video_metadata": {"clip.mp4": {"w": 1000, "h": 1000}}})
        tracks, extra = {"clip.mp4": 11}, {}
    else:
        src = tmp_path / "kp.npy"
        np.save(src, _person(13)[..., : 2 if fmt == "npy2" else 3])
        tracks, extra = {"0": 13}, {"image_size": (1000, 1000), "layout": "h36m17"}
    out = tmp_path / "out" / "poses.npz"
    res = infer.infer_command(_args(input=src, out=out, json=True, bvh=True, batch_size=4, **extra),
                              model=model, num_frames=NUM_FRAMES)
    with np.load(out) as z:
        for tid, n in tracks.items():
            assert z[f"track_{tid}"].shape == (n, 17, 3)
            np.testing.assert_array_equal(z[f"track_{tid}"][:, 0], 0)
            assert z[f"frames_{tid}"].shape == (n,)
        assert sorted(k for k in z.files if k.startswith("track_")) == sorted(f"track_{t}" for t in tracks)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert {t: len(v["frames"]) for t, v in doc["tracks"].items()} == tracks
    assert doc["units"] == "metres"
    assert len(res["written"]["bvh"]) == len(tracks)
    printed = capsys.readouterr().out
    for tid, n in tracks.items():
        assert f"track {tid}: {n} frames" in printed
    assert str(out) in printed


def test_missing_image_size_is_a_clear_error(model, tmp_path):
    src = tmp_path / "kp.npy"
    np.save(src, _person(5))
    with pytest.raises(ValueError, match="--image-size"):
        infer.infer_command(_args(input=src, out=tmp_path / "o.npz"), model=model, num_frames=NUM_FRAMES)


def test_bvh_reproduces_the_positions(model, tmp_path):
    poses = infer.lift_sequence(model, _person(7, seed=5), 1000, 1000, NUM_FRAMES)
    path = infer.write_bvh(tmp_path / "p.bvh", poses, fps=25)
    text = path.read_text()
    assert "Frames: 7" in text and "Frame Time: 0.04" in text
    names, parents, world = read_position_bvh(path)
    order = [skeleton.JOINT_NAMES.index(n) for n in names]
    assert [order[p] if p >= 0 else -1 for p in parents] == [skeleton.PARENTS[j] for j in order]
    expected = poses[:, order] * np.array([1, -1, -1]) * 100  # Y up, centimetres
    np.testing.assert_allclose(world, expected, atol=1e-3)


def test_real_pose2sim_detections(model, shared_data):
    """One camera's real OpenPose detections → 3D; MPJPE against the triangulated 3D in that camera.

    With the untrained test model only finiteness and shape are asserted; set
    RAYPOSE_INFER_CHECKPOINT to a trained checkpoint to get the real number printed.
    """
    d = np.load(shared_data / "pose2sim_demo.npz")
    cam = 0
    kp = to_h36m(d["keypoints_coco17"][cam], "coco17", "pose2sim_demo.npz")
    width, height = d["image_size"][cam]
    lifter, num_frames, stride = model, NUM_FRAMES, 1
    if os.environ.get("RAYPOSE_INFER_CHECKPOINT"):
        lifter, num_frames, stride, *_ = infer.load_checkpoint(os.environ["RAYPOSE_INFER_CHECKPOINT"])
    pred = infer.lift_sequence(lifter, kp, width, height, num_frames, stride=stride, batch_size=64)
    assert pred.shape == (100, 17, 3) and np.isfinite(pred).all()
    np.testing.assert_array_equal(pred[:, 0], 0)
    world = d["positions_3d_h36m17"].astype(np.float64)
    cam_3d = world @ d["R"][cam].T + d["t"][cam]
    target = cam_3d - cam_3d[:, :1]
    assert target[:, :, 2].std() < 1.0 and (cam_3d[:, 0, 2] > 0).all()  # in front of the camera
    e = metrics.mpjpe(pred, target) * 1000
    pe = metrics.p_mpjpe(pred, target) * 1000
    print(f"\nPose2Sim camera {cam}: MPJPE {e:.1f} mm, P-MPJPE {pe:.1f} mm "
          f"({'checkpoint ' + os.environ['RAYPOSE_INFER_CHECKPOINT'] if lifter is not model else 'untrained test model'})")
    assert np.isfinite(e) and np.isfinite(pe)


def test_real_sports2d_json_lifts_two_tracks(model, shared_data, tmp_path):
    det = read_detections(shared_data / "sports2d_demo" / "detections_coco17.json")
    res = infer.lift_tracks(model, det.tracks, det.width, det.height, NUM_FRAMES, batch_size=128)
    assert set(res) == {"0", "1"}
    for tid, (frames, poses) in res.items():
        tr = det.tracks[tid]
        assert frames[0] == tr.frames[0] and frames[-1] == tr.frames[-1]
        assert poses.shape == (len(frames), 17, 3) and np.isfinite(poses).all()


def test_max_people_keeps_the_longest_track_of_a_detections_file(model, shared_data, tmp_path):
    """--max-people N applies to any input (the N tracks seen longest); --single-person is a
    video detector's choice and is refused for a file that already holds its tracks."""
    src = shared_data / "sports2d_demo" / "detections_coco17.json"
    parser = infer.add_infer_arguments(argparse.ArgumentParser())
    saved = tmp_path / "kept.json"
    res = infer.infer_command(parser.parse_args(
        ["--input", str(src), "--out", str(tmp_path / "o.npz"), "--max-people", "1",
         "--save-2d", str(saved)]), model=model, num_frames=NUM_FRAMES)
    assert set(res["results"]) == {"0"}                     # 205 detected frames against 159
    again = read_detections(saved)
    assert set(again.tracks) == {"0"} and again.tracks["0"].num_frames == 205
    with pytest.raises(RayposeDataError, match="--single-person applies to video input"):
        infer.infer_command(parser.parse_args(["--input", str(src), "--out", str(tmp_path / "p.npz"),
                                               "--single-person"]), model=model, num_frames=NUM_FRAMES)


def test_cli_dispatch_reaches_the_checkpoint_loader(tmp_path, capsys):
    from raypose import cli

    src = tmp_path / "kp.npy"
    np.save(src, _person(5))
    with pytest.raises(SystemExit) as e:          # a data error: its message and exit code 2
        cli.main(["infer", "--input", str(src), "--image-size", "1000", "1000",
                  "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.npz")])
    assert e.value.code == 2 and "not a raypose checkpoint" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert "infer" in capsys.readouterr().out


class WindowSpan(nn.Module):
    """Joint j's 3D x = j × (x of the window's last frame − x of its first): a window's time span
    made visible (a reference model for the resampling, not a lifter)."""

    def __init__(self, num_frames: int):
        super().__init__()
        self.num_frames = num_frames
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, pose_2d, joints_missing=None):
        span = pose_2d[:, -1, :, 0] - pose_2d[:, 0, :, 0]                        # (B, 17)
        x = span * torch.arange(skeleton.NUM_JOINTS, dtype=span.dtype)
        return {"centre": torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[:, None]}


def test_footage_is_lifted_at_the_models_frame_rate():
    """A 27-frame window of a model trained at 50 fps spans 0.52 s; 30-fps footage lifted with
    fps/model_fps must see the same span (without resampling it would span 0.87 s)."""
    t = np.arange(90) / 30.0                                   # 3 s at 30 fps
    kp = np.zeros((90, 17, 3), np.float32)
    kp[..., 0] = 300 + 200 * t[:, None]                        # moving right at 200 px/s
    kp[..., 1], kp[..., 2] = 500, 1.0
    model = WindowSpan(27)
    out = infer.lift_sequence(model, kp, 1000, 1000, 27, flip=False, fps=30.0, model_fps=50.0)
    assert out.shape == (90, 17, 3)
    expected = 200 * 26 / 50 / 1000 * 2                        # px/s × span × (2 / width)
    mid = out[20:70, 1, 0]                                     # joint 1 − root: 1 × span
    np.testing.assert_allclose(mid, expected, rtol=1e-4)
    plain = infer.lift_sequence(model, kp, 1000, 1000, 27, flip=False)
    np.testing.assert_allclose(plain[20:70, 1, 0], 200 * 26 / 30 / 1000 * 2, rtol=1e-4)


def test_inference_does_not_import_the_training_package():
    # inference loads checkpoints through raypose.checkpoints, below both it and raypose/train/
    import subprocess
    import sys

    code = ("import sys, raypose.infer, raypose.checkpoints; "
            "bad = [m for m in sys.modules if m.startswith(('raypose.train', 'ray.train'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stdout + out.stderr
    src = (Path(__file__).resolve().parents[1] / "raypose" / "infer.py").read_text()
    assert "raypose.train" not in src


def test_infer_says_which_layout_it_detected(model, shared_data, tmp_path, capsys):
    from raypose.cameras import virtual_cameras

    world = np.load(shared_data / "mocap_h36m17.npz", allow_pickle=True)["positions_3d"].item()["deepmimic"]["run"]
    cam = virtual_cameras(world[:, 0].mean(0), 1, np.random.default_rng(1))[0]
    src = tmp_path / "h36m_order.npy"
    np.save(src, cam.project(cam.world_to_camera(world)).astype(np.float32))
    infer.infer_command(_args(input=src, out=tmp_path / "o.npz", image_size=(cam.width, cam.height)),
                        model=model, num_frames=NUM_FRAMES)
    assert "layout: h36m17 (detected from the joints' geometry" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# the shipped model (raypose/assets/wild_lifter)
# --------------------------------------------------------------------------------------------

def test_shipped_model_is_small_documented_and_loads():
    files = {p.name: p.stat().st_size for p in infer.SHIPPED_CHECKPOINT.iterdir()}
    assert {"model.pt", "meta.pt", "config.json", "README.md"} <= set(files)
    assert sum(files.values()) < 5_000_000
    readme = (infer.SHIPPED_CHECKPOINT / "README.md").read_text()
    assert "configs/wild.yaml" in readme and "mocap.cs.cmu.edu" in readme and "MPJPE" in readme
    lifter = infer.load_checkpoint()                       # no --checkpoint: the shipped model
    assert lifter.num_frames == 27 and lifter.fps == 50.0
    assert all(p.dtype == torch.float32 for p in lifter.model.parameters())


def test_shipped_model_lifts_the_sports2d_people(shared_data, tmp_path):
    """The real two-person video's COCO detections, no --checkpoint: plausible 3D bodies."""
    src = shared_data / "sports2d_demo" / "detections_coco17.json"
    res = infer.infer_command(infer.add_infer_arguments(argparse.ArgumentParser()).parse_args(
        ["--input", str(src), "--out", str(tmp_path / "o.npz")]))
    with np.load(tmp_path / "o.npz") as d:
        tracks = {k: d[k] for k in d.files if k.startswith("track_")}
    assert set(tracks) == {"track_0", "track_1"} and res["written"]["npz"]
    for poses in tracks.values():
        assert np.isfinite(poses).all()
        thigh = np.median(np.linalg.norm(poses[:, 2] - poses[:, 1], axis=-1))   # r_knee − r_hip
        shin = np.median(np.linalg.norm(poses[:, 3] - poses[:, 2], axis=-1))
        assert 0.2 < thigh < 0.7 and 0.2 < shin < 0.7, (thigh, shin)
        y = poses[..., 1]                                                     # camera y is down
        upright = (y[:, 10] < y[:, 0]) & (y[:, 0] < y[:, 2]) & (y[:, 2] < y[:, 3])  # head, pelvis, knee, foot
        assert upright.mean() > 0.8, upright.mean()                           # one person flips


def test_infer_job_without_checkpoint_on_an_h36m_npy(shared_data, tmp_path):
    """The issue's command: a plain .npy in H36M order, image size and fps given, no checkpoint."""
    import subprocess
    import sys

    from raypose.config import protocol_rig
    from raypose.data.sources.mocap import read_mocap
    from raypose.data.sources.views import views

    rec = read_mocap(shared_data / "cmu_h36m17.npz", 30.0, subjects=["cmu_07"], actions=["07_01"])[0]
    view = views(rec, np.random.default_rng(0), 1, protocol_rig())[0]
    np.save(tmp_path / "walk.npy", view.keypoints_2d[..., :2])
    cmd = [sys.executable, "jobs/infer.py", "--input", str(tmp_path / "walk.npy"), "--layout", "h36m17",
           "--image-size", "1000", "1002", "--fps", "30", "--out", str(tmp_path / "out.npz")]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "shipped model" in done.stdout
    with np.load(tmp_path / "out.npz") as d:
        pred = d["track_0"]
    err = metrics.mpjpe(pred.astype(np.float64), view.joints_3d.astype(np.float64)) * 1000
    assert pred.shape == view.joints_3d.shape and err < 120, err


def test_short_detection_gaps_are_filled_and_long_ones_stay_missing(shared_data):
    """Real Sports2D track 0: its detector drops joints for a few frames and whole frames for 22."""
    det = read_detections(shared_data / "sports2d_demo" / "detections_coco17.json")
    frames, kp = infer.contiguous(det.tracks["0"])
    seen = kp[..., 2] > infer.DEFAULT_CONF_THRESHOLD
    filled = infer.fill_short_gaps(kp, max_gap=5)
    now = filled[..., 2] > infer.DEFAULT_CONF_THRESHOLD
    assert now.sum() > seen.sum() and (now | ~seen).all()       # more joints, none lost
    np.testing.assert_array_equal(filled[seen], kp[seen])        # detections untouched
    # a filled joint lies on the line between the detections around its gap
    t, j = map(int, np.argwhere(now & ~seen)[0])
    left = max(i for i in range(t) if seen[i, j]) if seen[:t, j].any() else None
    right = min(i for i in range(t + 1, len(kp)) if seen[i, j]) if seen[t + 1:, j].any() else None
    if left is not None and right is not None:
        w = (t - left) / (right - left)
        np.testing.assert_allclose(filled[t, j, :2], (1 - w) * kp[left, j, :2] + w * kp[right, j, :2], rtol=1e-5)
    # frames the detector lost entirely, in runs: a run longer than 5 frames stays missing
    blackout = ~seen.any(1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], blackout.astype(int), [0]])))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2])]
    a, b = max(runs, key=lambda r: r[1] - r[0])
    assert b - a > 5 and not now[a:b].any()
    assert (infer.fill_short_gaps(kp, max_gap=30)[..., 2] > infer.DEFAULT_CONF_THRESHOLD)[blackout].all()
    np.testing.assert_array_equal(infer.fill_short_gaps(kp, 0), kp)


def test_bf16_lifting_stays_within_millimetres_of_fp32(shared_data):
    """--precision bf16 (autocast): the shipped model lifts the real Pose2Sim detections to
    within a few millimetres of fp32 (1.2 mm mean when measured); an unknown precision is refused."""
    from raypose.skeleton import to_h36m

    lifter = infer.load_checkpoint(None)
    with np.load(shared_data / "pose2sim_demo.npz") as d:
        keypoints = to_h36m(d["keypoints_coco17"][0], "coco17")
        width, height = d["image_size"][0]
    lifted = {p: infer.lift_sequence(lifter.model, keypoints, width, height, lifter.num_frames, precision=p)
              for p in ("fp32", "bf16")}
    shift = np.linalg.norm(lifted["bf16"] - lifted["fp32"], axis=-1)
    assert 0 < shift.mean() < 0.003 and shift.max() < 0.02
    with pytest.raises(ValueError, match="fp16"):
        infer.lift_sequence(lifter.model, keypoints, width, height, lifter.num_frames, precision="fp16")


def test_a_trajectory_head_gives_camera_space_roots_in_every_output(tmp_path, capsys):
    """A lifter with a trajectory head: the root per frame (metres, its depth scaled by the lens
    given or assumed), in the npz (``root_<id>``), the JSON (``root_3d``) and a BVH whose root
    travels; a lifter without one gives None and writes what it always wrote."""
    torch.manual_seed(0)
    traj = models.build("pstmo_s", num_frames=NUM_FRAMES, dim=32, ffn_dim=64, heads=2, depth=1,
                        sem_hidden=32, trajectory=True).eval()
    kp = _person(12, seed=3)
    poses, root = infer.lift_with_root(traj, kp, 1000, 800, NUM_FRAMES, focal=1000.0)
    np.testing.assert_allclose(poses, infer.lift_sequence(traj, kp, 1000, 800, NUM_FRAMES))
    assert root.shape == (12, 3) and (root[:, 2] > 0).all()
    _, longer = infer.lift_with_root(traj, kp, 1000, 800, NUM_FRAMES, focal=2000.0)
    np.testing.assert_allclose(longer[:, :2], root[:, :2])
    np.testing.assert_allclose(longer[:, 2], 2 * root[:, 2], rtol=1e-6)       # depth ∝ focal length
    _, assumed = infer.lift_with_root(traj, kp, 1000, 800, NUM_FRAMES)          # the long side: 1000 px
    np.testing.assert_allclose(assumed, root)
    assert infer.lift_with_root(models.build("pstmo_s", num_frames=NUM_FRAMES, dim=32, ffn_dim=64, heads=2,
                                             depth=1, sem_hidden=32).eval(), kp, 1000, 800, NUM_FRAMES)[1] is None

    src = tmp_path / "kp.npy"
    np.save(src, kp)
    out = tmp_path / "o.npz"
    infer.infer_command(_args(input=src, out=out, json=True, bvh=True, image_size=(1000, 800), layout="h36m17",
                              focal=1000), model=traj, num_frames=NUM_FRAMES)
    with np.load(out) as z:
        np.testing.assert_allclose(z["root_0"], root, atol=1e-6)
        np.testing.assert_allclose(z["track_0"], poses, atol=1e-6)
    doc = json.loads(out.with_suffix(".json").read_text())
    np.testing.assert_allclose(doc["tracks"]["0"]["root_3d"], root, atol=1e-4)
    names, _, world = read_position_bvh(out.with_name("o_0.bvh"))
    order = [skeleton.JOINT_NAMES.index(n) for n in names]
    expected = (poses + root[:, None])[:, order] * np.array([1, -1, -1]) * 100    # placed, Y up, cm
    np.testing.assert_allclose(world, expected, atol=1e-2)
    assert "trajectory: camera-space root per frame (focal 1000 px)" in capsys.readouterr().out
