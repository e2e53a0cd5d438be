"""Lifting by Image (Zhou et al.) on Ray Train: one stage per run, on the lifters' machinery.

Each worker builds the image-lifting model (stage 2: stage 1 loaded from ``train.init`` and
frozen), renders its own share of the training crops (:func:`raypose.image_training.render_share`)
and trains through the same strategy, epoch loop, fault injection, per-epoch ``report`` and
checkpoints as pretraining and fine-tuning (:mod:`raypose.train.loop`); only the micro-step
(:func:`raypose.image_training.stage_loss`) and the validation differ. The test split is
rendered and evaluated on the main rank at the end of every epoch; its MPJPE of the stage's
output is reported as ``val_mpjpe``, so Ray keeps and ranks checkpoints by it.

A checkpoint is a regular raypose checkpoint directory (``model.pt``, ``meta.pt`` with stage
``finetune`` — a lifting model — and ``lift_stage``; the config carries
``model.extra.lift_stage``), so :func:`raypose.checkpoints.load_model` rebuilds it. Resuming
is Ray Train's: a restarted worker (``train.max_failures``) or a re-run under the same
``train.run_name`` and ``train.storage_path`` continues from the latest checkpoint.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from raypose import image_training as it
from raypose.config import Config
from raypose.train.loop import (Worker, config_from_loop_dict, report, run_epochs, setup_worker,
                                storage_endpoint, strategy_step)

Batch = dict[str, torch.Tensor]
#: The checkpoint stage of an image-lifting run: a lifting model (what the registry builds).
STAGE = "finetune"


# --------------------------------------------------------------------------------------------
# configuration (driver side)
# --------------------------------------------------------------------------------------------

def image_run_name(cfg: Config, lift_stage: int) -> str:
    """``<train.run_name>-stage<N>``: the two stages never share a run (Ray would hand stage 2
    stage 1's checkpoint to resume from); a name that already ends so is kept."""
    base = cfg.train.run_name or f"image_lift-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = f"-stage{lift_stage}"
    return base if base.endswith(suffix) else base + suffix


def image_config(cfg: Config, lift_stage: int, init: str = "") -> Config:
    """The config the workers get: ``train.stage`` finetune (not its ``stage_overrides``: the
    image configs' own lr holds), ``model.extra.lift_stage``, the per-stage run name and, for
    stage 2, ``train.init`` (stage 1 ignores it)."""
    if lift_stage not in (1, 2):
        raise ValueError(f"lift stage must be 1 or 2, got {lift_stage}")
    init = (init or cfg.train.init) if lift_stage == 2 else ""
    if lift_stage == 2 and not init:
        from raypose.errors import ConfigError

        raise ConfigError("stage 2 needs the stage-1 checkpoint (--init DIR, or train.init)")
    return cfg.with_overrides({"train.stage": STAGE, "model.extra.lift_stage": lift_stage,
                               "train.init": init, "train.run_name": image_run_name(cfg, lift_stage)})


# --------------------------------------------------------------------------------------------
# the worker
# --------------------------------------------------------------------------------------------

def build_image_model(cfg: Config, stage: str = STAGE) -> nn.Module:
    """The model at ``model.extra.lift_stage``, identical on every rank; stage 2 loads stage 1
    from ``train.init``, freezes it and starts the refined head from the coarse one (a restored
    checkpoint then overwrites all of it)."""
    torch.manual_seed(cfg.train.seed)
    n = it.lift_stage(cfg)
    model = it.build_model(cfg, n)
    if n == 2:
        it.load_stage1(model, cfg.train.init, storage_endpoint(cfg))
        it.warm_start_refined(model)
    return model.set_stage(n)


def image_step(worker: Worker, batch: Batch, last: bool) -> tuple[int, dict[str, torch.Tensor]]:
    """One micro-step of the stage's MSE through the strategy; returns (crops, loss parts)."""
    n = it.lift_stage(worker.cfg)
    parts = strategy_step(worker, last, lambda: it.stage_loss(worker.model, batch, n,
                                                              worker.strategy.prepare_inputs))
    return int(batch["pose_3d"].shape[0]), parts


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def training_passes(worker: Worker) -> Callable[[], Iterator[Batch]]:
    """``make_iter`` of one pass over this rank's crops: rendered (shuffled per pass by the
    worker's generator, which checkpoints carry) or, for ``image_data.source: folder``, every
    world-size-th batch of the labelled images' Ray Data stream."""
    cfg, info = worker.cfg, worker.info
    settings = it.image_data_settings(cfg)
    bs = int(cfg.data.batch_size)
    if settings["source"] == "folder":
        make = it.folder_batches(settings["labels"], cfg, True, int(cfg.train.seed))

        def folder_pass() -> Iterator[Batch]:
            for b, batch in enumerate(make()):
                if b % info.world_size == info.rank:
                    yield _to(batch, info.device)
        return folder_pass

    arrays = it.render_share(cfg, info.rank, info.world_size)
    n = len(arrays["image"])
    if n < bs:
        raise ValueError(f"rank {info.rank} rendered {n} crops, fewer than data.batch_size {bs}: "
                         "raise image_data.max_frames or lower the batch size")
    print(f"[{worker.tag}] rank {info.rank}: {n} training crops", flush=True)
    g = worker.generator

    def render_pass() -> Iterator[Batch]:
        order = torch.randperm(n, generator=g, device=g.device).cpu().numpy()
        for s in range(0, n - bs + 1, bs):
            yield it.to_batch(arrays, order[s:s + bs], info.device)
    return render_pass


def test_passes(worker: Worker) -> Callable[[], Iterator[Batch]]:
    """``make_iter`` over the test split on the main rank (nothing elsewhere, nor without one)."""
    cfg, info = worker.cfg, worker.info
    if not worker.strategy.is_main:
        return lambda: iter(())
    settings = it.image_data_settings(cfg)
    bs = int(cfg.data.batch_size)
    if settings["source"] == "folder":
        if not settings.get("test_labels"):
            return lambda: iter(())
        make = it.folder_batches(settings["test_labels"], cfg, False, 0)
        return lambda: (_to(b, info.device) for b in make())
    arrays = it.render_test(cfg)
    if arrays is None:
        return lambda: iter(())
    return lambda: it.ordered_batches(arrays, bs, info.device)


def _broadcast(value: Any, worker: Worker) -> Any:
    """Rank 0's picklable ``value`` on every rank (each reports the same metrics)."""
    if worker.info.world_size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def validate_images(worker: Worker, batches: Iterator[Batch]) -> dict[str, float]:
    """Test-split metrics from the main rank (MPJPE / P-MPJPE of each output, background
    attention shares) as ``test_*``, and the stage's MPJPE as ``val_mpjpe`` (NaN without a
    test split), the same on every rank."""
    model = worker.strategy.unwrapped()
    was_training = model.training
    result: dict[str, float] = {}
    if worker.strategy.is_main:
        batches = iter(batches)
        first = next(batches, None)
        if first is not None:
            def all_batches() -> Iterator[Batch]:
                yield first
                yield from batches
            result = it.evaluate(model, all_batches(), it.attention_radius(worker.cfg),
                                 worker.strategy.prepare_inputs)
    model.train(was_training)
    result = _broadcast(result, worker)
    key = "coarse" if it.lift_stage(worker.cfg) == 1 else "refined"
    out = {f"test_{k}": float(v) for k, v in result.items()}
    out["val_mpjpe"] = float(result.get(f"{key}_mpjpe", math.nan))
    return out


def image_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point Ray Train runs on every worker; ``config`` is :func:`image_config`'s dict."""
    cfg = config_from_loop_dict(config)
    n = it.lift_stage(cfg)
    worker = setup_worker(cfg, build=build_image_model, find_unused_parameters=True,
                          name=f"image-lift s{n}")
    worker.extra["checkpoint_meta"] = {"lift_stage": n}
    train_iter, test_iter = training_passes(worker), test_passes(worker)
    scratch = Path(tempfile.mkdtemp(prefix=f"raypose-ckpt-r{worker.info.rank}-"))
    try:
        run_epochs(worker, train_iter, test_iter, lambda w, e, m: report(w, e, m, scratch),
                   step=image_step, validation=validate_images)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
