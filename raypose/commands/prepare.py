"""Convert raw pose data into a sharded Parquet sequence store (local dir or s3://).

    raypose prepare --out /data/store                         # the config's sources (default: embedded)
    raypose prepare --source mocap: --out /data/store
    raypose prepare --source h36m:/data/data_3d_h36m.npz:h36m \\
        --source coco:/data/coco_wholebody.json --out s3://bucket/raypose/v1 \\
        --s3-endpoint http://127.0.0.1:9000 --shard-mb 64 --virtual-cameras 4

Prints the rows, frames and shards written, the subjects of each split, and the manifest's path.
"""
from __future__ import annotations

import argparse

from raypose import config
from raypose.config import SourceConfig
from raypose.errors import RayposeError


def parse_source(text: str) -> SourceConfig:
    """``FORMAT:PATH[:NAME]``; PATH may itself hold ':' (s3://…); an empty PATH = embedded data."""
    if ":" not in text:
        raise RayposeError(f"--source {text!r}: expected FORMAT:PATH[:NAME]")
    fmt, rest = text.split(":", 1)
    name = fmt
    if ":" in rest:
        head, tail = rest.rsplit(":", 1)
        if tail and "/" not in tail and not head.endswith(("s3", "file")):
            rest, name = head, tail
    return SourceConfig(name=name, format=fmt, path=rest)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from raypose.data.augment import StillNoise

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


def run(args: argparse.Namespace) -> dict:
    from raypose.data.augment import StillNoise
    from raypose.data.prepare import prepare_store

    data = config.from_cli(args).data
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
