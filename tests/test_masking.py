"""Masking: exact counts, the P-STMO/MPM/APTPose strategies, seeding, missing detections."""
from __future__ import annotations

import dataclasses
import itertools
import types

import pytest
import torch

from raypose import masking, skeleton
from raypose.config import MaskingConfig

N, F, J = 6, 27, skeleton.NUM_JOINTS


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cfg(**kw) -> MaskingConfig:
    return MaskingConfig(**{"mask_missing": False, **kw})


@pytest.mark.parametrize("frames,ratio,expected", [
    (243, 0.8, 194), (243, 0.9, 219), (27, 0.6, 16), (9, 0.5, 5), (9, 0.0, 0), (1, 0.8, 0), (3, 0.99, 2),
])
def test_num_masked_frames_rounds_half_up_and_keeps_one_frame(frames, ratio, expected):
    assert masking.num_masked_frames(frames, ratio) == expected


@pytest.mark.parametrize("frames,ratio", [(27, 0.8), (243, 0.9), (9, 0.3), (81, 0.0)])
def test_temporal_mask_exact_count_per_clip(frames, ratio):
    m = masking.temporal_mask(N, frames, ratio, gen())
    assert m.dtype == torch.bool and m.shape == (N, frames)
    assert (m.sum(1) == masking.num_masked_frames(frames, ratio)).all()
    if 0 < ratio:
        assert not (m == m[0]).all(), "every clip got the same frames"


@pytest.mark.parametrize("m_s", [0, 1, 2, 7, 17])
def test_spatial_mask_exact_count_per_frame_any_joint(m_s):
    m = masking.spatial_mask(N, F, m_s, gen())
    assert m.shape == (N, F, J)
    assert (m.sum(-1) == m_s).all()
    if 0 < m_s < J:
        assert m.any(0).any(0).all(), "some joint is never chosen"
        assert not (m == m[:, :1]).all(), "the same joints in every frame is tube masking"


def test_spatiotemporal_masks_joints_only_on_visible_frames():
    q_t, m_s, frames = 0.8, 2, 243
    masks = masking.make_masks(N, frames, cfg(strategy="spatiotemporal", temporal_ratio=q_t,
                                              spatial_joints=m_s), gen())
    fm, jm = masks.frames_masked, masks.joints_masked
    k = masking.num_masked_frames(frames, q_t)
    assert (fm.sum(1) == k).all()
    assert not jm[fm].any()
    assert (jm[~fm].sum(-1) == m_s).all()
    hidden = (fm[..., None] | jm).float().mean()
    expected = k / frames + (1 - k / frames) * m_s / J          # q_T + (1 − q_T)·q_S
    assert hidden.item() == pytest.approx(expected, abs=1e-6)


def test_tube_mask_same_joints_every_frame():
    masks = masking.make_masks(N, F, cfg(strategy="tube", spatial_joints=5), gen())
    jm = masks.joints_masked
    assert not masks.frames_masked.any()
    assert (jm == jm[:, :1]).all()
    assert (jm.sum(-1) == 5).all()
    assert not (jm[:, 0] == jm[0, 0]).all(), "every clip got the same tube"


def test_temporal_and_spatial_strategies_leave_the_other_axis_alone():
    t = masking.make_masks(N, F, cfg(strategy="temporal", temporal_ratio=0.5), gen())
    assert (t.frames_masked.sum(1) == masking.num_masked_frames(F, 0.5)).all()
    assert not t.joints_masked.any()
    s = masking.make_masks(N, F, cfg(strategy="spatial", spatial_joints=3), gen())
    assert not s.frames_masked.any() and (s.joints_masked.sum(-1) == 3).all()
    none = masking.make_masks(N, F, cfg(strategy="none"), gen())
    assert not none.frames_masked.any() and not none.joints_masked.any() and none.levels == {}


def _group_sets(level: str, count: int) -> set[frozenset[int]]:
    groups = skeleton.anatomy_groups(level)
    return {frozenset(itertools.chain.from_iterable(c)) for c in itertools.combinations(groups, count)}


@pytest.mark.parametrize("level", skeleton.ANATOMY_LEVELS)
def test_hierarchical_level_masks_one_anatomy_group_per_frame(level):
    m = masking.hierarchical_masks(40, F, [level], gen(), counts={"keypoint": 1})[level]
    allowed = _group_sets(level, 1)
    seen = {frozenset(torch.nonzero(row).flatten().tolist()) for row in m.reshape(-1, J)}
    assert seen <= allowed
    assert seen == allowed, "some anatomy group is never chosen"


@pytest.mark.parametrize("level,count", [("bone", 2), ("limb", 2), ("keypoint", 3), ("body", 2)])
def test_hierarchical_count_is_a_number_of_distinct_groups(level, count):
    m = masking.hierarchical_masks(10, F, [level], gen(1), counts={level: count})[level]
    allowed = _group_sets(level, count)
    for row in m.reshape(-1, J):
        assert frozenset(torch.nonzero(row).flatten().tolist()) in allowed


