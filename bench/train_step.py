"""Training throughput: the Ray Train loop (1 worker) vs a bare single-process torch loop.

Both train the same registry model on the same data settings (clips cut on the device from
the same chunk batches, the same losses and optimizer); the bare loop reads the chunks once
into memory, the Ray loop streams them through Ray Data and the strategy. Prints samples/s
(clips per second, measured after a warm-up epoch) side by side and their ratio.

    python bench/train_step.py                                  # pstmo_s smoke sizes, CPU
    python bench/train_step.py --config configs/pstmo_s.yaml --set data.num_frames=81 --steps 50
    python bench/train_step.py --set train.strategy=deepspeed --set train.use_gpu=true
"""
from __future__ import annotations

import argparse
import itertools
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
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
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
        out = model(clips.pose_2d, clips.confidence <= 0)
        loss, _ = compute_losses(out, clips, None, cfg.loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clips_done += clips.num_clips
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clips_done / (time.perf_counter() - t0)


def ray_loop(cfg: config.Config, steps: int, storage: str) -> float:
    """samples/s the raypose Ray Train loop reports for its second epoch (the first warms up)."""
    from raypose.train.run import fit

    cfg = cfg.with_overrides({"train.num_workers": 1, "train.epochs": 2, "train.steps_per_epoch": steps,
                              "train.storage_path": storage, "train.run_name": f"bench-{int(time.time())}",
                              "train.val_max_clips": 1, "train.init": ""})
    _, result = fit(cfg, "finetune")
    return float(result.metrics["samples_per_s"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_cli_arguments(p)
    p.add_argument("--steps", type=int, default=20, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--storage", default="/tmp/raypose-bench", help="Ray Train storage for the run")
    args = p.parse_args(argv)
    cfg = config.from_cli(args) if args.config else config.load(ROOT / "configs" / "pstmo_s_smoke.yaml",
                                                                  args.overrides)
    bare = bare_loop(cfg, args.steps, args.warmup)
    ray_sps = ray_loop(cfg, args.steps, args.storage)
    import ray

    ray.shutdown()
    clips = cfg.data.batch_size * cfg.data.clips_per_sequence
    print(f"model {cfg.model.name}, {cfg.data.num_frames} frames, {clips} clips/step, "
          f"{args.steps} steps, strategy {cfg.train.strategy}, {'GPU' if cfg.train.use_gpu else 'CPU'}")
    print(f"{'loop':<28}{'samples/s':>12}")
    print(f"{'bare torch (1 process)':<28}{bare:>12.1f}")
    print(f"{'Ray Train (1 worker)':<28}{ray_sps:>12.1f}")
    print(f"{'ratio Ray / bare':<28}{ray_sps / bare:>12.2f}")
    return {"bare": bare, "ray": ray_sps, "ratio": ray_sps / bare}


if __name__ == "__main__":
    main()
