"""World trajectory: a trajectory head's camera-space root on held-out climb_b, beside the same
recipe without the head (same data, seed and schedule, same run).

Both are trained as ``bench/accuracy.py`` trains (climb_b held out, every other shared real mocap
through the training rig, in this process), then climb_b is lifted as a user's file is
(:func:`raypose.infer.lift_with_root`: flip averaging, resampled to the model's rate, the lens
given: f = 1145 px) under the accuracy protocol, twice:

* ``protocol``: the fixed protocol rig (:func:`raypose.config.protocol_rig`: 4 cameras, 5 m,
  following the pelvis horizontally, 30 fps, σ = 2 px 2D noise) — the camera keeps the root at
  5 m, so this scores depth and height;
* ``static``: the same 4 cameras standing still (aimed at the mean pelvis), so the root travels
  through the picture as the climber moves 4 m — the trajectory a user's fixed camera records.

Reported (mm): MPJPE / P-MPJPE (does the head cost pose accuracy?) and the root position error
(mean Euclidean distance of the camera-space pelvis, and its depth part). ``--figure`` draws the
top-down path (world x–y, all four static cameras' predictions brought to the world frame)
against the truth.

    python bench/trajectory.py --out docs/results/trajectory.json --figure docs/trajectory.png
    python bench/trajectory.py --quick                      # a smoke run (tests)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from accuracy import SHARED, held_out_config, train  # noqa: E402

from raypose.protocol import HELD_OUT, IMAGE_SIZE as SIZE, NOISE_PX, NOISE_SEED  # noqa: E402
from raypose.protocol import PRINCIPAL_POINT as PRINCIPAL, TEST_FPS  # noqa: E402

FOCAL = 1145.0


def protocol_tracks(mocap: Path, follow: bool = True, subject: str = HELD_OUT) -> list[dict[str, Any]]:
    """Per protocol camera and sequence of ``subject`` at 30 fps: noisy 2D (``kp``), the
    root-relative 3D (``pose``), the camera-space root (``root``) and the ``camera``;
    ``follow=False`` stands the protocol's cameras still."""
    from raypose.config import protocol_rig
    from raypose.data.sources.mocap import read_mocap
    from raypose.data.sources.views import views

    rig = dataclasses.replace(protocol_rig(), follow=follow)
    rng = np.random.default_rng(NOISE_SEED)
    out = []
    for rec in read_mocap(mocap, TEST_FPS, subjects=[subject]):
        for v in views(rec, np.random.default_rng(0), 4, rig):
            kp = v.keypoints_2d.copy()
            kp[..., :2] += rng.normal(0.0, NOISE_PX, kp[..., :2].shape)
            out.append({"kp": kp, "pose": v.joints_3d, "root": v.root_3d, "camera": v.camera})
    return out


def lift(model: Any, cfg: Any, tracks: Sequence[dict[str, Any]]) -> list[tuple[np.ndarray, Any]]:
    """(poses, root | None) per track, lifted as a user's file is, with the protocol's lens."""
    from raypose.infer import lift_with_root

    return [lift_with_root(model, t["kp"], *SIZE, cfg.data.num_frames, focal=FOCAL, stride=cfg.data.stride,
                           flip=True, principal_point=PRINCIPAL, fps=TEST_FPS,
                           model_fps=cfg.data.target_fps or None) for t in tracks]


