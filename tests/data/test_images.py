"""Person boxes, crops, the labels reader and the Ray Data crop stream."""
from __future__ import annotations

import numpy as np
import pytest

from raypose.data.images import (crop_image, image_dataset, iter_image_batches, person_box,
                                 read_image_labels, to_crop)
from raypose.errors import RayposeDataError


def test_person_box_has_crop_aspect_and_padding():
    kp = np.zeros((17, 2))
    kp[:, 0] = np.linspace(100, 140, 17)   # 40 wide
    kp[:, 1] = np.linspace(50, 250, 17)    # 200 tall
    x0, y0, w, h = person_box(kp, (256, 192), padding=1.25)
    assert np.isclose(w / h, 192 / 256) and np.isclose(h, 250)
    assert np.isclose(x0 + w / 2, 120) and np.isclose(y0 + h / 2, 150)


def test_crop_samples_the_right_pixels():
    H, W = 300, 400
    ys, xs = np.mgrid[0:H, 0:W]
    img = np.stack([xs % 256, ys % 256, (xs // 256) * 100], -1).astype(np.uint8)
    box = np.array([50.0, 20.0, 96.0, 128.0])  # scale 1: crop pixel (u, v) = image (50+u, 20+v)
    crop = crop_image(img, box, (128, 96))
    assert np.array_equal(crop[5, 7], img[25, 57]) and np.array_equal(crop[127, 95], img[147, 145])
    crop2 = crop_image(img, np.array([50.0, 20.0, 192.0, 256.0]), (128, 96))  # downscale ×2
    assert abs(int(crop2[10, 10, 0]) - (50 + 2 * 10 + 0.5)) <= 1
    kp = np.array([[[57.5, 25.5]]])
    assert np.allclose(to_crop(kp, box[None], (128, 96)), [[[7.5, 5.5]]])
    out = crop_image(img, np.array([-10.0, -10.0, 96.0, 128.0]), (128, 96))
    assert out[:9, :9].max() == 0 and np.array_equal(out[20, 20], img[10, 10])


def _folder(tmp_path, n=6):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    names, kps = [], []
    (tmp_path / "f").mkdir()
    for i in range(n):
        img = np.zeros((200, 160, 3), np.uint8)
        kp = np.stack([rng.uniform(50, 110, 17), rng.uniform(40, 160, 17)], -1)
        for x, y in kp.round().astype(int):
            img[y - 1:y + 2, x - 1:x + 2] = 255  # white dots on the keypoints
        iio.imwrite(tmp_path / "f" / f"{i}.png", img)
        names.append(f"f/{i}.png")
        kps.append(kp)
    j3d = rng.normal(size=(n, 17, 3)).astype(np.float32)
    np.savez(tmp_path / "labels.npz", frames=np.array(names), keypoints_2d=np.stack(kps).astype(np.float32),
             joints_3d=j3d, subject=np.array("s1"))
    return tmp_path / "labels.npz", j3d


def test_reader_validates(tmp_path):
    labels, _ = _folder(tmp_path, 2)
    items = read_image_labels(labels)
    assert len(items) == 2 and np.allclose(items[0]["joints_3d"][0], 0) and items[0]["subject"] == "s1"
    (tmp_path / "f" / "1.png").unlink()
    with pytest.raises(RayposeDataError, match="does not exist"):
        read_image_labels(labels)
    np.savez(tmp_path / "bad.npz", frames=np.array(["f/0.png"]), keypoints_2d=np.zeros((1, 5, 2)))
    with pytest.raises(RayposeDataError, match="keypoints_2d"):
        read_image_labels(tmp_path / "bad.npz")


def test_ray_stream_crops_person_boxes(tmp_path, ray_local):
    labels, j3d = _folder(tmp_path)
    ds = image_dataset(read_image_labels(labels), (128, 96), padding=1.25, batch_size=3)
    batches = list(iter_image_batches(ds, 3))
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (3, 3, 128, 96) and b["pose_2d"].shape == (3, 1, 17, 2)
    assert np.allclose(b["pose_3d"][0, 0].numpy(), j3d[0] - j3d[0, :1], atol=1e-6)
    raw = next(iter(ds.iter_batches(batch_size=3, batch_format="numpy")))
    for img, kp in zip(raw["image"], raw["keypoints_crop"]):
        assert (kp >= 0).all() and (kp[:, 0] < 96).all() and (kp[:, 1] < 128).all()
        x, y = kp.astype(int).T
        assert img[y, x].mean() > 60 and img.mean() < 40   # dots land on the keypoints


def test_the_data_package_imports_no_model():
    # raypose/data/ knows no model (DESIGN.md): image normalisation lives in raypose/imaging.py
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "raypose" / "data"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("raypose.models") for n in names), f"{path} imports {names}"
