"""Projection, normalisation, H36M calibration conventions and virtual cameras."""
from __future__ import annotations

import numpy as np
import pytest

from raypose import cameras
from raypose.cameras import Camera


def _camera(dist=(0, 0, 0, 0, 0)) -> Camera:
    return Camera("c", 1000, 1002, fx=1145.0, fy=1143.0, cx=512.5, cy=515.5, dist=np.array(dist))


def test_optical_axis_projects_to_principal_point():
    cam = _camera(dist=(-0.2, 0.25, -0.003, -0.001, -0.0014))
    for z in (0.5, 4.0, 9.0):
        np.testing.assert_allclose(cam.project(np.array([0.0, 0.0, z])), [512.5, 515.5], atol=1e-4)


def test_project_unproject_roundtrip_without_distortion():
    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(-1.5, 1.5, (50, 2)), rng.uniform(2, 8, 50)]
    cam = _camera()
    uv = cam.project(X, distort=False)
    # hand-computed pinhole: u = fx x/z + cx
    np.testing.assert_allclose(uv[:, 0], 1145.0 * X[:, 0] / X[:, 2] + 512.5, rtol=1e-6)
    np.testing.assert_allclose(cam.unproject(uv, X[:, 2], distort=False), X, rtol=1e-5, atol=1e-5)


def test_unproject_inverts_h36m_distortion():
    cam = cameras.h36m_cameras("S9")[2]
    rng = np.random.default_rng(1)
    X = np.c_[rng.uniform(-1.5, 1.5, (50, 2)), rng.uniform(3, 7, 50)]
    uv = cam.project(X)
    np.testing.assert_allclose(cam.unproject(uv, X[:, 2]), X, atol=1e-5)


def test_distortion_matches_hand_computed_value():
    k1, k2, k3, p1, p2 = 0.1, 0.02, 0.003, 0.01, -0.02
    cam = Camera("c", 100, 100, fx=100.0, fy=200.0, cx=50.0, cy=40.0, dist=np.array([k1, k2, k3, p1, p2]))
    x, y = 0.2, 0.4  # point (0.6, 1.2, 3.0)
    r2 = x * x + y * y  # 0.2
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3  # 1.020824
    tan = p1 * x + p2 * y  # -0.006
    xd = x * (radial + tan) + p1 * r2  # 0.2 · 1.014824 + 0.002 = 0.2049648
    yd = y * (radial + tan) + p2 * r2  # 0.4 · 1.014824 − 0.004 = 0.4019296
    assert xd == pytest.approx(0.2049648) and yd == pytest.approx(0.4019296)
    np.testing.assert_allclose(cam.project(np.array([0.6, 1.2, 3.0])),
                               [100 * xd + 50, 200 * yd + 40], rtol=1e-6)
    np.testing.assert_allclose(cam.project(np.array([0.6, 1.2, 3.0]), distort=False), [70.0, 120.0], rtol=1e-6)


def test_normalize_screen_and_image_coordinates_are_inverses():
    rng = np.random.default_rng(2)
    px = rng.uniform(0, 1000, (10, 17, 2)).astype(np.float32)
    n = cameras.normalize_screen(px, 1000, 1002)
    assert n.dtype == np.float32
    np.testing.assert_allclose(cameras.image_coordinates(n, 1000, 1002), px, rtol=1e-5, atol=1e-3)
    # hand values: x in [0, w] → [-1, 1]; the centre maps to (0, 0)
    np.testing.assert_allclose(cameras.normalize_screen(np.array([[0, 0], [1000, 1002], [500, 501]]), 1000, 1002),
                               [[-1, -1.002], [1, 1.002], [0, 0]], atol=1e-12)


def test_to_array_from_array_roundtrip():
    cam = cameras.h36m_cameras("S11")[3]
    a = cam.to_array()
    assert a.shape == (cameras.CAMERA_ARRAY_SIZE,)
    back = Camera.from_array(a, name=cam.name)
    np.testing.assert_array_equal(back.to_array(), a)
    assert (back.width, back.height) == (1000, 1002)
    np.testing.assert_array_equal(back.R, cam.R)
    np.testing.assert_array_equal(back.dist, cam.dist)
    with pytest.raises(ValueError):
        Camera.from_array(a[:-1])


