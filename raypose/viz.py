"""Pictures: 3D skeleton sequences (with the 2D on the video), contact sheets, training curves,
evaluation tables. Matplotlib with the Agg backend only, so it runs headless on workers.

Poses are camera-frame metres (x right, y down, z forward); plots show them with "up" = −y and
depth = z so a person stands upright as the camera saw them. Left limbs blue, right red.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from raypose import skeleton  # noqa: E402

LEFT_COLOR = "#1f77b4"
RIGHT_COLOR = "#d62728"
CENTRE_COLOR = "#333333"


def _bone_color(child: int) -> str:
    if child in skeleton.LEFT_JOINTS:
        return LEFT_COLOR
    if child in skeleton.RIGHT_JOINTS:
        return RIGHT_COLOR
    return CENTRE_COLOR


def _plot_axes(pose: np.ndarray) -> np.ndarray:
    """Camera (x, y, z) → plot (x, depth z, up −y)."""
    return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], axis=-1)


def draw_skeleton_3d(ax, pose: np.ndarray, radius: Optional[float] = None, title: str = "",
                     linewidth: float = 2.5) -> None:
    """Draw one (17, 3) pose on a 3D axis, centred on the pelvis with equal axis scales."""
    p = _plot_axes(np.asarray(pose, dtype=np.float64))
    for child, parent in skeleton.BONES:
        seg = p[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=_bone_color(child), lw=linewidth)
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=8, color="k", depthshade=False)
    finite = p[np.isfinite(p).all(-1)]
    r = radius or max(0.5, float(np.abs(finite - p[skeleton.ROOT]).max()) if finite.size else 1.0)
    c = p[skeleton.ROOT] if np.isfinite(p[skeleton.ROOT]).all() else np.zeros(3)
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(c[2] - r, c[2] + r)
    try:
        ax.set_box_aspect((1, 1, 1))
    except AttributeError:
        pass
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    if title:
        ax.set_title(title, fontsize=9)


def draw_skeleton_2d(ax, keypoints: np.ndarray, conf_threshold: float = 0.0,
                     linewidth: float = 2.0) -> None:
    """Draw (17, 2|3) pixel keypoints on an image axis; joints at or below the threshold are skipped."""
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = np.isfinite(kp[:, :2]).all(-1)
    if kp.shape[-1] == 3:
        ok &= kp[:, 2] > conf_threshold
    for child, parent in skeleton.BONES:
        if ok[child] and ok[parent]:
            ax.plot(kp[[parent, child], 0], kp[[parent, child], 1], color=_bone_color(child), lw=linewidth)
    ax.scatter(kp[ok, 0], kp[ok, 1], s=10, color="yellow", edgecolors="k", linewidths=0.5, zorder=3)


def _figure_to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _sequence_radius(poses: np.ndarray) -> float:
    """One axis radius for the whole sequence so the skeleton does not breathe with the zoom."""
    p = poses - poses[:, skeleton.ROOT:skeleton.ROOT + 1]
    finite = np.abs(p[np.isfinite(p)])
    return max(0.5, float(np.percentile(finite, 99)) * 1.1 if finite.size else 1.0)


def _video_frames(video, frames: np.ndarray):
    """Yield the video frames at the (sorted) ``frames`` indices; None past the video's end."""
    if video is None:
        for _ in frames:
            yield None
        return
    if isinstance(video, np.ndarray) or isinstance(video, (list, tuple)):
        for f in frames:
            yield np.asarray(video[f]) if 0 <= f < len(video) else None
        return
    from raypose.data.detections import iter_video_frames

    wanted = iter(frames)
    nxt = next(wanted, None)
    for i, img in enumerate(iter_video_frames(video)):
        while nxt is not None and nxt < i:  # frames before the video starts
            yield None
            nxt = next(wanted, None)
        if nxt is None:
            return
        if i == nxt:
            yield img
            nxt = next(wanted, None)
            while nxt == i:
                yield img
                nxt = next(wanted, None)
    while nxt is not None:
        yield None
        nxt = next(wanted, None)


