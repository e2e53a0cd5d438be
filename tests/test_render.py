"""The capsule renderer: non-trivial images, correct occlusion order, foreshortening."""
from __future__ import annotations

import numpy as np

from raypose.cameras import Camera
from raypose.render import BONE_RADIUS, render_person
from raypose.skeleton import BONES

CAM = Camera("c", 1000, 1000, 1000.0, 1000.0, 500.0, 500.0)


def _standing(z: float = 5.0) -> np.ndarray:
    """A T-ish pose facing the camera, camera frame (y down)."""
    j = np.array([[0, 0, 0], [-.1, 0, 0], [-.1, .45, 0], [-.1, .9, 0], [.1, 0, 0], [.1, .45, 0], [.1, .9, 0],
                  [0, -.25, 0], [0, -.5, 0], [0, -.6, 0], [0, -.75, 0], [.18, -.5, 0], [.45, -.5, 0],
                  [.7, -.5, 0], [-.18, -.5, 0], [-.45, -.5, 0], [-.7, -.5, 0]], float)
    return j + [0, 0, z]


def _background(h=128, w=96):
    return np.zeros((h, w, 3), np.float32)


def test_render_is_non_trivial():
    rng = np.random.default_rng(0)
    out = render_person(_standing(), CAM, rng, (128, 96))
    img, depth = out["image"], out["depth"]
    assert img.shape == (128, 96, 3) and img.dtype == np.uint8
    body = np.isfinite(depth)
    assert 0.1 < body.mean() < 0.8
    assert img[body].std() > 5 and img.std() > 10  # shading varies on the body
    # keypoints fall on the body
    kp = np.round(out["keypoints_crop"]).astype(int)
    assert body[kp[:, 1].clip(0, 127), kp[:, 0].clip(0, 95)].mean() > 0.9


def test_near_limb_occludes_far_limb():
    j = _standing()
    j[13] = [-0.2, -0.5, 4.6]   # left wrist swung across, in front of the body
    j[12] = [0.1, -0.5, 4.8]
    rng = np.random.default_rng(0)
    out = render_person(j, CAM, rng, (128, 96), background=_background())
    pal = np.tile([0.5, 0.5, 0.5], (17, 1))
    pal[13] = [1.0, 0.0, 0.0]  # forearm pure red
    out = render_person(j, CAM, rng, (128, 96), box=out["box"], palette=pal, background=_background())
    # where the forearm crosses the torso (x of the spine), it is drawn on top
    kp = out["keypoints_crop"]
    p = ((kp[12] + kp[13]) / 2).round().astype(int)
    px = out["image"][p[1], p[0]]
    assert px[0] > 0 and px[1] == 0 and px[2] == 0
    assert out["depth"][p[1], p[0]] < 4.8
    # pushed behind the body, the same forearm is hidden there
    j[13, 2], j[12, 2] = 5.5, 5.3
    out = render_person(j, CAM, rng, (128, 96), box=out["box"], palette=pal, background=_background())
    kp = out["keypoints_crop"]
    mid = ((kp[7] + kp[8]) / 2).round().astype(int)  # on the torso, the arm passes behind it
    px = out["image"][mid[1], mid[0]]
    assert not (px[0] > 0 and px[1] == 0 and px[2] == 0)


def test_nearer_limbs_are_drawn_thicker():
    j = _standing()
    j[[14, 15, 16], 2] -= [0.0, 0.4, 0.8]   # right arm reaches towards the camera
    rng = np.random.default_rng(1)
    out = render_person(j, CAM, rng, (128, 96), background=_background())
    body = np.isfinite(out["depth"])
    kp = out["keypoints_crop"]

    def width_at(a, b):  # body pixels across the bone's midpoint, vertically
        x = int(round((kp[a, 0] + kp[b, 0]) / 2))
        col = body[:, x]
        y = int(round((kp[a, 1] + kp[b, 1]) / 2))
        lo, hi = y, y
        while lo > 0 and col[lo - 1]:
            lo -= 1
        while hi < len(col) - 1 and col[hi + 1]:
            hi += 1
        return hi - lo + 1
    assert width_at(15, 16) > width_at(12, 13)
    assert len(BONE_RADIUS) == len(BONES)
