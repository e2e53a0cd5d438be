"""``raypose <command> …``: the package's console script.

Each command is a module of :mod:`raypose.commands` (docstring = help with examples,
``add_arguments``, ``run``), the same code ``python jobs/<command>.py`` runs under
``ray job submit``. Only the chosen command's module is imported, so ``raypose --help`` is quick.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

#: command → (module under raypose.commands, one-line summary for ``raypose --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "raw pose data → a sharded Parquet store (local or s3://)"),
    "pretrain": ("pretrain", "masked pose pretraining (stage I) on Ray Train"),
    "finetune": ("finetune", "2D → 3D lifting on Ray Train, from scratch or a pretraining checkpoint"),
    "evaluate": ("evaluate", "MPJPE / P-MPJPE / PCK of a checkpoint (default: the shipped model)"),
    "tune": ("tune", "Ray Tune search of mask ratios and loss weights"),
    "infer": ("infer", "2D detections or a video → 3D poses per person (npz / JSON / BVH, renders)"),
    "complete": ("complete", "partial 3D (missing joints / frames) → completed 3D (interpolation or an MPM model)"),
    "plot": ("plot", "training curves of one or more runs (PNG)"),
    "export": ("export", "a fine-tuning checkpoint → a lean fp16 / int8 model, or a torch.export program"),
    "image-lift": ("image_lift", "Lifting by Image: two-stage training on rendered crops"),
}

EPILOG = """examples:
  raypose pretrain                      # masked pretraining on the embedded mocap, local Ray
  raypose finetune --init <checkpoint>  # lifting from that checkpoint
  raypose evaluate --checkpoint latest  # held-out MPJPE of the newest run
  raypose infer --input detections.json --out poses.npz   # lift with the shipped model
  raypose complete --input partial.npz --out full.npz      # fill missing 3D joints / frames

`raypose COMMAND --help` shows a command's options; every training command takes
--config configs/<name>.yaml and --set key=value."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("raypose")
    except PackageNotFoundError:       # run from a checkout that was not pip-installed
        return "unknown (not installed)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="raypose", description="2D → 3D human pose lifting on Ray.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"raypose {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    if not argv:
        parser.print_help()
        return 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)        # --help, --version, or an error naming the unknown command
        return 2
    from raypose import commands

    module = importlib.import_module(f"raypose.commands.{COMMANDS[argv[0]][0]}")
    commands.exit_on_error(module, argv[1:], prog=f"raypose {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
