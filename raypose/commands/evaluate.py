"""Evaluate a fine-tuned checkpoint: MPJPE, P-MPJPE, N-MPJPE, MPJVE, PCK/AUC, per-action table.

    raypose evaluate                                          # the shipped model, real detections
    raypose evaluate --checkpoint latest                      # the newest fine-tuning run
    raypose evaluate --checkpoint <path or s3:// URI> --split test --out results.json
                                              # + results_actions.png, results_joints.png
    raypose evaluate --checkpoint <ckpt> --data my_mocap.npz --no-flip
    raypose evaluate --checkpoint <ckpt> --calibrated ../shared/data/pose2sim_demo.npz

`--data` takes any VideoPose3D-layout 3D npz (positions_3d[subject][action] (T, 17, 3) metres)
and projects it through virtual cameras; its split defaults to `all`. Without `--data` the
checkpoint's own data settings are used, split `test`. Without `--checkpoint` the model shipped in
the package is scored — with no data option either, on the real detections of
../shared/data/pose2sim_demo.npz (a person it never saw); `--checkpoint latest` takes the newest fine-tuning checkpoint under
train.storage_path (default ~/ray_results). `--calibrated` instead lifts real 2D detections from
calibrated cameras (the Pose2Sim layout: COCO-17 pixels per camera, R, t, image size, multi-view
3D) camera by camera and scores them against the 3D seen from each camera. No Ray needed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from raypose import config
from raypose.errors import RayposeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint directory or s3:// URI; 'latest' = the newest fine-tuning run "
                        "under train.storage_path; default: the shipped model")
    p.add_argument("--data", default=None, help="a VideoPose3D-layout 3D npz to evaluate on")
    p.add_argument("--calibrated", default=None,
                   help="an npz of real detections from calibrated cameras (pose2sim_demo.npz layout)")
    p.add_argument("--split", default=None, choices=["train", "val", "test", "all"])
    p.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                   help="no test-time flip averaging")
    p.add_argument("--flip", dest="flip", action="store_true", help="test-time flip averaging")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--s3-endpoint", default="", help="endpoint for s3:// checkpoints")


def resolve_checkpoint(checkpoint: str | None, storage_path: str) -> str:
    """``latest`` → the newest fine-tuning checkpoint; nothing → the shipped model."""
    if checkpoint == "latest":
        from raypose.checkpoints import latest_lifter

        return latest_lifter(storage_path)
    if checkpoint is None:
        from raypose.infer import SHIPPED_CHECKPOINT

        print(f"checkpoint: the shipped model ({SHIPPED_CHECKPOINT})", flush=True)
        return str(SHIPPED_CHECKPOINT)
    return checkpoint


#: what the shipped model is scored on when no data is named: real detections of an unseen person
REAL_DETECTIONS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pose2sim_demo.npz"


def run(args: argparse.Namespace) -> dict:
    from raypose.evaluate import evaluate, format_table, write_json

    cfg = config.from_cli(args)
    if args.checkpoint is None and not (args.data or args.calibrated or args.split):
        if not REAL_DETECTIONS.is_file():
            raise RayposeError(f"the shipped model trained on every embedded and shared subject, so it "
                               f"has no held-out split of its own and {REAL_DETECTIONS} is not here: "
                               "pass --data, --calibrated or --checkpoint")
        print(f"data: {REAL_DETECTIONS} (real detections, 4 calibrated cameras)", flush=True)
        args.calibrated = str(REAL_DETECTIONS)
    checkpoint = resolve_checkpoint(args.checkpoint, cfg.train.storage_path)
    if args.calibrated:
        return evaluate_cameras(checkpoint, args)
    result = evaluate(checkpoint, split=args.split, data_path=args.data, flip=args.flip,
                      device=args.device, s3_endpoint=args.s3_endpoint or cfg.train.s3_endpoint)
    print(format_table(result), flush=True)
    if args.out:
        written = write_json(result, args.out)
        print(f"results: {written[0]}\nplots: {', '.join(str(p) for p in written[1:])}")
    return result.to_dict()


def evaluate_cameras(checkpoint: str, args: argparse.Namespace) -> dict:
    """``--calibrated``: one row per camera (MPJPE, P-MPJPE, N-MPJPE in mm) and the frame-weighted mean."""
    from raypose.evaluate import evaluate_calibrated, mean_over_cameras
    from raypose.infer import load_checkpoint
    from raypose.viz import format_table

    lifter = load_checkpoint(checkpoint, device=args.device)
    rows = evaluate_calibrated(lifter.model, args.calibrated, lifter.num_frames, lifter.stride,
                               flip=True if args.flip is None else args.flip, model_fps=lifter.fps,
                               causal=lifter.causal)
    mean = {"camera": "all", "frames": sum(r["frames"] for r in rows), **mean_over_cameras(rows)}
    print(f"checkpoint {checkpoint}\n{args.calibrated}: real 2D per camera vs the multi-view 3D (mm)")
    print(format_table([*rows, mean]), flush=True)
    result = {"checkpoint": str(checkpoint), "calibrated": str(args.calibrated), "cameras": rows, **mean}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"results: {args.out}")
    return result
