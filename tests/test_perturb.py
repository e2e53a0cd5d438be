"""Test-time corruptions: Gaussian 2D noise in normalised units, whole-sequence occlusions."""
from __future__ import annotations

import numpy as np
import pytest

from raypose import perturb, skeleton


def chunks(n: int = 6, frames: int = 50, width: float = 1000.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, width, (n, frames, 17, 2)), np.ones((n, frames, 17, 1))], -1)
    kp[0, :, 3, 2] = 0.0                      # a joint the detector missed
    camera = np.zeros((n, 23), np.float32)
    camera[:, 0] = width
    return {"keypoints_2d": kp.astype(np.float32), "camera": camera}


def test_noise_is_sigma_in_normalised_units_and_spares_missing_joints():
    c = chunks()
    out = perturb.add_noise(c, 0.02, seed=3)
    delta = (out["keypoints_2d"] - c["keypoints_2d"])[..., :2]
    present = c["keypoints_2d"][..., 2] > 0
    # normalisation maps the width to 2, so σ = 0.02 is 0.02 * 1000 / 2 = 10 px per axis
    assert delta[present].std() == pytest.approx(10.0, rel=0.05)
    assert np.all(delta[~present] == 0)
    assert np.array_equal(out["keypoints_2d"][..., 2], c["keypoints_2d"][..., 2])
    assert np.array_equal(perturb.add_noise(c, 0.02, seed=3)["keypoints_2d"], out["keypoints_2d"])
    assert np.array_equal(perturb.add_noise(c, 0.0)["keypoints_2d"], c["keypoints_2d"])
    with pytest.raises(ValueError, match="sigma"):
        perturb.add_noise(c, -0.1)


@pytest.mark.parametrize("pattern,joints", [("2 legs", {1, 2, 3, 4, 5, 6}), ("2 arms", {11, 12, 13, 14, 15, 16}),
                                            ("left side", set(skeleton.LEFT_JOINTS)),
                                            ("right side", set(skeleton.RIGHT_JOINTS))])
def test_body_part_occlusions_hide_exactly_those_joints(pattern, joints):
    c = chunks()
    out = perturb.occlude(c, pattern, np.arange(6))
    hidden = out["keypoints_2d"][..., 2] == 0
    assert {j for j in range(17) if hidden[:, :, j].all()} == joints
    assert not hidden[1:, :, sorted(set(range(17)) - joints)].any()


@pytest.mark.parametrize("pattern,count", [("1 joint", 1), ("2 joints", 2)])
def test_random_occlusions_are_per_sequence_and_never_the_root(pattern, count):
    c = chunks(n=8)
    ids = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])    # two chunks per sequence
    out = perturb.occlude(c, pattern, ids, seed=5)
    hidden = out["keypoints_2d"][1:, 0, :, 2] == 0                # chunk 0 has a detector miss
    assert (hidden.sum(-1) == count).all() and not hidden[:, skeleton.ROOT].any()
    full = out["keypoints_2d"][:, :, :, 2] == 0
    for a, b in ((2, 3), (4, 5), (6, 7)):
        assert np.array_equal(full[a], full[b])                    # same occluder across a chunk border
    assert np.array_equal(perturb.occlude(c, pattern, ids, seed=5)["keypoints_2d"], out["keypoints_2d"])


def test_bad_occlusion_arguments_are_refused():
    c = chunks()
    with pytest.raises(ValueError, match="unknown occlusion"):
        perturb.occlude(c, "3 heads", np.arange(6))
    with pytest.raises(ValueError, match="one entry per chunk"):
        perturb.occlude(c, "2 legs", np.arange(5))
