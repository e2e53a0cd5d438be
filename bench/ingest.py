"""Ingest throughput: clips/s delivered to a consumer, three ways, side by side.

(a) Ray Data from a local Parquet store  (b) the same store on S3 (a moto server this bench
starts on 127.0.0.1)  (c) a plain in-memory numpy baseline: a P-STMO-style chunked generator
that materialises every clip (F frames of 2D and 3D) on the CPU.

For (a)/(b) the consumer receives fixed-length chunks; "clips" counts the centres the chunks
own (each sequence frame once — what the device would cut); with ``--cut-on-cpu`` an extra
row also cuts them with ``raypose.data.clips.eval_clips`` on this CPU (the gather the baseline
does, but here in torch on 2 cores — on a GPU it is the device's job). Each mode runs in its own process: peak RSS (getrusage) and
the tracemalloc peak are the consumer's; Ray's worker processes are not included.

    python bench/ingest.py                     # ≈1–2 min on 2 cores
    python bench/ingest.py --virtual-cameras 16 --num-frames 243 --epochs 3
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from raypose.config import DataConfig, SourceConfig  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def _consume_chunks(batches, data_cfg: DataConfig, cut: bool) -> tuple[int, int]:
    from raypose.data.clips import eval_clips

    clips = chunks = 0
    for b in batches:
        chunks += int(b["length"].shape[0])
        clips += int((b["centre_stop"] - b["centre_start"]).sum())
        if cut:
            for cb in eval_clips(b, data_cfg, max_clips=4096):
                _ = cb.pose_2d.sum()  # touch the gathered data
    return clips, chunks


def run_ray(data_cfg: DataConfig, epochs: int, cut: bool) -> dict:
    import ray

    from raypose.data.pipeline import build_datasets, iter_device_batches

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ds = build_datasets(data_cfg, seed=0)["train"]
    list(iter_device_batches(ds.limit(1), data_cfg, device="cpu"))  # start workers (not timed)
    tracemalloc.start()
    t0 = time.perf_counter()
    clips = chunks = 0
    for _ in range(epochs):
        c, k = _consume_chunks(iter_device_batches(ds, data_cfg, device="cpu"), data_cfg, cut)
        clips, chunks = clips + c, chunks + k
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    ray.shutdown()
    return {"clips": clips, "chunks": chunks, "seconds": dt, "traced_peak": peak}


def pstmo_generator(kp: list[np.ndarray], j3: list[np.ndarray], num_frames: int, stride: int,
                    batch_size: int):
    """P-STMO/VideoPose3D-style chunked generator: every frame's clip materialised on the CPU."""
    pad = (num_frames - 1) // 2 * stride
    pairs = np.concatenate([np.stack([np.full(len(k), i), np.arange(len(k))], 1) for i, k in enumerate(kp)])
    off = np.arange(-pad, pad + 1, stride)
    for s in range(0, len(pairs), batch_size):
        batch = pairs[s:s + batch_size]
        out2, out3 = [], []
        for seq, centre in batch:   # the reference generator loops per clip in Python too
            idx = np.clip(centre + off, 0, len(kp[seq]) - 1)
            out2.append(kp[seq][idx, :, :2])
            out3.append(j3[seq][idx])
        yield np.stack(out2), np.stack(out3)


def run_numpy(data_cfg: DataConfig, epochs: int, cut: bool) -> dict:
    from raypose.data.pipeline import split_tables
    from raypose.data.store import table_to_views

    views = [v for t in split_tables(data_cfg, "train") for v in table_to_views(t)]
    kp = [v.keypoints_2d for v in views]
    j3 = [v.joints_3d for v in views]
    tracemalloc.start()
    t0 = time.perf_counter()
    clips = 0
    for _ in range(epochs):
        for b2, _b3 in pstmo_generator(kp, j3, data_cfg.num_frames, data_cfg.stride, 1024):
            clips += b2.shape[0]
    dt = time.perf_counter() - t0
    return {"clips": clips, "chunks": 0, "seconds": dt, "traced_peak": tracemalloc.get_traced_memory()[1]}


