"""Training throughput: the Ray Train loop (1 worker) vs a bare single-process torch loop.

Both train the same registry model on the same data settings (clips cut on the device from
the same chunk batches, the same losses and optimizer); the bare loop reads the chunks once
into memory, the Ray loop streams them through Ray Data and the strategy. Prints samples/s
(clips per second, measured after a warm-up epoch) side by side and their ratio.

    python bench/train_step.py                                  # pstmo_s smoke sizes, CPU
    python bench/train_step.py --config configs/pstmo_s.yaml --set data.num_frames=81 --steps 50
    python bench/train_step.py --set train.strategy=deepspeed --set train.use_gpu=true
    python bench/train_step.py --workers 1          # one worker only

Also prints the per-step overhead in ms (Ray's step time minus the bare loop's) for 1 and 2
workers; with 2, the baseline is twice the bare loop (each rank steps on its own batch).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from raypose import config  # noqa: E402


def bare_loop(cfg: config.Config, steps: int, warmup: int) -> float:
    """samples/s of a plain torch loop: no Ray, no strategy, batches already in memory."""
    from raypose.data.clips import train_clips
    from raypose.data.pipeline import local_batches
    from raypose.losses import compute_losses
    from raypose.train.loop import build_model, build_optimizer

    device = torch.device("cuda" if cfg.train.use_gpu and torch.cuda.is_available() else "cpu")
    if device.type == "cpu":  # Ray gives a worker OMP_NUM_THREADS = its CPUs: compare like with like
        torch.set_num_threads(cfg.train.torch_threads if cfg.train.torch_threads > 0
                              else max(1, int(cfg.train.cpus_per_worker)))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    bf16 = cfg.train.precision == "bf16" and device.type == "cuda"
    batches = list(local_batches(cfg.data, "train", device=device, shuffle=True, seed=cfg.train.seed))
    model = build_model(cfg, "finetune").to(device).train()
    optimizer, _ = build_optimizer(cfg, model)
    g = torch.Generator(device=device).manual_seed(cfg.train.seed)
    source = itertools.cycle(batches)
    clips_done, t0 = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, clips_done = time.perf_counter(), 0
        clips = train_clips(next(source), cfg.data, g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model(clips.pose_2d, clips.confidence <= 0)
        loss, _ = compute_losses({k: v.float() for k, v in out.items()}, clips, None, cfg.loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clips_done += clips.num_clips
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clips_done / (time.perf_counter() - t0)


def bare_mfu(cfg: config.Config, samples_per_s: float) -> float | None:
    """Model FLOPs utilisation of the bare loop, counted as the Ray loop counts it."""
    from raypose.train.loop import build_model, flops_per_clip, gpu_peak_flops

    if not (cfg.train.use_gpu and torch.cuda.is_available()):
        return None
    peak = gpu_peak_flops(torch.device("cuda"), cfg.train.precision)
    flops = flops_per_clip(build_model(cfg, "finetune").cuda(), cfg, "finetune")
    return 3.0 * flops * samples_per_s / peak if peak and flops else None


def ray_loop(cfg: config.Config, steps: int, storage: str, workers: int,
             warmup_epochs: int = 2, checkpoint_every_epoch: bool = False) -> tuple[float, float | None]:
    """(world samples/s, MFU) the raypose Ray Train loop reports for its last epoch. The first
    ``warmup_epochs`` warm up: the first pass streams the shard from Ray Data, after which a
    shard that fits stays on the worker (``data.worker_cache_mb``). The checkpoint is written
    at the end only, unless ``checkpoint_every_epoch``: then the previous epoch's checkpoint is
    persisted while the measured epoch trains (on 2 CPUs that I/O competes with the step)."""
    from raypose.train.run import fit

    epochs = warmup_epochs + 1
    cfg = cfg.with_overrides({"train.num_workers": workers, "train.epochs": epochs,
                              "train.steps_per_epoch": steps,
                              "train.checkpoint_every": 1 if checkpoint_every_epoch else epochs,
                              "train.storage_path": storage, "train.run_name": f"bench-{int(time.time())}",
                              "train.val_max_clips": 1, "train.init": ""})
    _, result = fit(cfg, "finetune")
    return float(result.metrics["samples_per_s"]), result.metrics.get("mfu")


def warmup_epochs(cfg: config.Config, steps: int, workers: int) -> int:
    """Epochs until every rank has made its first, streamed pass over its shard: the epoch after
    them runs in the steady state (the shard cached on the worker, or streamed pass after pass)."""
    import math

    from raypose.data.pipeline import build_datasets
    from raypose.train.run import ensure_ray

    ensure_ray()
    chunks = build_datasets(cfg.data, seed=cfg.train.seed)["train"].count()
    per_rank = math.ceil(chunks / workers / cfg.data.batch_size)
    return max(1, math.ceil(per_rank / (steps * cfg.train.grad_accum)))


def per_worker_cpus(cfg: config.Config, workers: int) -> config.Config:
    """Each worker gets the same torch threads as the bare loop; with more workers than fit
    beside Ray Data on this machine, fractional CPUs keep the run from being refused."""
    cpus = os.cpu_count() or 1
    cpw = float(cfg.train.cpus_per_worker)
    if workers * cpw >= cpus:
        cpw = max(0.5, (cpus - 0.5) / workers)
    threads = max(1, int(cfg.train.cpus_per_worker)) if workers == 1 else max(1, int(cpw))
    return cfg.with_overrides({"train.cpus_per_worker": cpw, "train.torch_threads": threads})


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_cli_arguments(p)
    p.add_argument("--steps", type=int, default=100, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="Ray Train worker counts to measure (each beside the bare loop)")
    p.add_argument("--with-checkpoints", type=int, choices=(0, 1), default=1,
                   help="1 (default): one more run with a checkpoint every epoch (the default "
                        "config), to show what persisting it during training costs")
    p.add_argument("--storage", default="/tmp/raypose-bench", help="Ray Train storage for the run")
    args = p.parse_args(argv)
    cfg = config.from_cli(args) if args.config else config.load(ROOT / "configs" / "pstmo_s_smoke.yaml",
                                                                  args.overrides)
    clips = cfg.data.batch_size * cfg.data.clips_per_sequence
    rows: dict[str, float] = {}
    lines = []
    runs = [(w, False) for w in args.workers] + [(args.workers[0], True)] * args.with_checkpoints
    bare_of: dict[int, float] = {}
    for workers, every_epoch in runs:
        wcfg = per_worker_cpus(cfg, workers)
        bare = bare_of.get(workers) or bare_loop(wcfg, args.steps, args.warmup)
        bare_of[workers] = bare
        ray_sps, ray_mfu = ray_loop(wcfg, args.steps, args.storage, workers,
                                    warmup_epochs(wcfg, args.steps, workers), every_epoch)
        if every_epoch:
            name = "  + checkpoint per epoch"
            rows.update({f"ray_{workers}_ckpt": ray_sps, f"ratio_{workers}_ckpt": ray_sps / (workers * bare)})
            ray_ms = 1e3 * clips * workers / ray_sps
            lines.append(f"{name:<24}{ray_sps:>11.1f}{workers * bare:>13.1f}{ray_ms:>10.1f}"
                         f"{1e3 * clips / bare:>10.1f}{ray_ms - 1e3 * clips / bare:>11.1f}"
                         f"{ray_sps / (workers * bare):>8.2f}")
            continue
        bare_ms = 1e3 * clips / bare
        ray_ms = 1e3 * clips * workers / ray_sps   # every rank steps on its own batch
        ratio = ray_sps / (workers * bare)
        rows.update({f"bare_{workers}": bare, f"ray_{workers}": ray_sps, f"ratio_{workers}": ratio,
                     f"overhead_ms_{workers}": ray_ms - bare_ms})
        mfus = ""
        if ray_mfu is not None:
            rows.update({f"mfu_ray_{workers}": ray_mfu, f"mfu_bare_{workers}": bare_mfu(wcfg, bare)})
            mfus = f"  MFU Ray {ray_mfu:.1%} bare {rows[f'mfu_bare_{workers}'] or float('nan'):.1%}"
        lines.append(f"{'Ray Train, ' + str(workers) + ' worker' + 's' * (workers > 1):<24}"
                     f"{ray_sps:>11.1f}{workers * bare:>13.1f}{ray_ms:>10.1f}{bare_ms:>10.1f}"
                     f"{ray_ms - bare_ms:>11.1f}{ratio:>8.2f}{mfus}")
    import ray

    ray.shutdown()
    print(f"model {cfg.model.name}, {cfg.data.num_frames} frames, {clips} clips/step per worker, "
          f"{args.steps} steps, strategy {cfg.train.strategy}, {'GPU' if cfg.train.use_gpu else 'CPU'}")
    print(f"{'loop':<24}{'samples/s':>11}{'bare × N':>13}{'step ms':>10}{'bare ms':>10}"
          f"{'overhead':>11}{'ratio':>8}")
    print("\n".join(lines))
    print("bare × N: the bare torch loop's samples/s (same threads per process) times the worker "
          "count; overhead: Ray's step time minus the bare step time, in ms; runs checkpoint at "
          "their end, except the '+ checkpoint per epoch' row (the previous epoch's checkpoint is "
          "persisted while the measured one trains)")
    return rows


if __name__ == "__main__":
    main()
