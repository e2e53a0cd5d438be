"""Person crops from image folders paired with 2D/3D labels, streamed by Ray Data.

Layout read by :func:`read_image_labels` — one ``labels.npz`` beside (or above) the frames:
``frames`` (T,) str paths relative to the npz's folder (``.png``/``.jpg``/``.npy`` — e.g. H36M
video frames extracted to images, one folder per (subject, action, camera)); ``keypoints_2d``
(T, 17, 2|3) pixels of those frames (+ confidence); optional ``joints_3d`` (T, 17, 3) camera
metres (made root-relative); optional ``camera`` (23,) or (T, 23) (:meth:`Camera.to_array`;
its width/height normalise the 2D, else the image size does); optional ``subject``/``action``.

A person box is the 2D keypoints' bounding box, padded and widened to the crop's aspect
(:func:`person_box`); crops are bilinear resamples of that box (:func:`crop_image`) and the
keypoints follow the same map (:func:`to_crop`). Pixel convention: continuous coordinates,
pixel index i covers [i, i + 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from raypose.cameras import CAMERA_ARRAY_SIZE, normalize_screen
from raypose.errors import RayposeDataError
from raypose.skeleton import NUM_JOINTS, ROOT

#: Default crop (height, width), as the paper's HRNet input.
CROP_SIZE: tuple[int, int] = (256, 192)


def person_box(keypoints: np.ndarray, out_size: tuple[int, int] = CROP_SIZE, padding: float = 1.25,
               min_size: float = 8.0) -> np.ndarray:
    """(…, J, ≥2) pixels → (…, 4) boxes (x0, y0, w, h) with w / h = out_w / out_h.

    The keypoints' bounding box, centred, scaled by ``padding`` and widened along the short
    side to the crop's aspect, so the crop is not distorted.
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    lo, hi = xy.min(-2), xy.max(-2)
    centre, size = (lo + hi) / 2, np.maximum(hi - lo, min_size) * padding
    aspect = out_size[1] / out_size[0]
    w = np.maximum(size[..., 0], size[..., 1] * aspect)
    h = w / aspect
    return np.stack([centre[..., 0] - w / 2, centre[..., 1] - h / 2, w, h], -1)


def to_crop(points: np.ndarray, box: np.ndarray, out_size: tuple[int, int] = CROP_SIZE) -> np.ndarray:
    """Image pixels (…, J, 2) → crop pixels for ``box`` (…, 4)."""
    box = np.asarray(box, dtype=np.float64)
    scale = out_size[1] / box[..., 2]
    return ((np.asarray(points, np.float64)[..., :2] - box[..., None, :2]) * scale[..., None, None]).astype(np.float32)


def crop_image(image: np.ndarray, box: np.ndarray, out_size: tuple[int, int] = CROP_SIZE,
               fill: int = 0) -> np.ndarray:
    """Bilinear crop of ``box`` from an (H, W, 3) image into ``out_size``; outside = ``fill``."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    h_out, w_out = out_size
    x0, y0, bw, _ = (float(v) for v in box)
    s = bw / w_out  # image pixels per crop pixel
    xs = x0 + (np.arange(w_out) + 0.5) * s - 0.5  # index-space source coordinates
    ys = y0 + (np.arange(h_out) + 0.5) * s - 0.5
    xi, yi = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - xi)[None, :, None], (ys - yi)[:, None, None]
    padded = np.pad(image.astype(np.float32), ((1, 1), (1, 1), (0, 0)), constant_values=fill)
    H, W = image.shape[:2]
    cx0, cx1 = np.clip(xi + 1, 0, W + 1), np.clip(xi + 2, 0, W + 1)
    cy0, cy1 = np.clip(yi + 1, 0, H + 1), np.clip(yi + 2, 0, H + 1)
    top = padded[cy0][:, cx0] * (1 - fx) + padded[cy0][:, cx1] * fx
    bottom = padded[cy1][:, cx0] * (1 - fx) + padded[cy1][:, cx1] * fx
    out = top * (1 - fy) + bottom * fy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """An image file (or a saved ``.npy`` array) → (H, W, 3) uint8."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            img = np.load(path)
        else:
            import imageio.v3 as iio

            img = iio.imread(path)
    except Exception as exc:
        raise RayposeDataError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise RayposeDataError(path, f"image has shape {img.shape}, expected (H, W, 3)")
    return img[..., :3].astype(np.uint8, copy=False)


def _str(value: Any) -> str:
    return str(np.asarray(value).reshape(-1)[0]) if np.asarray(value).size else ""


