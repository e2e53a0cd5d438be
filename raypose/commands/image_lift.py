"""Lifting by Image: two-stage progressive training (stage 1 broad query, stage 2 focused).

    raypose image-lift --config configs/image_lift_stage1.yaml
    raypose image-lift --config configs/image_lift_stage2.yaml --init runs/image_lift/stage1.pt
    raypose image-lift --config configs/image_lift_stage1_smoke.yaml --stage 1

`--stage` (or `model.extra.lift_stage` in the config) picks the stage; stage 2 needs the
stage-1 checkpoint (`--init`). Data: rendered crops of the mocap subjects in
data.train_subjects / data.test_subjects, or image folders (model.extra.image_data). Prints
progress and test MPJPE / P-MPJPE (mm) with background-attention shares, and last
`checkpoint: <path>`.
"""
from __future__ import annotations

import argparse

from raypose import config
from raypose.commands import finish


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", type=int, choices=(1, 2), default=None, help="1 = broad query, 2 = focused")
    p.add_argument("--init", default="", help="stage-1 checkpoint (stage 2)")
    p.add_argument("--out", default="", help="output folder (default train.storage_path or runs/)")


def run(args: argparse.Namespace) -> str:
    import torch

    from raypose.image_training import run as train_image_lift

    cfg = config.from_cli(args)
    stage = args.stage or int(cfg.model.extra.get("lift_stage", 1))
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    path = train_image_lift(cfg, stage, args.init or cfg.train.init, args.out)
    finish(path)
    return path