def render_frames(poses: np.ndarray, overlay_video=None, keypoints_2d: Optional[np.ndarray] = None,
                  frames: Optional[np.ndarray] = None, size: float = 4.5, dpi: int = 80,
                  elev: float = 10.0, azim: float = -70.0) -> Iterable[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of a (T, 17, 3) sequence: [2D on the video |] 3D skeleton.

    The 2D panel takes the video's aspect ratio at ``size`` inches high; the 3D panel is square.
    """
    poses = np.asarray(poses, dtype=np.float64)
    t = poses.shape[0]
    frames = np.arange(t) if frames is None else np.asarray(frames)
    with_2d = overlay_video is not None or keypoints_2d is not None
    radius = _sequence_radius(poses)
    fig = None
    try:
        for i, img in zip(range(t), _video_frames(overlay_video, frames)):
            if fig is None:
                aspect = img.shape[1] / img.shape[0] if img is not None else 1.0
                ratios = [aspect, 1.0] if with_2d else [1.0]
                fig = plt.figure(figsize=(size * sum(ratios), size), dpi=dpi)
                grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios, left=0.01, right=0.99,
                                        bottom=0.02, top=0.93, wspace=0.02)
            fig.clf()
            if with_2d:
                ax2 = fig.add_subplot(grid[0, 0])
                if img is not None:
                    ax2.imshow(img)
                if keypoints_2d is not None:
                    lw = 2.0 if img is None else max(1.5, 2.5 * img.shape[1] / 1000 * 4.5 / size)
                    draw_skeleton_2d(ax2, keypoints_2d[i], linewidth=lw)
                    if img is None:
                        _fit_2d(ax2, keypoints_2d)
                ax2.set_axis_off()
                ax2.set_title(f"2D, frame {int(frames[i])}", fontsize=9)
            ax3 = fig.add_subplot(grid[0, -1], projection="3d")
            ax3.view_init(elev=elev, azim=azim)
            draw_skeleton_3d(ax3, poses[i], radius=radius, title=f"3D, frame {int(frames[i])}")
            yield _figure_to_rgb(fig)
    finally:
        if fig is not None:
            plt.close(fig)


def _fit_2d(ax, keypoints_2d: np.ndarray) -> None:
    """Fixed 2D limits over the whole sequence (y down, as in the image)."""
    xy = keypoints_2d[..., :2][keypoints_2d[..., 2] > 0] if keypoints_2d.shape[-1] == 3 else keypoints_2d
    xy = xy[np.isfinite(xy).all(-1)]
    if xy.size:
        lo, hi = xy.min(0), xy.max(0)
        pad = 0.1 * float((hi - lo).max() + 1)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(hi[1] + pad, lo[1] - pad)
    ax.set_aspect("equal")


def has_mp4_writer() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_animation(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """MP4 (H.264 via imageio-ffmpeg) or GIF (pillow). An .mp4 request without imageio-ffmpeg
    becomes a .gif beside it, with a warning — the returned path is the file written."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi") and not has_mp4_writer():
        warnings.warn(f"imageio-ffmpeg is not installed: writing {path.with_suffix('.gif')} instead of {path}")
        path = path.with_suffix(".gif")
    if path.suffix.lower() == ".gif":
        frames = list(frames)
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    else:
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1,
                                pixelformat="yuv420p") as writer:
            for frame in frames:
                writer.append_data(_even(frame))
    return path


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def render_sequence(poses: np.ndarray, path: str | Path, fps: float = 30.0, overlay_video=None,
                    keypoints_2d: Optional[np.ndarray] = None, frames: Optional[np.ndarray] = None,
                    **kw) -> Path:
    """Animate (T, 17, 3) poses to ``path`` (.mp4 or .gif); with ``overlay_video`` (a path, or an
    array of RGB frames) and/or ``keypoints_2d`` (T, 17, 2|3 pixels) the 2D is drawn beside it.
    ``frames`` (T,) are the video frame indices of the poses (default 0..T-1)."""
    return write_animation(render_frames(poses, overlay_video, keypoints_2d, frames, **kw), path, fps)


