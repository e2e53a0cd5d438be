"""On-device clip gather: against a slow reference, edge padding, flip, normalisation, NaNs."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from raypose import cameras, skeleton
from raypose.config import DataConfig
from raypose.data import clips as C

J = skeleton.NUM_JOINTS


def make_chunks(batch: int = 5, frames: int = 40, seed: int = 0, min_len: int = 1) -> dict:
    """Chunks as the pipeline ships them, with garbage (NaN / huge) in the padding past length."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, frames + 1, (batch,), generator=g)
    lengths[0] = frames                                   # one full chunk
    width = torch.randint(600, 1400, (batch,), generator=g).float()
    height = torch.randint(500, 1200, (batch,), generator=g).float()
    xy = torch.rand(batch, frames, J, 2, generator=g) * torch.stack([width, height], -1)[:, None, None]
    conf = torch.rand(batch, frames, J, 1, generator=g) * 0.9 + 0.1
    kp = torch.cat([xy, conf], -1)
    j3d = torch.randn(batch, frames, J, 3, generator=g) * 0.3
    for b, n in enumerate(lengths.tolist()):
        kp[b, n:] = float("nan")
        j3d[b, n:] = 1e6
    camera = torch.zeros(batch, 23)
    camera[:, 0], camera[:, 1] = width, height
    camera[:, 2:4] = 1100.0
    # principal points off the image centre (real calibrations are), so flips must use them
    camera[:, 4] = width / 2 + torch.randint(-40, 41, (batch,), generator=g).float()
    camera[:, 5] = height / 2 + torch.randint(-40, 41, (batch,), generator=g).float()
    camera[:, 11:20] = torch.eye(3).flatten()
    has_3d = torch.tensor([1.0, 0.0] * batch)[:batch]
    root = torch.randn(batch, frames, 3, generator=g) * 0.5 + torch.tensor([0.0, 0.0, 5.0])
    root[0, 3] = float("nan")                               # an unknown root (a mocap gap)
    for b, n in enumerate(lengths.tolist()):
        root[b, n:] = float("nan")
    return {"keypoints_2d": kp, "joints_3d": j3d, "camera": camera, "length": lengths.long(),
            "has_3d": has_3d, "root_3d": root}


