"""Fine-tuning (stage II): 2D → 3D lifting on Ray Train, optionally from a pretraining checkpoint.

    raypose finetune                                          # from scratch, embedded mocap
    raypose finetune --config configs/wild.yaml               # the recommended in-the-wild recipe
    raypose finetune --config configs/pstmo_smoke.yaml --init <pretrain checkpoint>
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/finetune.py --config configs/pstmo_s_smoke.yaml --init s3://bucket/run/checkpoint_epoch0001

`--init` (or `--set train.init=...`) takes a path or s3:// URI printed by `raypose pretrain`; the
encoder weights are loaded into the lifting model. Prints per-epoch lines (loss, val MPJPE in mm,
samples/s, ETA) and, last, `checkpoint: <path or URI>` of the best checkpoint by val MPJPE. As
with `raypose pretrain`: a live progress bar on a terminal, Ray's own messages in the run's
console.log (`--verbose` shows them), curves.png in the run directory.
"""
from __future__ import annotations

import argparse

from raypose import config
from raypose.commands.training import add_console_arguments, train_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", default=None, help="pretraining checkpoint (path or s3:// URI)")
    add_console_arguments(parser)


def run(args: argparse.Namespace) -> str:
    cfg = config.from_cli(args)
    if args.init:
        cfg = cfg.with_overrides({"train.init": args.init})
    return train_stage(cfg, "finetune", args.verbose)
