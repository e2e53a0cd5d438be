"""The virtual camera rig: the subject stays in frame, viewpoints and lenses follow the config."""
from __future__ import annotations

import numpy as np
import pytest

from raypose.config import RigConfig, protocol_rig
from raypose.data import rig as R
from raypose.data.sources.mocap import read_mocap
from raypose.data.sources.views import views
from raypose.errors import ConfigError


@pytest.fixture(scope="module")
def climb_b(shared_data):
    """The travelling performer (the pelvis moves 4 m), at 50 fps."""
    return read_mocap(shared_data / "mocap_h36m17.npz", 50.0, subjects=["climb_b"])[0]


def outside(view) -> float:
    kp, cam = view.keypoints_2d, view.camera
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < cam.width) & (kp[..., 1] >= 0) & (kp[..., 1] < cam.height)
    return float((~inside.all(-1)).mean())


@pytest.mark.parametrize("rig", [RigConfig(), protocol_rig()], ids=["training", "protocol"])
def test_the_travelling_subject_stays_in_frame(climb_b, rig):
    for seed in range(3):
        vs = views(climb_b, np.random.default_rng(seed), 8, rig)
        assert len(vs) == 8
        assert max(outside(v) for v in vs) < 0.01


def test_a_camera_aimed_at_the_mean_pelvis_loses_the_travelling_subject(climb_b):
    """The failure the rig fixes: static cameras at the protocol's distance lose climb_b."""
    static = RigConfig(**{**protocol_rig().__dict__, "follow": False})
    assert max(outside(v) for v in views(climb_b, np.random.default_rng(0), 4, static)) > 0.05


def test_following_cameras_translate_but_never_rotate(climb_b):
    """Root-relative 3D is that of one fixed orientation; the 2D is its projection per frame."""
    (rv,) = R.rig_views(climb_b.positions_3d, climb_b.fps, 1, RigConfig(), np.random.default_rng(1))
    world_rel = climb_b.positions_3d - climb_b.positions_3d[:, :1]
    np.testing.assert_allclose(rv.positions_cam - rv.positions_cam[:, :1], world_rel @ rv.camera.R.T, atol=1e-4)
    # the followed pelvis stays near the image's vertical mid-line, while a static camera's drifts
    pelvis_x = rv.camera.project(rv.positions_cam[:, 0], distort=False)[:, 0]
    assert np.ptp(pelvis_x) < 0.5 * rv.camera.width
    track = R.followed_track(climb_b.positions_3d[:, 0], climb_b.fps, RigConfig(follow_smoothing_s=0.0))
    np.testing.assert_allclose(track[:, :2], climb_b.positions_3d[:, 0, :2], atol=1e-6)


def test_protocol_rig_is_the_documented_one(climb_b):
    vs = views(climb_b, np.random.default_rng(0), 4, protocol_rig())
    for v, az in zip(vs, (0.6, 2.2, 3.8, 5.4)):
        c = v.camera
        assert (c.width, c.height, c.fx, c.cx, c.cy) == (1000, 1002, 1145.0, 512.0, 515.0)
        centre = -c.R.T @ c.t                       # camera position at frame 0
        offset = centre - climb_b.positions_3d[0, 0]
        assert np.hypot(*offset[:2]) == pytest.approx(5.0, abs=1e-6)
        assert np.arctan2(offset[1], offset[0]) % (2 * np.pi) == pytest.approx(az, abs=1e-6)
        assert centre[2] - R.floor_height(climb_b.positions_3d) == pytest.approx(1.2, abs=1e-6)
        assert abs(c.R[2, 2]) < 1e-9                # looking level: the optical axis is horizontal


def test_views_cover_the_configured_ranges(climb_b):
    rig = RigConfig(max_out_of_frame=1.0)           # no backing off: the draws themselves
    cams = [v.camera for s in range(12) for v in views(climb_b, np.random.default_rng(s), 4, rig)]
    sizes = {(c.width, c.height) for c in cams}
    assert sizes == {tuple(s) for s in rig.image_sizes}
    fov = np.rad2deg([2 * np.arctan(max(c.width, c.height) / 2 / c.fx) for c in cams])
    assert fov.min() >= rig.fov_deg[0] - 1e-6 and fov.max() <= rig.fov_deg[1] + 1e-6
    heights = np.array([(-c.R.T @ c.t)[2] for c in cams]) - R.floor_height(climb_b.positions_3d)
    assert heights.min() >= rig.height[0] - 1e-6 and heights.max() <= rig.height[1] + 1e-6
    assert heights.max() - heights.min() > 1.5       # floor level to overhead-ish
    pitch = np.rad2deg(np.arcsin([c.R[2, 2] for c in cams]))  # optical axis vs horizontal
    assert pitch.min() < -5 and pitch.max() > 5       # looking up and looking down both occur


def test_rig_config_errors():
    with pytest.raises(ConfigError, match="distance"):
        RigConfig(distance=[5.0, 3.0])
    with pytest.raises(ConfigError, match="image_sizes"):
        RigConfig(image_sizes=[[1000]])