def _child(mode: str, data_cfg: DataConfig, epochs: int, cut: bool, q) -> None:
    fn = {"ray_local": run_ray, "ray_s3": run_ray, "ray_local_cut": run_ray, "numpy": run_numpy}[mode]
    res = fn(data_cfg, epochs, cut)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put(res)


def measure(mode: str, data_cfg: DataConfig, epochs: int, cut: bool = False) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(mode, data_cfg, epochs, cut, q))
    p.start()
    res = q.get()
    p.join()
    return res


def all_subjects(data_cfg: DataConfig) -> list[str]:
    """Every subject of the configured sources (the embedded mocap by default)."""
    from raypose.data.pipeline import source_subject_frames

    return sorted({s for src in data_cfg.sources for s in source_subject_frames(src, data_cfg)})


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--virtual-cameras", type=int, default=8)
    ap.add_argument("--num-frames", type=int, default=243, help="clip length F")
    ap.add_argument("--chunk-frames", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16, help="chunks per batch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--shard-mb", type=float, default=4.0)
    ap.add_argument("--cut-on-cpu", action="store_true",
                    help="add a row where the consumer also cuts every clip on this CPU (slow)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

    from raypose.data.prepare import prepare_store

    work = Path(tempfile.mkdtemp(prefix="raypose-bench-"))
    base = DataConfig(num_frames=args.num_frames, chunk_frames=args.chunk_frames, batch_size=args.batch_size)
    # every subject is train (an explicit train list leaves val and test empty)
    base = DataConfig(**{**base.__dict__, "train_subjects": all_subjects(base)})
    local = str(work / "store")
    m = prepare_store(base, local, args.shard_mb, seed=0, virtual_cameras=args.virtual_cameras)
    moto, endpoint = start_moto()
    try:
        uri = "s3://raypose-bench/store"
        prepare_store(DataConfig(**{**base.__dict__, "s3_endpoint": endpoint}), uri, args.shard_mb, seed=0,
                      virtual_cameras=args.virtual_cameras)
        src = lambda path: [SourceConfig(name="bench", format="store", path=path)]  # noqa: E731
        cfg_local = DataConfig(**{**base.__dict__, "sources": src(local)})
        cfg_s3 = DataConfig(**{**base.__dict__, "sources": src(uri), "s3_endpoint": endpoint})
        print(f"store: {m['rows']} sequences×cameras, {m['frames']} frames, {len(m['shards'])} shards, "
              f"{m['bytes'] / 2**20:.1f} MiB; F={args.num_frames}, L={args.chunk_frames}, {args.epochs} epochs")
        rows = [("(a) Ray Data, local Parquet", measure("ray_local", cfg_local, args.epochs))]
        if args.cut_on_cpu:
            rows.append(("(a') same + clips cut on CPU", measure("ray_local_cut", cfg_local, args.epochs, cut=True)))
        rows += [("(b) Ray Data, S3 (moto)", measure("ray_s3", cfg_s3, args.epochs)),
                 ("(c) numpy P-STMO generator", measure("numpy", cfg_local, args.epochs))]
    finally:
        moto.terminate()
        moto.wait()
    print(f"\n{'pipeline':32s} {'clips':>9s} {'seconds':>8s} {'clips/s':>10s} {'chunks/s':>9s} "
          f"{'peak RSS MiB':>12s} {'traced MiB':>10s}")
    for name, r in rows:
        print(f"{name:32s} {r['clips']:9d} {r['seconds']:8.2f} {r['clips'] / r['seconds']:10.0f} "
              f"{r['chunks'] / r['seconds']:9.1f} {r['peak_rss_mb']:12.0f} {r['traced_peak'] / 2**20:10.1f}")
    return [dict(name=n, **r) for n, r in rows]


if __name__ == "__main__":
    main()
