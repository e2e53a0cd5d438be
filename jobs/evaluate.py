"""Evaluate a fine-tuned checkpoint: MPJPE, P-MPJPE, N-MPJPE, MPJVE, PCK/AUC, per-action table.

    python jobs/evaluate.py                                   # latest fine-tune checkpoint
    python jobs/evaluate.py --checkpoint <path or s3:// URI> --split test --out results.json
    python jobs/evaluate.py --checkpoint <ckpt> --data my_mocap.npz --no-flip

`--data` takes any VideoPose3D-layout 3D npz (positions_3d[subject][action] (T, 17, 3) metres)
and projects it through virtual cameras; its split defaults to `all`. Without `--data` the
checkpoint's own data settings are used, split `test`. Without `--checkpoint`, the newest
fine-tuning checkpoint under train.storage_path (default ~/ray_results) is used. No Ray needed.
"""
from __future__ import annotations

import sys

import _common


def main(argv: list[str] | None = None) -> dict:
    p = _common.parser(__doc__)
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or s3:// URI")
    p.add_argument("--data", default=None, help="a VideoPose3D-layout 3D npz to evaluate on")
    p.add_argument("--split", default=None, choices=["train", "val", "test", "all"])
    p.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                   help="no test-time flip averaging")
    p.add_argument("--flip", dest="flip", action="store_true", help="test-time flip averaging")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--s3-endpoint", default="", help="endpoint for s3:// checkpoints")
    args = p.parse_args(argv)
    cfg = _common.config.from_cli(args)
    from raypose.evaluate import evaluate, format_table, write_json
    from raypose.train.checkpoint import latest_checkpoint

    checkpoint = args.checkpoint or latest_checkpoint(cfg.train.storage_path, stage="finetune")
    if checkpoint is None:
        sys.exit("no --checkpoint given and no fine-tuning checkpoint found; run jobs/finetune.py first")
    result = evaluate(checkpoint, split=args.split, data_path=args.data, flip=args.flip,
                      device=args.device, s3_endpoint=args.s3_endpoint or cfg.train.s3_endpoint)
    print(format_table(result), flush=True)
    if args.out:
        write_json(result, args.out)
        print(f"results: {args.out}")
    return result.to_dict()


if __name__ == "__main__":
    main()
