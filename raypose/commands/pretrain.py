"""Masked pose pretraining (stage I) on Ray Train.

    raypose pretrain                                          # embedded mocap, local Ray
    raypose pretrain --config configs/pstmo_smoke.yaml --set train.num_workers=2
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/pretrain.py --config configs/pstmo_s_smoke.yaml

Shows a header, a live progress bar per epoch (on a terminal), one line per epoch (loss,
validation loss, samples/s, ETA) and, last, `checkpoint: <path or URI>` — what `raypose finetune
--init` takes. Everything else (Ray's own messages) goes to console.log in the run directory,
beside curves.png; `--verbose` shows it too.
"""
from __future__ import annotations

import argparse

from raypose import config
from raypose.commands.training import add_console_arguments, train_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_console_arguments(parser)


def run(args: argparse.Namespace) -> str:
    return train_stage(config.from_cli(args), "pretrain", args.verbose)
