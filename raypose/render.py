"""A numpy renderer of person crops from 3D mocap: shaded, depth-ordered capsules.

Why: the image-lifting model needs images whose pixels carry the depth cues 2D keypoints lack,
and no H36M frames are available here. Each bone is a capsule (radius in metres) seen through a
pinhole camera: its projected width shrinks with depth (foreshortening, perspective), its
pixels are Lambert-shaded from the surface normal and dimmed with depth (shading), and capsules
are drawn far → near (painter's order) with a per-pixel depth test, so a nearer limb occludes a
farther one (occlusion order). Backgrounds are random gradients + smooth noise + stripes.

Everything draws straight into the crop (the person box of the projected keypoints, as
:func:`raypose.data.images.person_box`), vectorised per capsule over its bounding rectangle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from raypose.cameras import Camera, virtual_cameras
from raypose.data.images import CROP_SIZE, person_box, to_crop
from raypose.skeleton import BONES, LEFT_JOINTS, NUM_JOINTS, RIGHT_JOINTS, ROOT

#: Capsule radius (metres) of the bone ending at each child joint.
BONE_RADIUS: dict[int, float] = {
    1: 0.085, 4: 0.085,          # pelvis → hips
    2: 0.075, 5: 0.075,          # thighs
    3: 0.055, 6: 0.055,          # shins
    7: 0.13, 8: 0.14,            # lower / upper torso
    9: 0.06, 10: 0.10,           # neck, head
    11: 0.06, 14: 0.06,          # thorax → shoulders
    12: 0.05, 15: 0.05,          # upper arms
    13: 0.04, 16: 0.04,          # forearms
}
#: Direction towards the light in camera coordinates (upper left, in front of the person).
LIGHT = np.array([-0.45, -0.6, -0.66]) / np.linalg.norm([-0.45, -0.6, -0.66])


def body_palette(rng: np.random.Generator) -> np.ndarray:
    """(17, 3) float colour per bone child: torso/head, left side, right side differ."""
    base = rng.uniform(0.25, 0.95, size=(3, 3))
    colours = np.tile(base[0], (NUM_JOINTS, 1))
    colours[list(LEFT_JOINTS)] = base[1]
    colours[list(RIGHT_JOINTS)] = base[2]
    colours[[9, 10]] = rng.uniform(0.55, 0.95) * np.array([1.0, 0.8, 0.65])  # skin
    return colours


def random_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: a random linear gradient + smooth noise + faint stripes."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    img = c0 + ramp[..., None] * (c1 - c0)
    cells = int(rng.integers(3, 9))
    coarse = rng.normal(0, 0.12, size=(cells + 1, cells + 1, 3))
    gy, gx = ys / height * cells, xs / width * cells
    iy, ix = np.minimum(gy.astype(int), cells - 1), np.minimum(gx.astype(int), cells - 1)
    fy, fx = (gy - iy)[..., None], (gx - ix)[..., None]
    img += (coarse[iy, ix] * (1 - fx) * (1 - fy) + coarse[iy, ix + 1] * fx * (1 - fy)
            + coarse[iy + 1, ix] * (1 - fx) * fy + coarse[iy + 1, ix + 1] * fx * fy)
    if rng.random() < 0.5:
        period = rng.uniform(6, 30)
        img += 0.06 * np.sign(np.sin((xs * np.cos(angle) - ys * np.sin(angle)) / period))[..., None]
    img += rng.normal(0, 0.02, size=img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def draw_capsule(rgb: np.ndarray, zbuf: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
                 za: float, zb: float, radius_m: float, colour: np.ndarray, z_ref: float,
                 depth_falloff: float = 0.35) -> None:
    """Draw one capsule into ``rgb``/``zbuf`` (in place) with a per-pixel depth test.

    a, b: end points in crop pixels; ra, rb: their projected radii (pixels); za, zb: their
    camera depths (metres); radius_m: the capsule's radius in metres. Surface depth is the axis
    depth minus the bulge of the tube; the normal gives Lambert shading; depth beyond ``z_ref``
    dims the colour by ``depth_falloff`` per metre.
    """
    H, W = zbuf.shape
    r_max = max(ra, rb)
    x0, x1 = int(max(0, np.floor(min(a[0], b[0]) - r_max))), int(min(W, np.ceil(max(a[0], b[0]) + r_max) + 1))
    y0, y1 = int(max(0, np.floor(min(a[1], b[1]) - r_max))), int(min(H, np.ceil(max(a[1], b[1]) + r_max) + 1))
    if x0 >= x1 or y0 >= y1:
        return
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    ab = b - a
    t = np.clip(((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    dx, dy = px - (a[0] + t * ab[0]), py - (a[1] + t * ab[1])
    r = ra + t * (rb - ra)
    rho2 = (dx * dx + dy * dy) / np.maximum(r * r, 1e-9)
    inside = rho2 < 1.0
    if not inside.any():
        return
    nz = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    depth = za + t * (zb - za) - radius_m * nz
    win = inside & (depth <= zbuf[y0:y1, x0:x1])
    if not win.any():
        return
    n = np.stack([dx / np.maximum(r, 1e-9), dy / np.maximum(r, 1e-9), -nz], -1)
    lambert = np.clip(n @ LIGHT, 0.0, 1.0)
    fog = np.clip(1.0 - depth_falloff * (depth - z_ref), 0.25, 1.3)
    shade = ((0.3 + 0.7 * lambert) * fog)[..., None] * colour
    region = rgb[y0:y1, x0:x1]
    region[win] = np.clip(shade[win], 0, 1)
    zbuf[y0:y1, x0:x1][win] = depth[win]


def render_person(joints_cam: np.ndarray, camera: Camera, rng: np.random.Generator,
                  out_size: tuple[int, int] = CROP_SIZE, padding: float = 1.25,
                  box: Optional[np.ndarray] = None, palette: Optional[np.ndarray] = None,
                  background: Optional[np.ndarray] = None, radius_scale: float = 1.0
                  ) -> dict[str, np.ndarray]:
    """Render one person crop from camera-frame joints (17, 3) metres (absolute, z > 0).

    Returns ``image`` (H, W, 3) uint8, ``depth`` (H, W) metres (inf = background),
    ``keypoints_2d`` (17, 2) image pixels, ``keypoints_crop`` (17, 2) crop pixels, ``box`` (4,).
    """
    h, w = out_size
    joints_cam = np.asarray(joints_cam, np.float64)
    kp = camera.project(joints_cam, distort=False).astype(np.float64)
    box = person_box(kp, out_size, padding) if box is None else np.asarray(box, np.float64)
    kp_crop = to_crop(kp, box, out_size).astype(np.float64)
    scale = w / box[2]  # crop pixels per image pixel
    rgb = random_background(h, w, rng) if background is None else background.astype(np.float32).copy()
    zbuf = np.full((h, w), np.inf, np.float32)
    palette = body_palette(rng) if palette is None else palette
    z = joints_cam[:, 2]
    # painter's order: farthest capsule first (the depth test settles intersections)
    for child, parent in sorted(BONES, key=lambda cp: -(z[cp[0]] + z[cp[1]])):
        rad = BONE_RADIUS[child] * radius_scale
        ra, rb = (camera.fx * rad / max(z[j], 1e-3) * scale for j in (parent, child))
        draw_capsule(rgb, zbuf, kp_crop[parent], kp_crop[child], ra, rb, z[parent], z[child], rad,
                     palette[child], z_ref=float(z[ROOT]))
    return {"image": np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), "depth": zbuf,
            "keypoints_2d": kp.astype(np.float32), "keypoints_crop": kp_crop.astype(np.float32),
            "box": box.astype(np.float32)}


def render_mocap(positions_world: np.ndarray, cameras: Sequence[Camera], rng: np.random.Generator,
                 frames: Optional[Sequence[int]] = None, out_size: tuple[int, int] = CROP_SIZE,
                 padding: float = 1.25) -> dict[str, np.ndarray]:
    """Render frames of a world-frame sequence (T, 17, 3) through each camera.

    One palette per (sequence, camera) like one performer's clothes, a fresh background per
    image. Returns stacked ``image`` (N, H, W, 3) uint8, ``keypoints_2d`` (N, 17, 3) pixels +
    confidence 1, ``keypoints_crop`` (N, 17, 2), ``joints_3d`` (N, 17, 3) root-relative camera
    metres, ``camera`` (N, 23), ``box`` (N, 4).
    """
    frames = range(len(positions_world)) if frames is None else frames
    out: dict[str, list] = {k: [] for k in ("image", "keypoints_2d", "keypoints_crop", "joints_3d", "camera", "box")}
    for cam in cameras:
        palette = body_palette(rng)
        cam_pos = cam.world_to_camera(positions_world).astype(np.float64)
        for t in frames:
            r = render_person(cam_pos[t], cam, rng, out_size, padding, palette=palette)
            out["image"].append(r["image"])
            out["keypoints_2d"].append(np.concatenate([r["keypoints_2d"], np.ones((NUM_JOINTS, 1), np.float32)], -1))
            out["keypoints_crop"].append(r["keypoints_crop"])
            out["joints_3d"].append((cam_pos[t] - cam_pos[t, ROOT]).astype(np.float32))
            out["camera"].append(cam.to_array())
            out["box"].append(r["box"])
    return {k: np.stack(v) for k, v in out.items()}


def render_records(records: Sequence[Any], rng: np.random.Generator, num_cameras: int = 2, frame_step: int = 1,
                   out_size: tuple[int, int] = CROP_SIZE, max_frames: int = 0) -> dict[str, np.ndarray]:
    """Render world-frame 3D :class:`~raypose.data.record.SequenceRecord` s through virtual
    cameras around each one's mean pelvis (as :func:`raypose.data.sources.views` projects them).
    ``max_frames`` > 0 caps the frames taken per record (evenly spread)."""
    parts = []
    for rec in records:
        pos = rec.positions_3d
        frames = np.arange(0, len(pos), frame_step)
        if max_frames and len(frames) > max_frames:
            frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
        cams = virtual_cameras(pos[:, ROOT].mean(0), num_cameras, rng)
        part = render_mocap(pos, cams, rng, frames, out_size)
        part["subject"] = np.array([rec.subject] * len(part["image"]))
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def export_folder(rendered: dict[str, np.ndarray], out_dir: str | Path, subject: str = "") -> Path:
    """Write rendered images as PNG frames + ``labels.npz`` in the layout
    :func:`raypose.data.images.read_image_labels` reads, so the renderer doubles as a source
    for the image-folder reader. The images are the frames: their 2D labels are the rendered
    crop coordinates (render with a large ``padding`` to leave room for the reader's crop).
    Returns the labels path."""
    import imageio.v3 as iio

    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(rendered["image"]):
        name = f"frames/{i:06d}.png"
        iio.imwrite(out_dir / name, img)
        names.append(name)
    labels = out_dir / "labels.npz"
    np.savez(labels, frames=np.array(names), keypoints_2d=rendered["keypoints_crop"],
             joints_3d=rendered["joints_3d"], subject=np.array(subject))
    return labels
