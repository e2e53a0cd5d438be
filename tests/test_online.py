"""Online lifting: frames in one at a time give the offline 3D, with the delay the window needs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from raypose import infer, models, online
from raypose.data.detections import Track
from tests.test_infer import _person

torch.set_num_threads(1)
NUM_FRAMES = 9
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return models.build("pstmo_s", num_frames=NUM_FRAMES, dim=32, ffn_dim=64, heads=2, depth=1,
                        sem_hidden=32).eval()


def _stream(lifter: online.OnlineLifter, kp: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Push every frame, flush; the poses in frame order and how many came back per push."""
    got: dict[int, np.ndarray] = {}
    per_push = []
    for row in kp:
        out = lifter.push(row)
        per_push.append(len(out))
        got.update(out)
    got.update(lifter.flush())
    assert sorted(got) == list(range(len(kp)))
    return np.stack([got[i] for i in range(len(kp))]), per_push


@pytest.mark.parametrize("causal,stride", [(True, 1), (False, 1), (True, 2), (False, 3)])
def test_online_equals_offline_at_the_model_rate(model, causal, stride):
    kp = _person(40, seed=3)
    kp[10:13, 5, 2] = 0.0                      # a joint lost for three frames: masked in both
    lifter = infer.Lifter(model, NUM_FRAMES, stride, None, causal)
    streamed, per_push = _stream(online.OnlineLifter(lifter, 1000, 1000), kp)
    offline = infer.lift_sequence(model, kp, 1000, 1000, NUM_FRAMES, stride=stride, causal=causal)
    np.testing.assert_allclose(streamed, offline, atol=1e-5)
    delay = 0 if causal else NUM_FRAMES // 2 * stride
    # a causal window answers every push at once; a centred one starts `delay` frames late
    assert per_push == [0] * delay + [1] * (len(kp) - delay)


def test_a_causal_window_never_reads_the_future(model):
    """Changing frames after t leaves the online pose of t unchanged (causal); a centred window
    does see them."""
    kp = _person(30, seed=4)
    later = kp.copy()
    later[16:, :, :2] += 40.0
    for causal, same in ((True, True), (False, False)):
        lifter = infer.Lifter(model, NUM_FRAMES, 1, None, causal)
        a, _ = _stream(online.OnlineLifter(lifter, 1000, 1000), kp)
        b, _ = _stream(online.OnlineLifter(lifter, 1000, 1000), later)
        assert np.allclose(a[:16], b[:16], atol=1e-6) == same


def test_other_frame_rates_are_interpolated_close_to_offline(model):
    """Input at 30 fps, model at 50 fps: windows are sampled at the model's rate from the frames
    seen so far; the offline path resamples the whole sequence instead, so the two agree
    closely, not exactly."""
    kp = _person(60, seed=5)
    lifter = infer.Lifter(model, NUM_FRAMES, 1, 50.0, True)
    streamed, per_push = _stream(online.OnlineLifter(lifter, 1000, 1000, fps=30.0), kp)
    offline = infer.lift_sequence(model, kp, 1000, 1000, NUM_FRAMES, fps=30.0, model_fps=50.0,
                                  causal=True)
    assert per_push == [1] * len(kp)
    assert np.abs(streamed - offline).mean() < 0.01 * np.abs(offline).mean() + 1e-3


def test_held_gaps_use_only_the_past(model):
    """With max_gap a lost joint keeps its last detection (no look-ahead); beyond it, masked."""
    kp = _person(20, seed=6)
    kp[8:11, 3, 2] = 0.0
    lifter = infer.Lifter(model, NUM_FRAMES, 1, None, True)
    held = online.OnlineLifter(lifter, 1000, 1000, max_gap=5)
    filled = kp.copy()
    filled[8:11, 3] = kp[7, 3]
    a, _ = _stream(held, kp)
    b = infer.lift_sequence(model, filled, 1000, 1000, NUM_FRAMES, causal=True)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_memory_stays_bounded(model):
    lifter = online.OnlineLifter(infer.Lifter(model, NUM_FRAMES, 2, None, False), 1000, 1000)
    for row in _person(200, seed=7):
        lifter.push(row)
    assert len(lifter._frames) <= 2 * NUM_FRAMES * 2 + 2


def test_stream_tracks_holds_back_gaps_and_drops_a_finished_tail(model):
    """Person b vanishes for 3 frames then returns (the gap is lifted, once b is back), and is
    gone after frame 20 (its undetected tail is not lifted); a starts at frame 5."""
    kp = _person(40, seed=8)
    frames = []
    for n in range(40):
        people = {}
        if n >= 5:
            people["a"] = kp[n]
        if n <= 20 and not 10 <= n < 13:
            people["b"] = kp[n]
        frames.append((n, people))
    lifter = infer.Lifter(model, NUM_FRAMES, 1, None, True)
    out: dict[str, list[int]] = {}
    for n, tid, pose in online.stream_tracks(frames, lambda: online.OnlineLifter(lifter, 1000, 1000),
                                             end_after=5):
        out.setdefault(tid, []).append(n)
        assert pose.shape == (17, 3)
    assert out["a"] == list(range(5, 40))
    assert out["b"] == list(range(0, 21))


def _args(**kw) -> argparse.Namespace:
    parser = infer.add_infer_arguments(argparse.ArgumentParser())
    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, *map(str, v if isinstance(v, (list, tuple)) else [v])]
    return parser.parse_args(argv)


def test_infer_online_on_real_detections_matches_offline(model, tmp_path):
    """`raypose infer --online` replays the real Sports2D detections (two people) frame by frame:
    the same 3D as the offline command with gap filling off, the latency reported, and every
    frame written as a JSON line the moment it is lifted."""
    source = SHARED / "sports2d_demo" / "detections_coco17.json"
    common = dict(input=source, fill_gaps=0, no_flip=True)
    off = infer.infer_command(_args(out=tmp_path / "off.npz", **common), model, NUM_FRAMES)
    lines = tmp_path / "live.jsonl"
    on = infer.infer_command(_args(out=tmp_path / "on.npz", online=True, stream_out=lines, **common),
                             model, NUM_FRAMES)
    assert set(on["results"]) == set(off["results"]) and len(on["results"]) == 2
    for tid, (frames, poses) in off["results"].items():
        detected = set(off_frames := frames.tolist())
        on_frames, on_poses = on["results"][tid]
        # online lifts the detected frames and the gaps inside the track, like the offline path
        assert set(on_frames.tolist()) == detected == set(range(off_frames[0], off_frames[-1] + 1))
        np.testing.assert_allclose(on_poses, poses, atol=1e-5)
    stats = on["latency"]
    assert stats["delay_frames"] == NUM_FRAMES // 2 and stats["compute_median_ms"] > 0
    rows = [json.loads(x) for x in lines.read_text().splitlines()]
    assert len(rows) == sum(len(f) for f, _ in on["results"].values())
    assert np.asarray(rows[0]["joints_3d"]).shape == (17, 3)
    saved = np.load(tmp_path / "on.npz")
    assert {f"track_{t}" for t in on["results"]} <= set(saved.files)


def test_infer_online_max_people_keeps_the_first_published(model, tmp_path):
    source = SHARED / "sports2d_demo" / "detections_coco17.json"
    one = infer.infer_command(_args(input=source, out=tmp_path / "one.npz", online=True, max_people=1,
                                    fill_gaps=0, no_flip=True), model, NUM_FRAMES)
    assert list(one["results"]) == ["0"]
