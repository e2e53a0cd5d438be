"""Fine-tuning (stage II): 2D → 3D lifting on Ray Train, optionally from a pretraining checkpoint.

    python jobs/finetune.py                                   # from scratch, embedded mocap
    python jobs/finetune.py --config configs/pstmo_smoke.yaml --init <pretrain checkpoint>
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/finetune.py --config configs/pstmo_s_smoke.yaml --init s3://bucket/run/checkpoint_epoch0001

`--init` (or `--set train.init=...`) takes a path or s3:// URI printed by jobs/pretrain.py; the
encoder weights are loaded into the lifting model. Prints per-epoch lines (loss, val MPJPE in mm,
samples/s, ETA) and, last, `checkpoint: <path or URI>` of the best checkpoint by val MPJPE.
"""
from __future__ import annotations

import _common


def main(argv: list[str] | None = None) -> str:
    p = _common.parser(__doc__)
    p.add_argument("--init", default=None, help="pretraining checkpoint (path or s3:// URI)")
    args = p.parse_args(argv)
    cfg = _common.config.from_cli(args)
    if args.init:
        cfg = cfg.with_overrides({"train.init": args.init})
    from raypose.train.run import finetune

    uri = finetune(cfg)
    _common.finish(uri)
    return uri


if __name__ == "__main__":
    _common.run(main)
