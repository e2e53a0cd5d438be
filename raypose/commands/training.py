"""What ``raypose pretrain``, ``raypose finetune`` and ``raypose image-lift`` share: a named run,
a header, the quiet console with its log in the run directory, the curves, and the checkpoint
line last."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Callable

from raypose.config import Config


def add_console_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own messages too (they are always in the run's console.log)")


def header(cfg: Config, stage: str, run_dir: str, log: str) -> list[str]:
    """What runs, on which data, where: the lines a person checks before walking away."""
    import os

    from raypose.train.run import check_data, stage_config

    cfg = stage_config(cfg, stage)
    t, d = cfg.train, cfg.data
    splits = check_data(cfg)
    steps = f"{t.steps_per_epoch} steps" if t.steps_per_epoch > 0 else "one pass"
    cluster = f"Ray at {os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else "a local Ray"
    sources = ", ".join(f"{s.name} ({s.path or 'embedded'})" for s in d.sources)

    def names(split: str) -> str:
        subjects = splits.get(split, [])
        return (", ".join(subjects[:4]) + (f" +{len(subjects) - 4}" if len(subjects) > 4 else "")) or "-"

    return [f"run: {stage} {cfg.model.name} ({d.num_frames} frames), {t.epochs} epochs × {steps}, "
            f"batch {d.batch_size}×{d.clips_per_sequence}, on {cluster}",
            f"data: {sources}; train {names('train')} · val {names('val')}",
            f"workers: {t.num_workers} × {t.cpus_per_worker:g} CPU{' + 1 GPU' if t.use_gpu else ''} ({t.strategy})",
            f"log: {log} (everything; the terminal shows the summary)",
            f"run: {run_dir}"]


def train_stage(cfg: Config, stage: str, verbose: bool = False) -> str:
    """Train ``stage`` under the quiet console; returns the checkpoint path/URI (printed last)."""
    from raypose.train.run import fit, run_directory, run_name

    if not cfg.train.run_name:        # fixed up front: the log goes in the run's own directory
        cfg = cfg.with_overrides({"train.run_name": run_name(cfg, stage)})
    run_dir = run_directory(cfg, stage)
    return run_under_console(cfg, run_dir, lambda log: header(cfg, stage, run_dir, log),
                             lambda: fit(cfg, stage)[0], verbose)


def image_header(cfg: Config, lift_stage: int, run_dir: str, log: str) -> list[str]:
    """:func:`header` for a Lifting-by-Image stage (rendered crops or image folders, no Ray Data split)."""
    import os

    from raypose.image_training import crop_size, image_data_settings

    t, d = cfg.train, cfg.data
    h, w = crop_size(cfg)
    settings = image_data_settings(cfg)
    cluster = f"Ray at {os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else "a local Ray"
    if settings["source"] == "folder":
        data = f"image folders {', '.join(settings['labels'])}; test {', '.join(settings.get('test_labels', [])) or '-'}"
    else:
        data = (f"rendered {h}×{w} crops; train {', '.join(d.train_subjects) or '-'} · "
                f"test {', '.join(d.test_subjects) or '-'}")
    init = f", from {t.init}" if lift_stage == 2 else ""
    return [f"run: image-lift stage {lift_stage} ({cfg.model.extra.get('backbone', '?')}{init}), "
            f"{t.epochs} epochs × {t.steps_per_epoch or 'one pass of'} steps, batch {d.batch_size}, on {cluster}",
            f"data: {data}",
            f"workers: {t.num_workers} × {t.cpus_per_worker:g} CPU{' + 1 GPU' if t.use_gpu else ''} ({t.strategy})",
            f"log: {log} (everything; the terminal shows the summary)",
            f"run: {run_dir}"]


def train_image_stage(cfg: Config, lift_stage: int, init: str = "", verbose: bool = False) -> str:
    """Train one Lifting-by-Image stage on Ray Train under the quiet console; returns the
    checkpoint path/URI (printed last)."""
    from raypose.train.image_loop import STAGE, image_config
    from raypose.train.run import fit_image_lift, run_directory

    staged = image_config(cfg, lift_stage, init)
    run_dir = run_directory(staged, STAGE)
    return run_under_console(staged, run_dir, lambda log: image_header(staged, lift_stage, run_dir, log),
                             lambda: fit_image_lift(staged, lift_stage)[0], verbose)


def run_under_console(cfg: Config, run_dir: str, lines: Callable[[str], list[str]],
                      train: Callable[[], str], verbose: bool = False) -> str:
    """Header, ``train()`` and the run's curves inside the quiet console (the log in
    ``run_dir``, uploaded there when it is s3://); ``checkpoint: <uri>`` last."""
    import ray

    from raypose.checkpoints import upload_file
    from raypose.console import QuietConsole
    from raypose.commands.plot import print_run_curves

    remote = run_dir.startswith("s3://")
    tmp = tempfile.TemporaryDirectory(prefix="raypose-log-") if remote else None
    log = Path(tmp.name if tmp else run_dir) / "console.log"
    endpoint = cfg.train.s3_endpoint or cfg.data.s3_endpoint
    try:
        with QuietConsole(log, verbose=verbose):
            for line in lines(f"{run_dir}/console.log" if remote else str(log)):
                print(line, flush=True)
            uri = train()
            print_run_curves(uri, endpoint)
            if ray.is_initialized():
                ray.shutdown()              # inside: its goodbyes go to the log
        if remote:
            upload_file(log, f"{run_dir}/console.log", endpoint)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"checkpoint: {uri}", flush=True)
    return uri
