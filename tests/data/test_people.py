"""Every person in a video: tiling, tracking and scoring on the Sports2D demo's real 2D.

These need no MediaPipe: the tracker is fed the real two-person detections that ship with the
video (another detector's output), with their ids hidden. The real video through MediaPipe is
in tests/test_video_env.py (the video pass of .ci/run).
"""
from __future__ import annotations

import numpy as np
import pytest

from raypose import skeleton
from raypose.data import detections as D
from raypose.data import people as P


@pytest.fixture(scope="module")
def reference(shared_data) -> D.Detections:
    return D.read_detections(shared_data / "sports2d_demo" / "detections_coco17.json")


def _per_frame(det: D.Detections, drop: dict[str, range] | None = None) -> list[list[np.ndarray]]:
    """The reference's poses frame by frame, ids hidden (order reversed: no help from it),
    with the frames in ``drop`` removed from those tracks (a person unseen)."""
    drop = drop or {}
    last = max(int(t.frames[-1]) for t in det.tracks.values())
    per_frame: list[list[np.ndarray]] = [[] for _ in range(last + 1)]
    for tid, tr in det.tracks.items():
        for f, kp in zip(tr.frames, tr.keypoints):
            if int(f) not in drop.get(tid, ()):
                per_frame[int(f)].insert(0, kp)
    return per_frame


def _as_detections(tracks) -> dict[str, D.Track]:
    return {str(i): D.Track(frames, poses) for i, (frames, poses) in enumerate(tracks)}


def test_square_tiles_cover_the_long_side_with_overlap():
    assert P.square_tiles(1768, 994) == [P.Tile(0, 0, 994), P.Tile(387, 0, 994), P.Tile(774, 0, 994)]
    assert P.square_tiles(994, 1768) == [P.Tile(0, 0, 994), P.Tile(0, 387, 994), P.Tile(0, 774, 994)]
    assert P.square_tiles(640, 640) == [P.Tile(0, 0, 640)]
    with pytest.raises(ValueError, match="overlap"):
        P.square_tiles(640, 480, overlap=1.0)


def test_the_real_two_people_are_tracked_without_id_switches(reference):
    tracks = P.select_tracks(P.link_tracks(_per_frame(reference)), min_frames=10, max_people=None)
    ours = _as_detections(tracks)
    report = P.compare_tracks(ours, reference.tracks)
    assert len(ours) == 2, {k: (t.frames[0], t.frames[-1]) for k, t in ours.items()}
    assert {r["track"] for r in report.values()} == {"0", "1"}
    for r in report.values():
        assert r["id_switches"] == 0 and r["coverage"] > 0.95 and r["median_px"] == 0.0, report


def test_an_id_survives_a_short_gap_and_not_a_long_one(reference):
    """Person 1 unseen for 12 frames keeps the id with max_gap 15; for 40 frames, not."""
    short = P.link_tracks(_per_frame(reference, {"1": range(100, 112)}), max_gap=15)
    assert len(P.select_tracks(short, 10, None)) == 2
    long = P.link_tracks(_per_frame(reference, {"1": range(100, 140)}), max_gap=15)
    kept = P.select_tracks(long, 10, None)
    assert len(kept) == 3 and any(f[0] >= 140 for f, _ in kept)


def test_max_people_keeps_the_longest_tracks(reference):
    tracks = P.link_tracks(_per_frame(reference))
    (only,) = P.select_tracks(tracks, 10, max_people=1)
    assert len(only[0]) == max(t.num_frames for t in reference.tracks.values())


def test_one_person_seen_twice_is_kept_once(reference):
    """A duplicate (the same person from two tiles, or mirrored left/right by one of them, or a
    partial pose inside the whole one) goes; two different people stay."""
    a = reference.tracks["0"].keypoints[100]
    b = reference.tracks["1"].keypoints[np.searchsorted(reference.tracks["1"].frames, 100)]
    index17 = np.array(skeleton.FLIP_PERMUTATION)                                # H36M left ↔ right
    mirror = a[index17]
    assert P.same_person(a, a + 2.0, mirror_index=index17)
    assert P.same_person(a, mirror, mirror_index=index17)
    assert not P.same_person(a, b, mirror_index=index17)
    partial = a.copy()
    partial[[2, 3, 5, 6]] = a[[1, 1, 4, 4]]                                        # legs folded up
    kept = P.suppress_duplicates([partial, b, a], [3.0, 2.0, 1.0], mirror_index=index17)
    assert len(kept) == 2 and any(k is a for k in kept) and any(k is b for k in kept)


def test_compare_tracks_counts_id_switches(reference):
    """Swap the two people's ids halfway: each reference track lands on two ids, one switch."""
    t0, t1 = reference.tracks["0"], reference.tracks["1"]
    cut = 120
    swapped = {
        "a": D.Track(np.concatenate([t0.frames[t0.frames < cut], t1.frames[t1.frames >= cut]]),
                     np.concatenate([t0.keypoints[t0.frames < cut], t1.keypoints[t1.frames >= cut]])),
        "b": D.Track(np.concatenate([t1.frames[t1.frames < cut], t0.frames[t0.frames >= cut]]),
                     np.concatenate([t1.keypoints[t1.frames < cut], t0.keypoints[t0.frames >= cut]])),
    }
    report = P.compare_tracks(swapped, reference.tracks)
    assert [r["id_switches"] for r in report.values()] == [1, 1]
    assert all(r["coverage"] > 0.95 for r in report.values())


def test_mediapipe_mirror_swaps_every_left_and_right_landmark():
    names = D.MEDIAPIPE33_NAMES
    swap = str.maketrans("lr", "rl")
    assert (P.MIRROR33[P.MIRROR33] == np.arange(33)).all()
    for k, m in enumerate(P.MIRROR33):
        side, _, part = names[k].partition("_") if names[k][1] == "_" else ("", "", names[k])
        expected = f"{side.translate(swap)}_{part}" if side else (
            part[:-1] + part[-1].translate(swap) if part.startswith("mouth_") else part)
        assert names[m] == expected, (names[k], names[m])
