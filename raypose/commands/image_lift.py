"""Lifting by Image: two-stage progressive training (stage 1 broad query, stage 2 focused),
each stage a Ray Train run (local Ray unless RAY_ADDRESS names a cluster).

    raypose image-lift --config configs/image_lift_stage1.yaml
    raypose image-lift --config configs/image_lift_stage2.yaml --init runs/image_lift-stage1/checkpoint_epoch0019
    raypose image-lift --config configs/image_lift_stage1_smoke.yaml --stage 1

`--stage` (or `model.extra.lift_stage` in the config) picks the stage; stage 2 needs the
stage-1 checkpoint (`--init`: a checkpoint directory, or a `stage1.pt` of older raypose) and
trains with stage 1 frozen. Data: crops rendered from the mocap subjects in
data.train_subjects (each worker renders its own share) and data.test_subjects (evaluated every
epoch), or image folders (model.extra.image_data). The run is `<train.run_name>-stage<N>` under
train.storage_path (`--out`): one checkpoint per epoch (train.checkpoint_every), the best by
test MPJPE kept; a killed worker restarts from the last one (train.max_failures), and running
the same command again resumes. Shows one line per epoch (loss, test MPJPE) and, last,
`checkpoint: <path>` — the best checkpoint, what stage 2's `--init` and
`raypose.checkpoints.load_model` take.
"""
from __future__ import annotations

import argparse

from raypose import config
from raypose.commands.training import add_console_arguments, train_image_stage


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", type=int, choices=(1, 2), default=None, help="1 = broad query, 2 = focused")
    p.add_argument("--init", default="", help="stage-1 checkpoint directory (or older stage1.pt), for stage 2")
    p.add_argument("--out", default="", help="storage folder for the run (default train.storage_path, "
                                            "else ~/ray_results)")
    add_console_arguments(p)


def run(args: argparse.Namespace) -> str:
    cfg = config.from_cli(args)
    if args.out:
        cfg = cfg.with_overrides({"train.storage_path": args.out})
    stage = args.stage or int(cfg.model.extra.get("lift_stage", 1))
    return train_image_stage(cfg, stage, args.init or cfg.train.init, args.verbose)
