"""Export a fine-tuning checkpoint as a lean inference model: fp16 (or int8) weights and the
config, no optimizer or RNG state, loadable by `raypose infer --checkpoint`.

    raypose export --checkpoint runs/wild/checkpoint_epoch0019 --out my_lifter
    raypose export --checkpoint runs/wild/checkpoint_epoch0019 --out my_lifter --precision int8
    raypose export --checkpoint s3://bucket/run/checkpoint_epoch0019 --out my_lifter --precision fp32

fp16 is about a sixth of the checkpoint's size, int8 (one scale per weight row) a twelfth;
`bench/accuracy.py --precision` measures what the rounding costs. This is how
`raypose/assets/wild_lifter` (the shipped model) was made.

For serving without raypose's model code, `--format program` writes one `torch.export` file
(graph + fp32 weights, dynamic batch; `torch.export.load(path).module()` runs it, AOTInductor can
compile it ahead of time), and `raypose infer --checkpoint lifter.pt2` lifts with it:

    raypose export --checkpoint runs/wild/checkpoint_epoch0019 --out lifter.pt2 --format program
"""
from __future__ import annotations

import argparse

TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    from raypose.checkpoints import WEIGHT_PRECISIONS

    p.add_argument("--checkpoint", required=True, help="fine-tuning checkpoint directory or s3:// URI")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--precision", choices=WEIGHT_PRECISIONS, default="fp16",
                   help="weight storage (default fp16; int8: per-row scaled weight matrices)")
    p.add_argument("--format", choices=("checkpoint", "program"), default="checkpoint",
                   help="checkpoint: a lean raypose checkpoint directory (default); program: one "
                        "torch.export .pt2 file for serving")
    p.add_argument("--s3-endpoint", default="", help="endpoint for s3:// checkpoints")


def run(args: argparse.Namespace) -> str:
    from raypose.checkpoints import export_lifter, export_program

    if args.format == "program":
        out = export_program(args.checkpoint, args.out, s3_endpoint=args.s3_endpoint)
        print(f"exported: {out} ({out.stat().st_size / 1e6:.1f} MB torch.export program, fp32 weights)")
        return str(out)

    out = export_lifter(args.checkpoint, args.out, precision=args.precision, s3_endpoint=args.s3_endpoint)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"exported: {out} ({size / 1e6:.1f} MB, {args.precision} weights)")
    return str(out)