def contact_sheet(poses: np.ndarray, path: str | Path, n: int = 8, cols: int = 4,
                  frames: Optional[np.ndarray] = None, elev: float = 10.0, azim: float = -70.0) -> Path:
    """A PNG grid of ``n`` evenly spaced 3D poses of the sequence."""
    poses = np.asarray(poses, dtype=np.float64)
    n = max(1, min(n, poses.shape[0]))
    picks = np.linspace(0, poses.shape[0] - 1, n).round().astype(int)
    labels = picks if frames is None else np.asarray(frames)[picks]
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    radius = _sequence_radius(poses)
    fig = plt.figure(figsize=(3 * cols, 3 * rows), dpi=80)
    try:
        for k, (i, label) in enumerate(zip(picks, labels)):
            ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
            ax.view_init(elev=elev, azim=azim)
            draw_skeleton_3d(ax, poses[i], radius=radius, title=f"frame {int(label)}")
        return _save(fig, path)
    finally:
        plt.close(fig)


def people_frame(image: np.ndarray, keypoints_2d: Mapping[str, np.ndarray],
                 poses: Mapping[str, np.ndarray], path: str | Path, title: str = "",
                 size: float = 4.0, dpi: int = 90, elev: float = 10.0, azim: float = -70.0) -> Path:
    """One video frame with every person's 2D skeleton and id, and each person's 3D beside it.

    ``keypoints_2d`` and ``poses`` map track ids to one (17, 3) pose each (H36M-17 pixels +
    confidence; metres); a picture of several people at once, where :func:`render_sequence`
    draws one track per video.
    """
    ids = list(poses)
    aspect = image.shape[1] / image.shape[0]
    ratios = [aspect] + [1.0] * len(ids)
    fig = plt.figure(figsize=(size * sum(ratios), size), dpi=dpi)
    try:
        grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios, left=0.01, right=0.99,
                                bottom=0.02, top=0.9, wspace=0.02)
        ax2 = fig.add_subplot(grid[0, 0])
        ax2.imshow(image)
        for tid, kp in keypoints_2d.items():
            draw_skeleton_2d(ax2, kp, conf_threshold=0.3, linewidth=1.5)
            seen = kp[kp[:, 2] > 0.3, :2]
            if len(seen):
                ax2.text(seen[:, 0].mean(), seen[:, 1].min() - 15, f"person {tid}", color="white",
                         fontsize=9, ha="center", va="bottom",
                         bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "lw": 0})
        ax2.set_axis_off()
        ax2.set_title(title or "2D", fontsize=9)
        for k, tid in enumerate(ids):
            ax3 = fig.add_subplot(grid[0, k + 1], projection="3d")
            ax3.view_init(elev=elev, azim=azim)
            draw_skeleton_3d(ax3, poses[tid], title=f"person {tid}, 3D")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path
    finally:
        plt.close(fig)


