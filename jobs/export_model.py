"""Export a fine-tuning checkpoint as a lean inference model: fp16 weights and the config, no
optimizer or RNG state (about a third of the size), loadable by `jobs/infer.py --checkpoint`.

    python jobs/export_model.py --checkpoint runs/wild/checkpoint_epoch0019 --out my_lifter
    python jobs/export_model.py --checkpoint s3://bucket/run/checkpoint_epoch0019 --out my_lifter --fp32

This is how `raypose/assets/wild_lifter` (the shipped model) was made.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="fine-tuning checkpoint directory or s3:// URI")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16)")
    p.add_argument("--s3-endpoint", default="", help="endpoint for s3:// checkpoints")
    args = p.parse_args(argv)
    from raypose.checkpoints import export_lifter

    out = export_lifter(args.checkpoint, args.out, half=not args.fp32, s3_endpoint=args.s3_endpoint)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"exported: {out} ({size / 1e6:.1f} MB)")
    return str(out)


if __name__ == "__main__":
    from raypose.errors import RayposeError

    try:
        main()
    except RayposeError as e:
        sys.exit(f"error: {e}")