def test_make_masks_hierarchical_combines_temporal_mask_and_all_levels():
    c = cfg(strategy="hierarchical", temporal_ratio=0.5, spatial_joints=2)
    masks = masking.make_masks(N, F, c, gen())
    fm = masks.frames_masked
    assert (fm.sum(1) == masking.num_masked_frames(F, 0.5)).all()
    assert list(masks.levels) == list(c.levels)
    expected_size = {"keypoint": 2, "bone": 2, "limb": 3, "body": 6}
    for level, m in masks.levels.items():
        assert m.shape == (N, F, J)
        assert not m[fm].any(), f"{level} masks a dropped frame"
        assert (m[~fm].sum(-1) == expected_size[level]).all()
        seen = {frozenset(torch.nonzero(r).flatten().tolist()) for r in m[~fm]}
        assert seen <= _group_sets(level, masking.level_group_counts(c)[level])
    assert torch.equal(masks.joints_masked, masks.levels["keypoint"])
    # levels are drawn independently of each other
    assert not torch.equal(masks.levels["limb"], masks.levels["body"])


def test_hierarchical_counts_from_config_field_and_fallback_level():
    c = types.SimpleNamespace(strategy="hierarchical", temporal_ratio=0.0, spatial_joints=4,
                              levels=["body", "limb"], mask_missing=False,
                              level_groups={"limb": 2})
    masks = masking.make_masks(N, F, c, gen())
    assert (masks.levels["limb"].sum(-1) == 6).all()      # two disjoint limbs
    assert (masks.levels["body"].sum(-1) == 6).all()
    assert torch.equal(masks.joints_masked, masks.levels["limb"])  # finest level requested
    assert masking.level_group_counts(c) == {"keypoint": 4, "bone": 1, "limb": 2, "body": 1}


@pytest.mark.parametrize("strategy", ["temporal", "spatial", "spatiotemporal", "tube", "hierarchical"])
def test_same_seed_same_masks_other_seed_different(strategy):
    c = cfg(strategy=strategy, temporal_ratio=0.6, spatial_joints=3)
    a = masking.make_masks(N, F, c, gen(7))
    b = masking.make_masks(N, F, c, gen(7))
    d = masking.make_masks(N, F, c, gen(8))
    assert torch.equal(a.frames_masked, b.frames_masked) and torch.equal(a.joints_masked, b.joints_masked)
    assert all(torch.equal(a.levels[k], b.levels[k]) for k in a.levels)
    differs = not torch.equal(a.frames_masked, d.frames_masked) or not torch.equal(a.joints_masked, d.joints_masked)
    assert differs


def test_missing_mask_marks_zero_negative_and_nan_confidence():
    conf = torch.tensor([0.9, 0.0, -1.0, float("nan"), 1e-6])
    assert masking.missing_mask(conf).tolist() == [False, True, True, True, False]


def test_make_masks_unions_missing_detections():
    conf = torch.rand(N, F, J, generator=gen(3)) + 0.1
    conf[0, :, 4] = 0.0
    conf[1, 3, 9] = float("nan")
    c = cfg(strategy="hierarchical", temporal_ratio=0.5, spatial_joints=1, mask_missing=True)
    masks = masking.make_masks(N, F, c, gen(), confidence=conf)
    assert masks.joints_masked[0, :, 4].all() and masks.joints_masked[1, 3, 9]
    for m in masks.levels.values():
        assert m[0, :, 4].all() and m[1, 3, 9]
    plain = masking.make_masks(N, F, dataclasses.replace(c, mask_missing=False), gen(), confidence=conf)
    assert torch.equal(masks.joints_masked, plain.joints_masked | masking.missing_mask(conf))
    none = masking.make_masks(N, F, cfg(strategy="none", mask_missing=True), gen(), confidence=conf)
    assert torch.equal(none.joints_masked, masking.missing_mask(conf))
    with pytest.raises(ValueError, match="shape"):
        masking.make_masks(N, F + 1, c, gen(), confidence=conf)


def test_masks_live_on_requested_device_and_drawn_from_generator_device():
    c = cfg(strategy="spatiotemporal")
    cpu = masking.make_masks(N, F, c, gen(5), device="cpu")
    assert cpu.frames_masked.device.type == "cpu" and cpu.joints_masked.dtype == torch.bool
    if torch.cuda.is_available():
        gpu = masking.make_masks(N, F, c, gen(5), device="cuda")
        assert gpu.joints_masked.is_cuda
        assert torch.equal(gpu.joints_masked.cpu(), cpu.joints_masked)


def test_bad_requests_raise():
    with pytest.raises(ValueError, match="strategy"):
        masking.make_masks(N, F, dataclasses.replace(cfg(), strategy="bogus"), gen())
    with pytest.raises(ValueError):
        masking.hierarchical_masks(N, F, ["body"], gen(), counts={"body": 3})