def _qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate v by unit quaternion q (w, x, y, z) as q·v·q* (Hamilton product, written out)."""
    def mul(a, b):
        w1, x1, y1, z1 = a
        w2, x2, y2, z2 = b
        return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                         w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])
    conj = q * np.array([1, -1, -1, -1])
    return mul(mul(q, np.r_[0.0, v]), conj)[1:]


def test_h36m_world_to_camera_matches_quaternion_convention():
    # S1, camera 54138969 as published: camera→world orientation and camera centre in mm.
    q = np.array([0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088])
    centre = np.array([1841.1070556640625, 4955.28466796875, 1563.4454345703125]) / 1000
    cam = cameras.h36m_cameras("S1")[0]
    assert cam.name == "54138969"
    X = np.array([0.1, -0.2, 0.9])  # a pelvis-height point near the capture-volume centre
    # world→camera is rot(q⁻¹, X − centre); q⁻¹ = conjugate for a unit quaternion
    expected = _qrot(q * np.array([1, -1, -1, -1]) / np.linalg.norm(q), X - centre)
    np.testing.assert_allclose(cam.world_to_camera(X), expected, atol=1e-6)
    np.testing.assert_allclose(cam.camera_to_world(expected), X, atol=1e-6)
    np.testing.assert_allclose(cam.world_to_camera(centre), 0.0, atol=1e-6)
    assert np.linalg.det(cam.R) == pytest.approx(1.0)


@pytest.mark.parametrize("subject", ["S1", "S5", "S6", "S7", "S8", "S9", "S11"])
def test_h36m_cameras_see_the_subject_upright(subject):
    cams = cameras.h36m_cameras(subject)
    assert [c.name for c in cams] == list(cameras.H36M_CAMERA_IDS)
    for cam in cams:
        pelvis, head = cam.world_to_camera(np.array([[0.0, 0.0, 0.9], [0.0, 0.0, 1.7]]))
        assert 3.0 < pelvis[2] < 7.0  # in front, a studio's distance away
        assert head[1] < pelvis[1]  # world up is camera −y (y points down)
        u, v = cam.project(pelvis)
        assert 0 < u < cam.width and 0 < v < cam.height


def test_h36m_intrinsics_values():
    cam = cameras.h36m_cameras("S5")[1]
    assert cam.name == "55011271" and (cam.width, cam.height) == (1000, 1000)
    assert cam.fx == pytest.approx(1149.6756591796875) and cam.cy == pytest.approx(508.0649108886719)
    np.testing.assert_allclose(cam.dist, [-0.1942136287689209, 0.2404085397720337, 0.006819975562393665,
                                          -0.0016190266469493508, -0.0027408944442868233])
    with pytest.raises(ValueError, match="S2"):
        cameras.h36m_cameras("S2")


def test_quaternion_to_matrix_is_a_rotation():
    q = np.array([0.3, -0.5, 0.2, 0.7])
    R = cameras.quaternion_to_matrix(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    v = np.array([0.3, 1.0, -2.0])
    np.testing.assert_allclose(R @ v, _qrot(q / np.linalg.norm(q), v), atol=1e-12)


def test_virtual_cameras_look_at_the_subject():
    rng = np.random.default_rng(3)
    centre = np.array([1.0, -2.0, 0.9])
    cams = cameras.virtual_cameras(centre, 6, rng)
    assert len(cams) == 6
    positions = []
    for cam in cams:
        X = cam.world_to_camera(centre)
        assert X[2] > 3.9  # in front, at ≥ 4 m
        np.testing.assert_allclose(cam.project(X), [cam.cx, cam.cy], atol=1e-2)
        # a point 0.8 m above the centre is higher in the image (smaller v)
        assert cam.project(cam.world_to_camera(centre + [0, 0, 0.8]))[1] < cam.cy
        assert np.linalg.det(cam.R) == pytest.approx(1.0)
        positions.append(cam.camera_to_world(np.zeros(3)))
    az = np.sort(np.degrees(np.arctan2(*(np.array(positions) - centre)[:, 1::-1].T)) % 360)
    gaps = np.diff(np.r_[az, az[0] + 360])
    assert gaps.min() > 60 - 2 * 20 - 1e-6  # evenly spaced ring with ±20° jitter
    again = cameras.virtual_cameras(centre, 6, np.random.default_rng(3))
    np.testing.assert_array_equal(again[0].to_array(), cams[0].to_array())  # seeded


def test_unit_focal_root_projects_where_the_normalised_2d_shows_it():
    """root_to_screen_depth: the point a unit-focal camera sees where the normalised 2D shows the
    root (x/z' = u), for a camera whose principal point is off centre; its inverse restores
    metres; numpy and torch agree."""
    import torch

    cam = Camera("c", 1000, 1002, 1145.0, 1145.0, 530.0, 490.0)
    root = np.array([[0.4, -0.3, 4.0], [-1.2, 0.5, 7.5]])
    u = cameras.normalize_screen(cam.project(root, distort=False), 1000, 1002, (530.0, 490.0))
    arr = np.repeat(cam.to_array()[None], 2, 0)
    p = cameras.root_to_screen_depth(root, arr)
    np.testing.assert_allclose(p[:, :2] / p[:, 2:], u, atol=1e-5)
    np.testing.assert_allclose(p[:, :2], root[:, :2])                       # x, y stay metres
    np.testing.assert_allclose(cameras.screen_depth_to_root(p, arr), root)
    t = cameras.root_to_screen_depth(torch.tensor(root), torch.tensor(arr))
    np.testing.assert_allclose(t.numpy(), p)
    assert cameras.screen_focal(arr)[0] == pytest.approx(2 * 1145.0 / 1000)
