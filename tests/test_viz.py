"""Pictures: rendered files exist, decode and show a skeleton (not a blank or constant image)."""
from __future__ import annotations

import warnings

import imageio.v3 as iio
import numpy as np
import pytest

from raypose import skeleton, viz


def _walk(t: int = 6) -> np.ndarray:
    """(T, 17, 3) camera-frame metres (y down) of a person swinging the arms."""
    base = np.array([[0, 0, 0], [-.13, 0, 0], [-.14, .45, 0], [-.15, .9, 0], [.13, 0, 0],
                     [.14, .45, 0], [.15, .9, 0], [0, -.25, 0], [0, -.5, 0], [0, -.6, 0],
                     [0, -.72, 0], [.18, -.48, 0], [.3, -.22, 0], [.32, .02, 0], [-.18, -.48, 0],
                     [-.3, -.22, 0], [-.32, .02, 0]])
    out = np.repeat(base[None], t, 0)
    swing = 0.25 * np.sin(np.linspace(0, 2 * np.pi, t))
    out[:, [12, 13], 2] += swing[:, None]
    out[:, [15, 16], 2] -= swing[:, None]
    return out


def _colourful(img: np.ndarray) -> None:
    img = np.asarray(img)[..., :3]
    assert img.std() > 5
    colours = np.unique(img.reshape(-1, 3) // 32, axis=0)
    assert len(colours) >= 4
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    blue = (img[..., 2] > 120) & (img[..., 0] < 90)
    assert red.sum() > 20 and blue.sum() > 20  # right limbs red, left limbs blue


def test_render_gif(tmp_path):
    path = viz.render_sequence(_walk(5), tmp_path / "walk.gif", fps=10)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 5 and frames.shape[1] > 100
    _colourful(frames[0])
    assert np.abs(frames[0].astype(int) - frames[2].astype(int)).max() > 0  # it moves


def test_render_mp4_or_gif_fallback(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = viz.render_sequence(_walk(4), tmp_path / "walk.mp4", fps=10)
    if viz.has_mp4_writer():
        assert path.suffix == ".mp4"
    else:
        assert path.suffix == ".gif" and path.exists()
    frames = np.stack(list(iio.imiter(path))) if path.suffix == ".gif" else iio.imread(path, index=None)
    assert frames.shape[0] == 4
    _colourful(frames[-1])


def test_render_with_2d_overlay_on_frames(tmp_path):
    t, h, w = 4, 120, 160
    video = np.zeros((t, h, w, 3), np.uint8)
    video[..., 1] = np.linspace(40, 200, w, dtype=np.uint8)[None, None, :]  # green gradient "video"
    poses = _walk(t)
    kp = np.concatenate([poses[..., :2] * 80 + [w / 2, h / 2], np.ones((t, 17, 1))], -1)
    path = viz.render_sequence(poses, tmp_path / "overlay.gif", fps=5, overlay_video=video, keypoints_2d=kp)
    frames = np.stack(list(iio.imiter(path)))
    assert frames.shape[0] == t
    left = frames[0][:, : frames.shape[2] // 2]
    assert (left[..., 1] > 150).sum() > 100   # the video is there
    _colourful(left)                           # and the 2D skeleton on it
    # frame indices past the end of the video leave the 2D panel without a picture
    path2 = viz.render_sequence(poses, tmp_path / "late.gif", fps=5, overlay_video=video,
                                keypoints_2d=kp, frames=np.arange(2, 2 + t))
    assert len(list(iio.imiter(path2))) == t


def test_contact_sheet(tmp_path):
    path = viz.contact_sheet(_walk(20), tmp_path / "sheet.png", n=8)
    img = iio.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 600
    _colourful(img)


def test_plot_curves_one_panel_per_kind_and_runs_compared(tmp_path):
    def history(scale):
        return [{"epoch": e, "step": 10 * e, "loss": scale / (e + 1), "val_mpjpe": 200 * scale - 10 * e,
                 "lr": 1e-3 * 0.9 ** e, "samples_per_s": 4000.0 + e, "note": "x"} for e in range(10)]

    one = iio.imread(viz.plot_curves(history(1.0), tmp_path / "one.png"))
    assert one.shape[1] > 4 * 300                               # loss, validation, lr, samples/s
    runs = iio.imread(viz.plot_curves({"a": history(1.0), "b": history(0.5)}, tmp_path / "two.png"))
    colours = np.unique(runs[..., :3].reshape(-1, 3) // 32, axis=0)
    assert len(colours) >= len(np.unique(one[..., :3].reshape(-1, 3) // 32, axis=0))   # a second colour
    nan_val = [{**h, "val_mpjpe": float("nan")} for h in history(1.0)]       # a run without validation
    narrow = iio.imread(viz.plot_curves(nan_val, tmp_path / "noval.png"))
    assert narrow.shape[1] < one.shape[1]                                      # its empty panel left out
    with pytest.raises(ValueError):
        viz.plot_curves([], tmp_path / "none.png")


def test_plot_joint_errors(tmp_path):
    from raypose.skeleton import JOINT_NAMES

    img = iio.imread(viz.plot_joint_errors({n: 10.0 + i for i, n in enumerate(JOINT_NAMES)}, tmp_path / "j.png",
                                           title="per joint"))
    assert img.shape[0] > 200 and len(np.unique(img[..., :3].reshape(-1, 3) // 32, axis=0)) >= 3


def test_format_and_plot_table(tmp_path):
    rows = [{"model": "pstmo_s", "frames": 81, "MPJPE": 52.345, "P-MPJPE": 40.0},
            {"model": "mpm", "frames": 243, "MPJPE": 49.9, "P-MPJPE": None}]
    text = viz.format_table(rows)
    lines = text.splitlines()
    assert lines[0] == "| model   | frames | MPJPE | P-MPJPE |"
    assert lines[2] == "| pstmo_s |     81 |  52.3 |    40.0 |"
    assert lines[1].endswith("-:|") and len({len(l) for l in lines}) == 1
    img = iio.imread(viz.plot_table(rows, tmp_path / "table.png", title="eval"))
    assert img[..., :3].std() > 5


def test_draw_skeleton_3d_uses_every_bone():
    import matplotlib.pyplot as plt

    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    viz.draw_skeleton_3d(ax, _walk(1)[0])
    assert len(ax.lines) == skeleton.NUM_BONES
    plt.close(fig)