def reference_cut(chunks: dict, num_frames: int, stride: int, centres: torch.Tensor) -> dict:
    """The slow, obvious version: Python loops over chunks, clips and frames."""
    kp, j3d, cam, lengths = (chunks[k].numpy() for k in ("keypoints_2d", "joints_3d", "camera", "length"))
    b_n, c_n = centres.shape
    out = {"pose_2d": np.zeros((b_n * c_n, num_frames, J, 2), np.float32),
           "confidence": np.zeros((b_n * c_n, num_frames, J), np.float32),
           "pose_3d": np.zeros((b_n * c_n, num_frames, J, 3), np.float32),
           "valid": np.zeros((b_n * c_n, num_frames), bool),
           "index": np.zeros((b_n * c_n, num_frames), np.int64)}
    n = 0
    for b in range(b_n):
        for c in range(c_n):
            for k in range(num_frames):
                t = int(centres[b, c]) + (k - num_frames // 2) * stride
                out["valid"][n, k] = 0 <= t < lengths[b]
                t = min(max(t, 0), int(lengths[b]) - 1)
                out["index"][n, k] = t
                out["pose_2d"][n, k] = cameras.normalize_screen(kp[b, t, :, :2], cam[b, 0], cam[b, 1], cam[b, 4:6])
                out["confidence"][n, k] = kp[b, t, :, 2]
                out["pose_3d"][n, k] = j3d[b, t]
            n += 1
    return out


def centres_for(lengths: torch.Tensor, seed: int) -> torch.Tensor:
    """Per chunk: first frame, second, last, second-to-last, and two random frames."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths.tolist():
        r = torch.randint(0, n, (2,), generator=g).tolist()
        rows.append([0, min(1, n - 1), n - 1, max(n - 2, 0), *r])
    return torch.tensor(rows)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("num_frames", [1, 9, 27])
def test_gather_equals_slow_reference(stride, num_frames):
    chunks = make_chunks(seed=stride * 100 + num_frames)
    centres = centres_for(chunks["length"], seed=stride)
    ref = reference_cut(chunks, num_frames, stride, centres)
    idx = C.gather_indices(chunks["length"], centres, num_frames, stride)
    assert idx.shape == centres.shape + (num_frames,)
    np.testing.assert_array_equal(idx.reshape(-1, num_frames).numpy(), ref["index"])
    got = C.cut_clips(chunks, num_frames, stride, centres)
    assert got.pose_2d.shape == (centres.numel(), num_frames, J, 2)
    np.testing.assert_allclose(got.pose_2d.numpy(), ref["pose_2d"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.confidence.numpy(), ref["confidence"])
    np.testing.assert_array_equal(got.pose_3d.numpy(), ref["pose_3d"])
    np.testing.assert_array_equal(got.valid.numpy(), ref["valid"])
    assert got.has_3d.dtype == torch.bool
    assert got.has_3d.tolist() == chunks["has_3d"].bool().repeat_interleave(centres.shape[1]).tolist()
    assert torch.equal(got.centre, got.pose_3d[:, num_frames // 2])
    assert torch.equal(got.frame_index, centres.reshape(-1))


def test_edge_padding_replicates_first_and_last_frame():
    chunks = make_chunks(batch=2, frames=30, seed=1, min_len=12)
    n, f, s = int(chunks["length"][1]), 9, 2
    clips = C.cut_clips(chunks, f, s, torch.tensor([[0, 29], [0, n - 1]]))
    half = f // 2
    start, end = clips.pose_3d[2], clips.pose_3d[3]          # chunk 1, centres 0 and n−1
    assert torch.equal(start[:half], chunks["joints_3d"][1, 0].expand(half, J, 3))
    assert torch.equal(start[half:], chunks["joints_3d"][1, 0:(half + 1) * s:s])
    assert torch.equal(end[half + 1:], chunks["joints_3d"][1, n - 1].expand(half, J, 3))
    assert torch.equal(end[:half + 1], chunks["joints_3d"][1, n - 1 - half * s:n:s])
    assert clips.valid[2].tolist() == [False] * half + [True] * (half + 1)
    assert clips.valid[3].tolist() == [True] * (half + 1) + [False] * half
    assert torch.isfinite(clips.pose_2d).all() and (clips.pose_3d.abs() < 100).all()


def test_normalisation_matches_cameras_normalize_screen():
    chunks = make_chunks(batch=3, frames=10, seed=2, min_len=10)
    clips = C.cut_clips(chunks, 1, 1, torch.arange(10).expand(3, 10))
    for b in range(3):
        w, h = chunks["camera"][b, :2].tolist()
        c = chunks["camera"][b, 4:6].numpy()
        expected = cameras.normalize_screen(chunks["keypoints_2d"][b, :, :, :2].numpy(), w, h, c)
        np.testing.assert_allclose(clips.pose_2d[b * 10:(b + 1) * 10, 0].numpy(), expected, rtol=1e-5, atol=1e-6)
        back = cameras.image_coordinates(clips.pose_2d[b * 10:(b + 1) * 10, 0].numpy(), w, h, c)
        np.testing.assert_allclose(back, chunks["keypoints_2d"][b, :, :, :2].numpy(), rtol=1e-4)


def flipped_source(chunks: dict) -> dict:
    """Mirror the image about the principal point: X → 2cx − X in pixels (the 2D of the
    mirrored 3D), left ↔ right, camera-space x → −x."""
    perm = list(skeleton.FLIP_PERMUTATION)
    kp = chunks["keypoints_2d"][:, :, perm].clone()
    kp[..., 0] = 2 * chunks["camera"][:, 4, None, None] - kp[..., 0]
    j3d = chunks["joints_3d"][:, :, perm].clone()
    j3d[..., 0] = -j3d[..., 0]
    return {**chunks, "keypoints_2d": kp, "joints_3d": j3d}


@pytest.mark.parametrize("stride", [1, 3])
def test_flip_of_clip_matches_cutting_flipped_source(stride):
    chunks = make_chunks(seed=3)
    centres = centres_for(chunks["length"], seed=3)
    flipped = C.flip_clip_batch(C.cut_clips(chunks, 27, stride, centres))
    direct = C.cut_clips(flipped_source(chunks), 27, stride, centres)
    torch.testing.assert_close(flipped.pose_2d, direct.pose_2d, rtol=0, atol=1e-5)
    assert torch.equal(flipped.confidence, direct.confidence)
    assert torch.equal(flipped.pose_3d, direct.pose_3d)
    assert torch.equal(flipped.valid, direct.valid)


def test_flip_is_exact_for_a_camera_whose_principal_point_is_off_centre():
    """The 2D of the mirrored 3D pose, seen by a real-looking camera with cx ≠ w/2, is exactly
    the flipped clip (flips about the image centre were off by 2·(cx − w/2) pixels)."""
    from raypose.data.sources import default_mocap_path
    from raypose.data.sources.mocap import read_mocap

    pose = read_mocap(default_mocap_path(), 50.0, subjects=["climb_b"])[0].positions_3d[:9]
    cam = cameras.Camera("off", 1000, 1002, 1145.0, 1145.0, 540.0, 480.0)
    cam.R, cam.t = cameras.look_at(pose[0, 0] + [4.0, 1.0, 0.3], pose[0, 0])
    x_cam = cam.world_to_camera(pose)
    mirrored = x_cam[:, list(skeleton.FLIP_PERMUTATION)] * np.array([-1.0, 1.0, 1.0], np.float32)

    def chunk(x):
        kp = np.concatenate([cam.project(x, distort=False), np.ones(x.shape[:2] + (1,), np.float32)], -1)
        return {"keypoints_2d": torch.as_tensor(kp)[None], "joints_3d": torch.as_tensor(x - x[:, :1])[None],
                "camera": torch.as_tensor(cam.to_array(), dtype=torch.float32)[None],
                "length": torch.tensor([9]), "has_3d": torch.tensor([True]),
                "root_3d": torch.as_tensor(x[:, 0])[None]}

    centres = torch.arange(9)[None]
    flipped = C.flip_clip_batch(C.cut_clips(chunk(x_cam), 9, 1, centres))
    direct = C.cut_clips(chunk(mirrored), 9, 1, centres)
    torch.testing.assert_close(flipped.pose_2d, direct.pose_2d, rtol=0, atol=1e-5)
    torch.testing.assert_close(flipped.pose_3d, direct.pose_3d, rtol=0, atol=1e-6)
    torch.testing.assert_close(flipped.root_3d, direct.root_3d, rtol=0, atol=1e-6)   # the root mirrors too


def test_root_positions_are_gathered_with_the_clip_and_unknown_ones_are_zero():
    chunks = make_chunks(seed=11)
    centres = centres_for(chunks["length"], seed=11)
    clips = C.cut_clips(chunks, 9, 2, centres)
    idx = C.gather_indices(chunks["length"], centres, 9, 2).reshape(clips.num_clips, 9)
    chunk = torch.arange(centres.shape[0]).repeat_interleave(centres.shape[1])
    expected = chunks["root_3d"][chunk[:, None], idx]
    known = torch.isfinite(expected).all(-1)
    assert torch.equal(clips.root_3d[known], expected[known])
    assert (clips.root_3d[~known] == 0).all() and torch.isfinite(clips.root_3d).all()
    assert (clips.root_3d[known][:, 2] > 0).all()          # a known root is in front of the camera
    assert (~known).any()                                   # the NaN root of chunk 0 was gathered
    assert C.cut_clips({k: v for k, v in chunks.items() if k != "root_3d"}, 9, 2, centres).root_3d is None


def test_flip_twice_is_identity_and_partial_flip_selects_clips():
    clips = C.cut_clips(make_chunks(seed=4), 9, 2, centres_for(make_chunks(seed=4)["length"], 4))
    twice = C.flip_clip_batch(C.flip_clip_batch(clips))
    for name in ("pose_2d", "confidence", "pose_3d", "valid", "has_3d"):
        assert torch.equal(getattr(twice, name), getattr(clips, name)), name
    which = torch.arange(clips.num_clips) % 2 == 0
    part = C.flip_clip_batch(clips, which)
    full = C.flip_clip_batch(clips)
    assert torch.equal(part.pose_2d[which], full.pose_2d[which])
    assert torch.equal(part.pose_3d[~which], clips.pose_3d[~which])
    assert torch.equal(part.confidence[~which], clips.confidence[~which])


def test_missing_detections_become_zero_with_zero_confidence_and_no_nan():
    chunks = make_chunks(batch=3, frames=20, seed=5, min_len=20)
    kp, j3d = chunks["keypoints_2d"], chunks["joints_3d"]
    kp[0, 3, 5, 2] = 0.0                     # confidence 0
    kp[0, 4, 6, 2] = float("nan")            # confidence NaN
    kp[1, 5, 7, 0] = float("nan")            # coordinate NaN with a good confidence
    kp[2, :, 8] = float("nan")               # never detected
    j3d[1, 2, 3] = float("nan")
    clips = C.cut_clips(chunks, 5, 1, torch.arange(20).expand(3, 20))
    for t in (clips.pose_2d, clips.confidence, clips.pose_3d):
        assert torch.isfinite(t).all()
    centre = clips.centre_index
    for b, t, j in [(0, 3, 5), (0, 4, 6), (1, 5, 7)]:
        n = b * 20 + t
        assert clips.confidence[n, centre, j] == 0 and (clips.pose_2d[n, centre, j] == 0).all()
    assert (clips.confidence[40:, :, 8] == 0).all()
    # exactly the gathered copies of the planted misses have confidence 0 in chunks 0 and 1
    idx = C.gather_indices(chunks["length"], torch.arange(20).expand(3, 20), 5, 1).reshape(60, 5)
    planted = {(0, 3, 5), (0, 4, 6), (1, 5, 7)}
    zero = torch.nonzero(clips.confidence[:40] == 0).tolist()
    assert {(n // 20, int(idx[n, k]), j) for n, k, j in zero} == planted
    assert len(zero) == sum(int((idx[b * 20:(b + 1) * 20] == t).sum()) for b, t, _ in planted)
    cfg = DataConfig(num_frames=5, clips_per_sequence=8, noise_std=0.05)
    train = C.train_clips(chunks, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(train.pose_2d).all() and torch.isfinite(train.pose_3d).all()
    assert (train.pose_2d[train.confidence == 0] == 0).all()


def test_eval_clips_cover_every_frame_exactly_once_in_bounded_slices():
    chunks = make_chunks(batch=4, frames=23, seed=6)
    cfg = DataConfig(num_frames=9, stride=2)
    seen = []
    for part in C.eval_clips(chunks, cfg, max_clips=7):
        assert 0 < part.num_clips <= 7
        seen += list(zip(part.chunk_index.tolist(), part.frame_index.tolist()))
        i = part.chunk_index[0].item()
        one = C.cut_clips({k: v[i:i + 1] for k, v in chunks.items()}, 9, 2, part.frame_index[:1, None])
        assert torch.equal(one.pose_3d[0], part.pose_3d[0]) and torch.equal(one.pose_2d[0], part.pose_2d[0])
    expected = [(b, t) for b, n in enumerate(chunks["length"].tolist()) for t in range(n)]
    assert seen == expected
    assert C.all_centres(5).tolist() == [0, 1, 2, 3, 4]


def test_random_centres_stay_inside_each_chunk():
    lengths = torch.tensor([1, 2, 50, 7])
    c = C.random_centres(lengths, 500, torch.Generator().manual_seed(0))
    assert c.shape == (4, 500) and c.dtype == torch.int64
    assert (c >= 0).all() and (c < lengths[:, None]).all()
    assert set(c[2].tolist()) == set(range(50))


def test_train_clips_random_flip_noise_and_seeding():
    chunks = make_chunks(batch=4, frames=40, seed=7)
    cfg = DataConfig(num_frames=9, stride=2, clips_per_sequence=16, flip_augment=True, noise_std=0.0)
    a = C.train_clips(chunks, cfg, torch.Generator().manual_seed(1))
    b = C.train_clips(chunks, cfg, torch.Generator().manual_seed(1))
    assert a.num_clips == 4 * 16 and a.pose_2d.shape == (64, 9, J, 2)
    assert torch.equal(a.pose_2d, b.pose_2d) and torch.equal(a.frame_index, b.frame_index)
    assert (a.frame_index < chunks["length"][a.chunk_index]).all()
    plain = C.cut_clips(chunks, 9, 2, a.frame_index.reshape(4, 16))
    mirrored = C.flip_clip_batch(plain)
    is_plain = (a.pose_3d == plain.pose_3d).flatten(1).all(1)
    is_flip = (a.pose_3d == mirrored.pose_3d).flatten(1).all(1)
    assert (is_plain | is_flip).all()
    assert 10 < int(is_flip.sum()) < 54, "flip probability is not ≈ 0.5"
    assert torch.equal(a.pose_2d[is_flip & ~is_plain], mirrored.pose_2d[is_flip & ~is_plain])

    noisy_cfg = dataclasses.replace(cfg, flip_augment=False, noise_std=0.02)
    noisy = C.train_clips(chunks, noisy_cfg, torch.Generator().manual_seed(2))
    clean = C.cut_clips(chunks, 9, 2, noisy.frame_index.reshape(4, 16))
    diff = noisy.pose_2d - clean.pose_2d
    assert diff.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(noisy.pose_3d, clean.pose_3d)


def test_clip_batch_to_device_keeps_everything():
    clips = C.cut_clips(make_chunks(seed=8), 9, 1, centres_for(make_chunks(seed=8)["length"], 8))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    moved = clips.to(dev)
    for f in dataclasses.fields(clips):
        value = getattr(clips, f.name)
        if isinstance(value, torch.Tensor):
            assert torch.equal(getattr(moved, f.name).cpu(), value)
        else:
            assert getattr(moved, f.name) == value
    assert moved.centre.shape == (clips.num_clips, J, 3)


def test_causal_clips_end_at_the_predicted_frame():
    """A causal clip holds the predicted frame last and only its past: the same frames as a
    centred clip of the same span shifted back, with edge replication at the start only."""
    chunks = make_chunks(seed=9)
    n = int(chunks["length"][0])
    centres = torch.tensor([[0, 5, n - 1]])
    one = {k: v[:1] for k, v in chunks.items()}
    causal = C.cut_clips(one, 9, 2, centres, causal=True)
    assert causal.centre_index == 8 and causal.causal
    idx = C.gather_indices(one["length"], centres, 9, 2, causal=True)[0]
    assert idx[:, -1].tolist() == [0, 5, n - 1]                       # predicted frame last
    assert (idx <= centres[0][:, None]).all()                         # never a future frame
    assert idx[1].tolist() == [0, 0, 0, 0, 0, 0, 1, 3, 5]             # replicated at the start
    assert not causal.valid[1, :6].any() and causal.valid[1, 6:].all()
    torch.testing.assert_close(causal.centre, causal.pose_3d[:, -1])
    centred = C.cut_clips(one, 9, 2, centres - 8)                     # same span, centre 4 back
    torch.testing.assert_close(causal.pose_2d[2], centred.pose_2d[2])
    flipped = C.flip_clip_batch(causal)
    assert flipped.causal and flipped.centre_index == 8


def test_owned_centre_ranges_are_respected():
    """Overlapping chunks: centres come only from [centre_start, centre_stop)."""
    import types

    from raypose.data import clips as C

    B, L = 3, 40
    kp = torch.rand(B, L, 17, 3)
    chunks = {
        "keypoints_2d": kp, "joints_3d": torch.rand(B, L, 17, 3),
        "camera": torch.tensor([[1000.0, 1000.0] + [0.0] * 21] * B),
        "length": torch.tensor([40, 30, 12]), "has_3d": torch.ones(B, dtype=torch.bool),
        "centre_start": torch.tensor([5, 5, 0]), "centre_stop": torch.tensor([35, 30, 12]),
    }
    cfg = types.SimpleNamespace(num_frames=9, stride=1, clips_per_sequence=50, flip_augment=False,
                                noise_std=0.0, eval_max_clips=1000)
    g = torch.Generator().manual_seed(0)
    start, stop = C.owned_centres(chunks)
    centres = C.random_centres(stop, 50, g, start)
    assert bool(((centres >= start[:, None]) & (centres < stop[:, None])).all())
    batches = list(C.eval_clips(chunks, cfg))
    frames = torch.cat([b.frame_index for b in batches])
    chunk_ids = torch.cat([b.chunk_index for b in batches])
    for b in range(B):
        got = frames[chunk_ids == b].tolist()
        assert got == list(range(int(start[b]), int(stop[b])))