def read_image_labels(labels_path: str | Path) -> list[dict[str, Any]]:
    """One item per frame of ``labels.npz``: image path, 2D (17, 3) pixels + confidence,
    root-relative 3D (17, 3) or zeros with ``has_3d`` False, camera (23,) or zeros."""
    labels_path = Path(labels_path)
    try:
        data = dict(np.load(labels_path, allow_pickle=False))
    except Exception as exc:
        raise RayposeDataError(labels_path, f"cannot read labels ({type(exc).__name__}: {exc})") from exc
    for key in ("frames", "keypoints_2d"):
        if key not in data:
            raise RayposeDataError(labels_path, f"labels have no {key!r} array")
    frames = [str(f) for f in np.asarray(data["frames"]).reshape(-1)]
    kp = np.asarray(data["keypoints_2d"], np.float32)
    T = len(frames)
    if kp.shape[:2] != (T, NUM_JOINTS) or kp.shape[-1] not in (2, 3):
        raise RayposeDataError(labels_path, f"keypoints_2d has shape {kp.shape}, expected ({T}, 17, 2|3)")
    if kp.shape[-1] == 2:
        kp = np.concatenate([kp, np.ones(kp.shape[:-1] + (1,), np.float32)], -1)
    j3d = data.get("joints_3d")
    if j3d is not None:
        j3d = np.asarray(j3d, np.float32)
        if j3d.shape != (T, NUM_JOINTS, 3):
            raise RayposeDataError(labels_path, f"joints_3d has shape {j3d.shape}, expected ({T}, 17, 3)")
        j3d = j3d - j3d[:, ROOT:ROOT + 1]
    cam = data.get("camera")
    if cam is not None:
        cam = np.asarray(cam, np.float64)
        cam = np.broadcast_to(cam, (T, CAMERA_ARRAY_SIZE)) if cam.shape in ((CAMERA_ARRAY_SIZE,), (T, CAMERA_ARRAY_SIZE)) else None
        if cam is None:
            raise RayposeDataError(labels_path, f"camera must be (23,) or ({T}, 23)")
    root = labels_path.parent
    items = []
    for t, name in enumerate(frames):
        path = root / name
        if not path.is_file():
            raise RayposeDataError(labels_path, f"frame {t}: image {name!r} does not exist")
        items.append({
            "path": str(path), "subject": _str(data.get("subject", "")), "action": _str(data.get("action", "")),
            "keypoints_2d": kp[t], "has_3d": j3d is not None,
            "joints_3d": j3d[t] if j3d is not None else np.zeros((NUM_JOINTS, 3), np.float32),
            "camera": np.array(cam[t]) if cam is not None else np.zeros(CAMERA_ARRAY_SIZE, np.float64),
        })
    return items


def crop_batch(batch: dict[str, np.ndarray], out_size: Sequence[int] = CROP_SIZE, padding: float = 1.25
               ) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: load each row's image, crop its person box.

    Adds ``image`` (B, H, W, 3) uint8, ``keypoints_crop`` (B, 17, 2), ``box`` (B, 4), and
    ``image_size`` (B, 2) (w, h of the source frame); drops ``path``.
    """
    out_size = (int(out_size[0]), int(out_size[1]))
    kp = np.asarray(batch["keypoints_2d"], np.float32)
    boxes = person_box(kp, out_size, padding)
    images, sizes = [], []
    for path, box in zip(batch["path"], boxes):
        img = load_image(str(path))
        sizes.append(img.shape[1::-1])
        images.append(crop_image(img, box, out_size))
    out = {k: v for k, v in batch.items() if k != "path"}
    out.update(image=np.stack(images), keypoints_crop=to_crop(kp, boxes, out_size),
               box=boxes.astype(np.float32), image_size=np.asarray(sizes, np.float32))
    return out


def image_dataset(items: list[dict[str, Any]], out_size: Sequence[int] = CROP_SIZE, padding: float = 1.25,
                  batch_size: int = 32) -> Any:
    """A Ray Dataset of crops: ``from_items`` (paths + labels) → ``map_batches(crop_batch)``,
    so decoding and cropping run in parallel Ray tasks as the trainer pulls batches."""
    import ray

    return ray.data.from_items(items).map_batches(
        crop_batch, batch_size=batch_size, batch_format="numpy",
        fn_kwargs={"out_size": tuple(out_size), "padding": padding})


def to_torch_batch(batch: dict[str, np.ndarray], device: Any = "cpu") -> dict[str, Any]:
    """Numpy crop batch → the image model's inputs.

    ``image`` (B, 3, H, W) float (ImageNet-normalised), ``pose_2d`` (B, 1, 17, 2) normalised
    screen coordinates (camera size, else image size), ``pose_3d`` (B, 1, 17, 3),
    ``keypoints_crop`` (B, 17, 2), ``has_3d`` (B,).
    """
    import torch

    from raypose.imaging import normalize_image

    kp = np.asarray(batch["keypoints_2d"], np.float32)
    cam = np.asarray(batch.get("camera", np.zeros((len(kp), CAMERA_ARRAY_SIZE))), np.float64)
    size = np.where(cam[:, :1] > 0, cam[:, :2], np.asarray(batch["image_size"], np.float64))
    xy = np.stack([normalize_screen(k[:, :2], w, h) for k, (w, h) in zip(kp, size)])
    t = lambda a, dt=torch.float32: torch.as_tensor(np.array(a), dtype=dt, device=device)  # noqa: E731
    return {
        "image": normalize_image(t(batch["image"], torch.uint8)),
        "pose_2d": t(xy).unsqueeze(1),
        "pose_3d": t(batch["joints_3d"]).unsqueeze(1),
        "keypoints_crop": t(batch["keypoints_crop"]),
        "has_3d": t(batch["has_3d"], torch.bool),
    }


def iter_image_batches(dataset: Any, batch_size: int, device: Any = "cpu", drop_last: bool = False,
                       local_shuffle_buffer_size: Optional[int] = None) -> Iterator[dict[str, Any]]:
    """Device batches from a Ray Dataset of crops (:func:`image_dataset`)."""
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=drop_last,
                                      local_shuffle_buffer_size=local_shuffle_buffer_size):
        yield to_torch_batch(batch, device)
