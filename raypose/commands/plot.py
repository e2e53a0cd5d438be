"""Training curves of one or more runs: loss, validation metric, learning rate, throughput.

    raypose plot ~/ray_results/finetune-pstmo_s-20261202-101500         # → that run's curves.png
    raypose plot runs/wild_a runs/wild_b --out compare.png               # runs side by side
    raypose plot s3://bucket/runs/wild --s3-endpoint http://127.0.0.1:9000 --out wild.png

A run is a training run's directory (its newest checkpoint holds every epoch's figures) or one
checkpoint directory. `raypose pretrain` / `finetune` draw `curves.png` in the run directory
when they end; this redraws it, or compares runs.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

TAKES_CONFIG = False
CURVES_FILE = "curves.png"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run or checkpoint directory (local or s3://)")
    p.add_argument("--out", default=None,
                   help=f"PNG to write (default: RUN/{CURVES_FILE} for one local run, else ./{CURVES_FILE})")
    p.add_argument("--s3-endpoint", default="", help="endpoint for s3:// runs")


def draw(runs: list[str], out: str | Path, s3_endpoint: str = "") -> Path:
    """One figure of the runs' curves, each labelled by its directory name."""
    from raypose.checkpoints import run_history
    from raypose.viz import plot_curves

    histories, stages = {}, set()
    for run in runs:
        stage, history = run_history(run, s3_endpoint)
        histories[Path(run.rstrip("/")).name if len(runs) > 1 else ""] = history
        stages.add(stage)
    title = runs[0] if len(runs) == 1 else f"{len(runs)} runs"
    return plot_curves(histories, out, title=f"{title} ({', '.join(sorted(stages))})")


def run_of(checkpoint: str) -> str:
    """The run directory (local path or s3:// URI) a checkpoint directory sits in."""
    return checkpoint.rstrip("/").rsplit("/", 1)[0]


def save_run_curves(checkpoint: str, s3_endpoint: str = "") -> str:
    """Draw the curves of the run holding ``checkpoint`` into that run's directory (uploaded for
    s3://); returns where they are."""
    run_dir = run_of(checkpoint)
    if not run_dir.startswith("s3://"):
        return str(draw([run_dir], Path(run_dir) / CURVES_FILE))
    from raypose.checkpoints import upload_file

    with tempfile.TemporaryDirectory(prefix="raypose-curves-") as tmp:
        target = f"{run_dir}/{CURVES_FILE}"
        upload_file(draw([run_dir], Path(tmp) / CURVES_FILE, s3_endpoint), target, s3_endpoint)
    return target


def print_run_curves(checkpoint: str, s3_endpoint: str = "") -> None:
    """After a training run: draw its curves and say where, or say loudly why not (the run and
    its checkpoint are fine either way, so this never fails the job)."""
    try:
        print(f"curves: {save_run_curves(checkpoint, s3_endpoint)}", flush=True)
    except Exception as e:  # a plotting problem must not hide the checkpoint line that follows
        print(f"warning: training curves not drawn ({type(e).__name__}: {e}); "
              f"`raypose plot {run_of(checkpoint)}` retries", flush=True)


def run(args: argparse.Namespace) -> str:
    out = args.out
    if out is None:
        single_local = len(args.runs) == 1 and not args.runs[0].startswith("s3://")
        out = Path(args.runs[0]) / CURVES_FILE if single_local else Path(CURVES_FILE)
    path = draw(args.runs, out, args.s3_endpoint)
    print(f"curves: {path}")
    return str(path)