def _save(fig, path: str | Path) -> Path:
    """Lay out and write a figure, creating its folder."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


#: the training-curve panels: (title, y scale, which history keys go on it)
CURVE_PANELS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("training loss", "log", lambda k: "loss" in k and not k.startswith("val")),
    ("validation", "linear", lambda k: k.startswith("val")),
    ("learning rate", "log", lambda k: k == "lr"),
    ("samples / s", "linear", lambda k: k == "samples_per_s"),
)


def plot_curves(runs: Mapping[str, Sequence[Mapping[str, float]]] | Sequence[Mapping[str, float]],
                path: str | Path, x_key: str = "epoch", title: str = "") -> Path:
    """Training curves of one or more runs (name → per-epoch history), one panel per kind of
    value — loss, validation metric, learning rate, throughput — so values of different
    scales never share an axis; each run is one colour across the panels. Panels with no data
    are left out; non-finite values (a run without validation reports NaN) are skipped."""
    if not isinstance(runs, Mapping):
        runs = {"": runs}
    if not runs or not any(runs.values()):
        raise ValueError("history is empty")
    keys = {k for h in runs.values() for e in h for k, v in e.items()
            if k != x_key and isinstance(v, (int, float)) and not isinstance(v, bool)}

    def finite(history, k):
        return [(e.get(x_key, i) + (1 if x_key == "epoch" else 0), e[k]) for i, e in enumerate(history)
                if isinstance(e.get(k), (int, float)) and math.isfinite(e[k])]

    panels = [(t, scale, sorted(k for k in keys if pick(k))) for t, scale, pick in CURVE_PANELS]
    other = sorted(keys - {k for _, _, ks in panels for k in ks} - {"step"})
    panels = [p for p in panels if any(finite(h, k) for h in runs.values() for k in p[2])]
    if any(finite(h, k) for h in runs.values() for k in other):
        panels.append(("other", "linear", other))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=90, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    try:
        for ax, (name, scale, ks) in zip(axes[0], panels):
            for r, (run, history) in enumerate(runs.items()):
                for j, k in enumerate(ks):
                    pts = finite(history, k)
                    if pts:
                        label = " ".join(x for x in (run, k if len(ks) > 1 or name == "validation" else "") if x)
                        ax.plot(*zip(*pts), color=colors[r % len(colors)], ls=("-", "--", ":")[j % 3],
                                marker="o" if len(pts) < 30 else None, ms=3, label=label or None)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(x_key)
            ax.set_yscale(scale)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[1]:
                ax.legend(fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        return _save(fig, path)
    finally:
        plt.close(fig)


def _fmt(v, floatfmt: str) -> str:
    if isinstance(v, float):
        return format(v, floatfmt) if math.isfinite(v) else str(v)
    if isinstance(v, (np.floating,)):
        return _fmt(float(v), floatfmt)
    return "" if v is None else str(v)


def format_table(rows: Sequence[Mapping[str, object]], columns: Optional[Sequence[str]] = None,
                 floatfmt: str = ".1f") -> str:
    """A Markdown table (also readable as plain text) of evaluation rows."""
    if not rows:
        return ""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c), floatfmt) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float, np.number)) or r.get(c) is None for r in rows)
               for c in columns]

    def line(vals):
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(vals, widths, numeric)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                         for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(columns), sep] + [line(r) for r in cells])


def plot_table(rows: Sequence[Mapping[str, object]], path: str | Path,
               columns: Optional[Sequence[str]] = None, title: str = "", floatfmt: str = ".1f") -> Path:
    """The same table as :func:`format_table`, as a PNG (for reports and READMEs)."""
    if not rows:
        raise ValueError("no rows")
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c), floatfmt) for c in columns] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(columns)), 0.45 * (len(rows) + 1) + 0.6), dpi=100)
    try:
        ax.set_axis_off()
        table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        for (r, _), cell in table.get_celld().items():
            if r == 0:
                cell.set_facecolor("#dde6f0")
                cell.set_text_props(weight="bold")
        if title:
            ax.set_title(title)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_joint_errors(per_joint: Mapping[str, float], path: str | Path, title: str = "") -> Path:
    """Error of each joint (mm) as bars, left/right limbs coloured as in the skeleton drawings:
    where a lifter goes wrong (usually wrists and ankles) at a glance."""
    names = list(per_joint)
    values = [float(per_joint[n]) for n in names]
    colors = [_bone_color(skeleton.JOINT_INDEX[n]) if n in skeleton.JOINT_INDEX else "0.4" for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=90)
    try:
        ax.bar(range(len(names)), values, color=colors)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("MPJPE (mm)")
        ax.grid(axis="y", alpha=0.3)
        if title:
            ax.set_title(title, fontsize=10)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_errorbars(series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                   path: str | Path, xlabel: str, ylabel: str = "MPJPE (mm)", title: str = "",
                   xscale: str = "linear") -> Path:
    """Mean ± std over seeds against a swept setting, one line per method:
    ``series[name] = (x values, means, stds)`` (e.g. error vs masking ratio, vs input noise;
    ``xscale='log'`` for settings swept over decades, such as a label fraction)."""
    if not series:
        raise ValueError("no series")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    try:
        for name, (xs, means, stds) in series.items():
            if not (len(xs) == len(means) == len(stds)):
                raise ValueError(f"series {name!r}: x, mean and std lengths differ")
            ax.errorbar(xs, means, yerr=stds, marker="o", ms=4, capsize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xscale(xscale)
        if xscale == "log":  # label the swept values themselves, not powers of ten
            ticks = sorted({float(x) for xs, _, _ in series.values() for x in xs})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title)
        return _save(fig, path)
    finally:
        plt.close(fig)
