"""Ray Tune search of masking ratios and loss weights, judged by the fine-tuned val MPJPE.

    raypose tune --config configs/tune_smoke.yaml --set tune.storage_path=/tmp/tune
    raypose tune --config configs/tune_smoke.yaml --set tune.storage_path=/tmp/tune --resume
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/tune.py --config configs/tune.yaml --set tune.storage_path=s3://bucket/tune

Every trial pretrains briefly with its masks and reconstruction weights, fine-tunes from that
checkpoint, and reports the validation MPJPE (ASHA stops trailing trials between fine-tuning
epochs). `--resume` restores the interrupted search named by tune.storage_path + tune.name
(pass the same --config/--set): finished trials are kept, the others resume their runs.
Writes trials.csv / trials.json, best_finetune.yaml and mask_ratios.png to --out (default: the
experiment folder, or ./tune_results/<name> for S3 storage), prints the table and, last,
`best_config: <path>`.
"""
from __future__ import annotations

import argparse

from raypose import config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="Tuner.restore the interrupted search")
    p.add_argument("--out", default=None, help="folder for the table, best config and plot")


def run(args: argparse.Namespace) -> str:
    import ray

    from raypose import tune
    from raypose.viz import format_table

    cfg = config.from_cli(args)
    out = tune.run_search(cfg, resume=args.resume, out_dir=args.out)
    if ray.is_initialized():
        ray.shutdown()
    columns = ["trial_id", "status", *cfg.tune.space, tune.METRIC, "time_s"]
    print(format_table(out.rows, columns, floatfmt=".3g"), flush=True)
    print(f"table: {out.table_csv}\nplot: {out.plot}\nbest_config: {out.best_config}", flush=True)
    return str(out.best_config)
