"""Convert raw pose data into a sharded Parquet sequence store (local dir or s3://).

    python jobs/prepare_data.py --source mocap: --out /data/store
    python jobs/prepare_data.py --source h36m:/data/data_3d_h36m.npz:h36m \\
        --source coco:/data/coco_wholebody.json --out s3://bucket/raypose/v1 \\
        --s3-endpoint http://127.0.0.1:9000 --shard-mb 64 --virtual-cameras 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raypose import config  # noqa: E402
from raypose.config import SourceConfig  # noqa: E402
from raypose.data.augment import StillNoise  # noqa: E402
from raypose.data.prepare import prepare_store  # noqa: E402


def parse_source(text: str) -> SourceConfig:
    """``FORMAT:PATH[:NAME]``; PATH may itself hold ':' (s3://…); an empty PATH = embedded data."""
    if ":" not in text:
        raise SystemExit(f"--source {text!r}: expected FORMAT:PATH[:NAME]")
    fmt, rest = text.split(":", 1)
    name = fmt
    if ":" in rest:
        head, tail = rest.rsplit(":", 1)
        if tail and "/" not in tail and not head.endswith(("s3", "file")):
            rest, name = head, tail
    return SourceConfig(name=name, format=fmt, path=rest)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_cli_arguments(p)
    p.add_argument("--source", action="append", default=[], metavar="FORMAT:PATH[:NAME]",
                   help="a raw source (repeatable); default: the config's data.sources")
    p.add_argument("--out", required=True, help="store directory or s3://bucket/prefix")
    p.add_argument("--shard-mb", type=float, default=32.0, help="target shard size (MB of raw arrays)")
    p.add_argument("--virtual-cameras", type=int, default=None, help="virtual cameras per 3D-only sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--s3-endpoint", default=None, help="S3 endpoint override (e.g. a local S3 server)")
    p.add_argument("--coco-frames", type=int, default=None, help="frames each COCO still becomes (default data.num_frames)")
    p.add_argument("--coco-jitter", type=float, default=StillNoise.jitter, help="random-walk step / person scale")
    p.add_argument("--coco-noise", type=float, default=StillNoise.noise, help="per-joint noise std / person scale")
    args = p.parse_args(argv)

    cfg = config.from_cli(args)
    data = cfg.data
    if args.source:
        data.sources = [parse_source(s) for s in args.source]
    if args.s3_endpoint is not None:
        data.s3_endpoint = args.s3_endpoint
    noise = StillNoise(args.coco_frames or data.num_frames, args.coco_jitter, args.coco_noise)
    manifest = prepare_store(data, args.out, args.shard_mb, args.seed, noise, args.virtual_cameras)
    print(f"rows {manifest['rows']}  frames {manifest['frames']}  shards {len(manifest['shards'])}  "
          f"bytes {manifest['bytes']}")
    for split, subjects in manifest["splits"].items():
        print(f"  {split:5s} {', '.join(subjects) or '-'}")
    print(f"manifest {args.out.rstrip('/')}/manifest.json")
    return manifest


if __name__ == "__main__":
    main()