def score(lifted: Sequence[tuple[np.ndarray, Any]], tracks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from raypose import metrics
    from raypose.evaluate import root_errors

    p = np.concatenate([x for x, _ in lifted]).astype(np.float64) * 1000
    t = np.concatenate([tr["pose"] for tr in tracks]).astype(np.float64) * 1000
    out: dict[str, Any] = {"mpjpe": float(metrics.mpjpe(p, t)), "p_mpjpe": float(metrics.p_mpjpe(p, t)),
                           "frames": int(p.shape[0])}
    if all(r is not None for _, r in lifted):
        out.update(root_errors(np.concatenate([r for _, r in lifted]), np.concatenate([tr["root"] for tr in tracks])))
    return out


def figure(lifted: Sequence[tuple[np.ndarray, Any]], tracks: Sequence[dict[str, Any]], path: Path,
           title: str) -> Path:
    """Top-down (world x–y) path of the pelvis: the truth and each static camera's prediction
    brought to the world frame by that camera's pose."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=100)
    true_world = tracks[0]["camera"].camera_to_world(tracks[0]["root"])
    ax.plot(true_world[:, 0], true_world[:, 1], color="black", lw=2.2, label="true pelvis")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((_, root), tr) in enumerate(zip(lifted, tracks)):
        cam = tr["camera"]
        world = cam.camera_to_world(root)
        ax.plot(world[:, 0], world[:, 1], color=colours[i % len(colours)], lw=1.0, alpha=0.85,
                label=f"predicted, camera {i}")
        centre = cam.camera_to_world(np.zeros((1, 3)))[0]
        ax.plot(*centre[:2], marker="^", color=colours[i % len(colours)], ms=7)
    ax.set_aspect("equal")
    ax.set_xlabel("world x (m)")
    ax.set_ylabel("world y (m)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run(config: str, overrides: Sequence[str], seed: int, quick: bool, threads: int,
        figure_path: str = "") -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    mocap = SHARED / "mocap_h36m17.npz"
    tests = {"protocol": protocol_tracks(mocap, follow=True), "static": protocol_tracks(mocap, follow=False)}
    if quick:
        tests = {k: [dict(t, kp=t["kp"][:90], pose=t["pose"][:90], root=t["root"][:90]) for t in v[:1]]
                 for k, v in tests.items()}
    rows = []
    for head in (True, False):
        cfg = held_out_config(config, [*overrides, f"model.trajectory={'true' if head else 'false'}"], seed, quick)
        model, cost = train(cfg)
        shown = str(Path(config).resolve().relative_to(ROOT)) if Path(config).resolve().is_relative_to(ROOT) else config
        row: dict[str, Any] = {"config": shown, "model": cfg.model.name, "trajectory": head, "seed": seed, **cost}
        for name, tracks in tests.items():
            lifted = lift(model, cfg, tracks)
            row[name] = score(lifted, tracks)
            if head and name == "static" and figure_path:
                s = row[name]
                figure(lifted, tracks, Path(figure_path),
                       f"held-out climb_b, 4 static cameras (▲) 5 m away\n{Path(config).stem} + trajectory "
                       f"head: pelvis error {s['root_error']:.0f} mm (depth {s['root_error_z']:.0f} mm)")
        rows.append(row)
        print(format_row(row), flush=True)
    return {"rows": rows}


def format_row(row: dict[str, Any]) -> str:
    parts = [f"{Path(row['config']).stem} {'+ trajectory head' if row['trajectory'] else '(no head)':<17}"]
    for name in ("protocol", "static"):
        s = row[name]
        parts.append(f"{name}: MPJPE {s['mpjpe']:6.1f} P-MPJPE {s['p_mpjpe']:6.1f}" +
                     (f" root {s['root_error']:6.1f} (z {s['root_error_z']:6.1f})" if s.get("root_error") is not None else ""))
    return "  ".join(parts) + f"  train {row['wall_s'] / 60:.1f} min"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "wild.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to both runs (with and without the head)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 steps and 90 test frames (smoke test)")
    p.add_argument("--figure", default="", help="write the top-down trajectory figure (PNG) here")
    p.add_argument("--out", default="", help="write the rows as JSON here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result = run(args.config, args.overrides, args.seed, args.quick, args.threads, args.figure)
    result.update(command=" ".join(["python", "bench/trajectory.py", *(argv if argv is not None else sys.argv[1:])]),
                  minutes=(time.perf_counter() - t0) / 60)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
