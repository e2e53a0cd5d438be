"""2D detections or a video → 3D poses per person (npz / JSON / BVH, renders).

    raypose infer --input ../shared/data/sports2d_demo/detections_coco17.json --out out/demo.npz
    raypose infer --input walk.npy --layout h36m17 --image-size 1000 1002 --fps 30 --out walk.npz
    raypose infer --input clip.mp4 --out clip.npz --json --bvh --render clip_3d.mp4

Without `--checkpoint` the model shipped in the package lifts (raypose/assets/wild_lifter);
`--checkpoint` takes any fine-tuning checkpoint directory or s3:// URI, or a model made by
`raypose export`.
"""
from __future__ import annotations

import argparse
from typing import Any

TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    from raypose.infer import add_infer_arguments

    add_infer_arguments(p)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from raypose.infer import infer_command

    return infer_command(args)
