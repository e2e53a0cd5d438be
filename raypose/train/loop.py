"""``train_loop_per_worker``: what every Ray Train worker runs, pretraining or fine-tuning.

One function per concern — set up the worker, build the model, draw batches, take a step,
validate, report — and one switch on ``train.stage``:

- pretraining: masked pose modeling with the registry's pretraining model (masks from
  :func:`raypose.masking.make_masks`; 2D, 2D+3D or hierarchical objectives by model);
- fine-tuning: lifting with multi-frame + single-frame (+ bone) losses, optionally starting
  from a pretraining checkpoint's encoder (``train.init``).

Schedule: the optimizer named by ``optim`` (Adam/AdamW), ×``optim.lr_decay`` per epoch.
Metrics are all-reduced across workers before rank 0 prints and reports them; ``report`` is
called once per epoch (it blocks ~2 s), with a checkpoint every ``train.checkpoint_every``
epochs and at the last one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from raypose import config as config_mod
from raypose.config import Config
from raypose.errors import ConfigError
from raypose.train import checkpoint as ckpt
from raypose.train.strategy import Strategy, WorkerInfo, make_strategy, worker_info

MM = 1000.0


# --------------------------------------------------------------------------------------------
# state of one worker
# --------------------------------------------------------------------------------------------

@dataclass
class Worker:
    cfg: Config
    stage: str
    info: WorkerInfo
    strategy: Strategy
    model: nn.Module
    generator: torch.Generator
    progress: ckpt.Progress
    start_epoch: int = 0
    flops_per_clip: Optional[float] = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: What the per-epoch lines and progress pings call this run ('' = the stage).
    name: str = ""

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def tag(self) -> str:
        return self.name or self.stage


def metric_name(stage: str) -> str:
    """The validation metric checkpoints are ranked by (lower is better)."""
    return "val_mpjpe" if stage == "finetune" else "val_loss"


# --------------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------------

def config_from_loop_dict(config: dict[str, Any]) -> Config:
    """The typed config from ``train_loop_config`` (a ``Config.to_dict()``)."""
    return config_mod.from_dict(config)


def build_model(cfg: Config, stage: str, verbose: bool = False) -> nn.Module:
    """The registry model for ``stage``; fine-tuning loads ``train.init``'s encoder if set
    (what was loaded, resampled and skipped is printed when ``verbose``)."""
    from raypose.models import build_from_config

    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = build_from_config(cfg, stage)
    if stage == "finetune" and cfg.train.init:
        encoder = ckpt.load_encoder(cfg.train.init, storage_endpoint(cfg))
        try:
            report = model.load_pretrained(encoder, strict=cfg.train.init_strict)
        except ConfigError as e:
            raise ConfigError(f"train.init {cfg.train.init}: {e}") from None
        if verbose:
            for line in report.lines():
                print(f"[finetune] train.init: {line}", flush=True)
    return model


def storage_endpoint(cfg: Config) -> str:
    return cfg.train.s3_endpoint or cfg.data.s3_endpoint


def build_optimizer(cfg: Config, model: nn.Module
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam/AdamW (a torch optimizer, so DeepSpeed compiles nothing), exponential decay per epoch.

    Only parameters that require gradients are optimized: a model that freezes part of itself
    (Lifting by Image's stage 2) must not hand frozen tensors to DeepSpeed's ZeRO partitioning.
    """
    o = cfg.optim
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    optimizer = cls([p for p in model.parameters() if p.requires_grad], lr=o.lr, betas=tuple(o.betas),
                    weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=o.lr_decay)
    return optimizer, scheduler


def make_generator(cfg: Config, info: WorkerInfo) -> torch.Generator:
    """This rank's generator for clips, flips, noise and masks (seed and rank derived)."""
    g = torch.Generator(device=info.device)
    g.manual_seed(int(cfg.train.seed) * 1_000_003 + 7919 * info.rank + 1)
    return g


def setup_worker(cfg: Config, info: Optional[WorkerInfo] = None,
                 build: Optional[Callable[[Config, str], nn.Module]] = None,
                 find_unused_parameters: Optional[bool] = None, name: str = "") -> Worker:
    """Model, optimizer, strategy and — when Ray Train hands one back — the restored state.

    ``build`` replaces the registry model (:func:`build_model`) for loops that train something
    else on the same machinery (:mod:`raypose.train.image_loop`); ``find_unused_parameters``
    defaults to pretraining's need (masked objectives leave parameters unused).
    """
    info = info or worker_info(cfg.train.use_gpu)
    stage = cfg.train.stage
    if cfg.train.torch_threads > 0:
        torch.set_num_threads(cfg.train.torch_threads)
    if cfg.train.use_gpu and info.device.type == "cuda":
        torch.cuda.set_device(info.device)
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    model = (build or build_model)(cfg, stage)
    optimizer, scheduler = build_optimizer(cfg, model)
    unused = (stage == "pretrain") if find_unused_parameters is None else find_unused_parameters
    strategy = make_strategy(cfg, info, find_unused_parameters=unused)
    model = strategy.setup(model, optimizer, scheduler)
    generator = make_generator(cfg, info)
    progress = ckpt.Progress()
    resumed = latest_checkpoint_dir()
    if resumed is not None:
        with resumed as directory:
            progress = ckpt.restore(directory, strategy, generator)
    worker = Worker(cfg, stage, info, strategy, model, generator, progress, start_epoch=progress.epoch,
                    name=name)
    worker.flops_per_clip = flops_per_clip(strategy.unwrapped(), cfg, stage) if info.device.type == "cuda" else None
    return worker


def latest_checkpoint_dir():
    """A context manager yielding the directory of Ray Train's latest checkpoint, or None."""
    try:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
    except RuntimeError:
        return None
    return checkpoint.as_directory() if checkpoint is not None else None


# --------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------

def _all_true(flag: bool, info: WorkerInfo) -> bool:
    """Logical AND of ``flag`` over ranks (so all ranks stop an epoch at the same step)."""
    if info.world_size == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32,
                     device=info.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def cycle(make_iter) -> Iterator[dict[str, torch.Tensor]]:
    """Batches forever: a fresh pass over the shard each time one ends."""
    while True:
        n = 0
        for batch in make_iter():
            n += 1
            yield batch
        if n == 0:
            raise RuntimeError("the training shard is empty (no training subjects?)")


def epoch_batches(source: Iterator[dict[str, torch.Tensor]], micro_steps: Optional[int],
                  info: WorkerInfo) -> Iterator[tuple[dict[str, torch.Tensor], bool]]:
    """(batch, is_last) for one epoch: ``micro_steps`` batches, or until any rank runs out.

    With ``micro_steps`` the source is endless (:func:`cycle`), so every rank takes exactly that
    many and no collective is needed; a one-pass epoch looks one batch ahead and agrees with the
    other ranks at each step, so the last micro-step of an epoch is known before its forward.
    """
    if micro_steps is not None:
        for i in range(micro_steps):
            yield next(source), i == micro_steps - 1
        return
    current = next(source, None)
    while _all_true(current is not None, info):
        nxt = next(source, None)
        last = not _all_true(nxt is not None, info)
        yield current, last
        if last:
            return
        current = nxt


def micro_steps_per_epoch(cfg: Config) -> Optional[int]:
    return cfg.train.steps_per_epoch * cfg.train.grad_accum if cfg.train.steps_per_epoch > 0 else None


# --------------------------------------------------------------------------------------------
# one step
# --------------------------------------------------------------------------------------------

def _float_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in outputs.items()}


def forward_loss(worker: Worker, model: nn.Module, clips, masks=None, step: int = 0
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Model outputs → (total loss, parts) for the worker's stage."""
    from raypose.losses import compute_losses

    s = worker.strategy
    pose_2d = s.prepare_inputs(clips.pose_2d)
    if worker.stage == "pretrain":
        # the 3D pose is an input only to objectives that score 3D (MPM's masked-3D steps): with
        # loss.rec_3d = 0 it is withheld, so such a model pretrains on masked 2D alone
        pose_3d = s.prepare_inputs(clips.pose_3d) if worker.cfg.loss.rec_3d > 0 else None
        outputs = model(pose_2d, masks, pose_3d, step)
    else:
        outputs = model(pose_2d, clips.confidence <= 0)
    return compute_losses(_float_outputs(outputs), clips, masks, worker.cfg.loss)


def draw_masks(worker: Worker, clips, generator: torch.Generator):
    from raypose.masking import make_masks

    return make_masks(clips.num_clips, clips.num_frames, worker.cfg.masking, generator,
                      worker.device, clips.confidence)


def strategy_step(worker: Worker, last: bool,
                  compute: Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]]
                  ) -> dict[str, torch.Tensor]:
    """One micro-step through the strategy: ``compute()`` (forward → loss, parts) under its
    forward context, backward, and the optimizer step at an accumulation boundary."""
    s = worker.strategy
    s.begin_micro_step(last)
    with s.forward_context():
        loss, parts = compute()
        s.backward(loss)
    if s.step():
        worker.progress.step += 1
    return parts


#: A loop's micro-step: (worker, batch, is_last_of_epoch) → (samples used, loss parts incl. 'total').
StepFn = Callable[[Worker, dict[str, torch.Tensor], bool], tuple[int, dict[str, torch.Tensor]]]


def train_step(worker: Worker, chunks: dict[str, torch.Tensor], last: bool
               ) -> tuple[int, dict[str, torch.Tensor]]:
    """One micro-step: clips → (masks) → forward → backward → (optimizer step). Returns clips used."""
    from raypose.data.clips import train_clips

    clips = train_clips(chunks, worker.cfg.data, worker.generator)
    masks = draw_masks(worker, clips, worker.generator) if worker.stage == "pretrain" else None
    parts = strategy_step(worker, last, lambda: forward_loss(worker, worker.model, clips, masks,
                                                             worker.strategy.micro_steps))
    return clips.num_clips, parts


# --------------------------------------------------------------------------------------------
# one epoch
# --------------------------------------------------------------------------------------------

def maybe_fail(worker: Worker, epoch: int, steps_done: int) -> None:
    """Fault injection for tests (``train.fail_at_epoch``): the last rank dies once, mid-epoch.

    Only in an attempt that started before that epoch, so the restarted attempt (which resumes
    at or after it) does not fail again. Ray Train V2 registers a reported checkpoint only when
    its controller next polls the worker (every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``); a process
    that dies a few milliseconds after ``report()`` can take the report with it, so the injected
    fault first waits out a few polls — the fault being modelled is a crash *after* the last
    checkpoint was committed.
    """
    at = worker.cfg.train.fail_at_epoch
    if (at >= 0 and epoch == at and steps_done == 1 and worker.start_epoch < at
            and worker.info.rank == worker.info.world_size - 1):
        poll_s = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0"))
        time.sleep(3 * poll_s + 0.5)
        print(f"[raypose] fault injection: rank {worker.info.rank} exits at epoch {epoch}", flush=True)
        os._exit(1)


def progress_pinger(worker: Worker, epoch: int, t0: float):
    """``ping(step, clips, loss)``: on the main rank, when the driver's console asked for it
    (:data:`raypose.console.PINGS_ENV`), a tagged line at most every second for its live
    progress bar; otherwise nothing. ``loss()`` is called only then (it waits for the device)."""
    from raypose.console import PINGS_ENV, PROGRESS_TAG

    if not (worker.strategy.is_main and os.environ.get(PINGS_ENV) == "1"):
        return lambda step, clips, loss: None
    total = micro_steps_per_epoch(worker.cfg)
    last = [t0]

    def ping(step: int, clips: int, loss: Callable[[], float]) -> None:
        now = time.perf_counter()
        if now - last[0] >= 1.0 or step == total:
            last[0] = now
            print(PROGRESS_TAG + json.dumps({"stage": worker.tag, "epoch": epoch + 1,
                                             "epochs": worker.cfg.train.epochs, "step": step,
                                             "steps": total, "loss": round(loss(), 5),
                                             "samples_per_s": round(clips / max(now - t0, 1e-9), 1)}),
                  flush=True)
    return ping


def weighted_sums(steps: list[tuple[int, dict[str, torch.Tensor]]],
                  keys: Optional[Sequence[str]] = None) -> dict[str, float]:
    """Σ clips × part over the steps so far, per loss part (one host read per part). A part
    that only some steps have (MPM alternates masked-2D and masked-3D steps) sums over those."""
    names = keys if keys is not None else list(dict.fromkeys(k for _, p in steps for k in p))
    out = {}
    for k in names:
        have = [(n, p[k]) for n, p in steps if k in p]
        if have:
            clips = torch.tensor([n for n, _ in have], dtype=torch.float64)
            out[k] = float((torch.stack([v for _, v in have]).double().cpu() * clips).sum())
    return out


def train_epoch(worker: Worker, source: Iterator[dict[str, torch.Tensor]], epoch: int,
                step: StepFn = train_step) -> dict[str, float]:
    """Train one epoch of ``step``s; returns sums all-reduced over ranks (loss, clips, seconds)."""
    worker.model.train()
    steps: list[tuple[int, dict[str, torch.Tensor]]] = []   # device scalars, summed once per epoch
    clips_seen, micro = 0, 0
    sync = worker.device.type == "cuda"
    t0 = time.perf_counter()
    ping = progress_pinger(worker, epoch, t0)
    for chunks, last in epoch_batches(source, micro_steps_per_epoch(worker.cfg), worker.info):
        n, parts = step(worker, chunks, last)
        micro += 1
        clips_seen += n
        steps.append((n, parts))
        ping(micro, clips_seen, lambda: weighted_sums(steps, ("total",))["total"] / max(clips_seen, 1))
        maybe_fail(worker, epoch, micro)
    if sync:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    totals = weighted_sums(steps)
    reduced = all_reduce_sums({**totals, "clips": float(clips_seen)}, worker.info)
    total_clips = max(reduced.pop("clips"), 1.0)
    out = {f"train_{k}": v / total_clips for k, v in reduced.items()}
    out["loss"] = out.pop("train_total", float("nan"))
    out["train_clips"] = total_clips
    out["train_seconds"] = all_reduce_max(seconds, worker.info)
    out["samples_per_s"] = total_clips / max(out["train_seconds"], 1e-9)
    out["micro_steps"] = float(micro)
    return out


# --------------------------------------------------------------------------------------------
# collectives
# --------------------------------------------------------------------------------------------

def _reduce(values: list[float], info: WorkerInfo, op: str) -> list[float]:
    if info.world_size == 1:
        return values
    import torch.distributed as dist

    device = info.device if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.cpu().tolist()


def all_reduce_sums(values: dict[str, float], info: WorkerInfo) -> dict[str, float]:
    """Sum each named value over ranks (same keys on every rank, sorted for a fixed order)."""
    keys = sorted(values)
    return dict(zip(keys, _reduce([float(values[k]) for k in keys], info, "sum")))


def all_reduce_max(value: float, info: WorkerInfo) -> float:
    return _reduce([float(value)], info, "max")[0]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

def owned_clips(clips, chunks: dict[str, torch.Tensor]):
    """Keep clips centred on frames their chunk owns (chunks overlap by the clip context)."""
    c, f = clips.chunk_index, clips.frame_index
    keep = chunks["has_3d"].bool()[c]
    if "centre_start" in chunks:
        keep &= (f >= chunks["centre_start"][c]) & (f < chunks["centre_stop"][c])
    return keep


def _select(clips, keep: torch.Tensor):
    from dataclasses import fields, replace

    return replace(clips, **{fl.name: getattr(clips, fl.name)[keep] for fl in fields(clips)
                             if isinstance(getattr(clips, fl.name), torch.Tensor)})


def predict_outputs(model: nn.Module, clips, flip: bool, prepare=lambda x: x) -> dict[str, torch.Tensor]:
    """Every output of the lifting model on ``clips`` (flip-averaged on request)."""
    from raypose.models import flip_average

    missing = clips.confidence <= 0
    pose_2d = prepare(clips.pose_2d)
    return flip_average(model, pose_2d, missing) if flip else model(pose_2d, missing)


def centre_pose(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 17, 3) the centre-frame pose of :func:`predict_outputs`, root joint set to 0."""
    pred = out["centre"][:, 0].float().clone()
    pred[:, 0] = 0.0
    return pred


def predict_centre(model: nn.Module, clips, flip: bool, prepare=lambda x: x) -> torch.Tensor:
    """(N, 17, 3) centre-frame predictions, root joint set to 0 (targets are root-relative)."""
    return centre_pose(predict_outputs(model, clips, flip, prepare))


def centre_error(pred: torch.Tensor, clips) -> torch.Tensor:
    """(N,) mean joint error (m) of centre frames over the joints whose 3D target is known
    (``valid_3d``): a missing mocap joint neither counts as error nor turns the mean into NaN."""
    err = torch.linalg.vector_norm(pred - clips.centre, dim=-1)                     # (N, 17)
    if clips.valid_3d is None:
        return err.mean(-1)
    known = clips.valid_3d[:, clips.centre_index].to(err.dtype)
    return (err * known).sum(-1) / known.sum(-1).clamp_min(1.0)


@torch.no_grad()
def validate(worker: Worker, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Val-split metric, all-reduced: MPJPE (mm, centre frames) or masked-modeling loss.

    Every frame of the val chunks is a centre, up to ``train.val_max_clips`` clips over all
    ranks; rank r takes every world_size-th batch so ranks see disjoint data. Masks for the
    pretraining loss come from a generator seeded by the config, so the number is comparable
    across epochs.
    """
    from raypose.data.clips import eval_clips

    cfg, info = worker.cfg, worker.info
    model = worker.strategy.unwrapped()
    was_training = model.training
    model.eval()
    cap = max(1, cfg.train.val_max_clips // info.world_size)
    g = torch.Generator(device=info.device)
    g.manual_seed(cfg.train.seed + 12345 + info.rank)
    total, count = 0.0, 0
    for b, chunks in enumerate(batches):
        if count >= cap:
            break
        if b % info.world_size != info.rank:
            continue
        for clips in eval_clips(chunks, cfg.data):
            clips = _select(clips, owned_clips(clips, chunks))
            if clips.num_clips == 0:
                continue
            if count + clips.num_clips > cap:
                clips = _select(clips, torch.arange(clips.num_clips, device=info.device) < cap - count)
            if worker.stage == "finetune":
                pred = predict_centre(model, clips, cfg.train.flip_test, worker.strategy.prepare_inputs)
                total += float(centre_error(pred, clips).sum()) * MM
            else:
                masks = draw_masks(worker, clips, g)
                loss, _ = forward_loss(worker, model, clips, masks, step=0)
                total += float(loss) * clips.num_clips
            count += clips.num_clips
            if count >= cap:
                break
    model.train(was_training)
    reduced = all_reduce_sums({"total": total, "count": float(count)}, info)
    value = reduced["total"] / reduced["count"] if reduced["count"] > 0 else float("nan")
    return {metric_name(worker.stage): value, "val_clips": reduced["count"]}


# --------------------------------------------------------------------------------------------
# throughput
# --------------------------------------------------------------------------------------------

#: Dense peak FLOP/s per GPU: (fp32, tf32, bf16).
GPU_PEAK_FLOPS = {
    "H200": (67e12, 494.7e12, 989.4e12),
    "H100": (67e12, 494.7e12, 989.4e12),
    "A100": (19.5e12, 156e12, 312e12),
    "L4": (30.3e12, 60e12, 121e12),
    "A10": (31.2e12, 62.5e12, 125e12),
}


def gpu_peak_flops(device: torch.device, precision: str) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (fp32, tf32, bf16) in GPU_PEAK_FLOPS.items():
        if key in name:
            if precision == "bf16":
                return bf16
            return tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32
    return None


def flops_per_clip(model: nn.Module, cfg: Config, stage: str) -> Optional[float]:
    """Forward FLOPs of one clip (the models' ``count_flops``; pretraining: unmasked upper bound)."""
    try:
        from raypose.models import count_flops
    except ImportError:
        return None
    try:
        per_frame = count_flops(model, cfg.data.num_frames)
    except Exception:  # a model the counter cannot run unmasked
        return None
    return float(per_frame) * (cfg.data.num_frames if stage == "pretrain" else 1)


def mfu(worker: Worker, samples_per_s: float) -> Optional[float]:
    """Model FLOPs utilisation: 3 × forward FLOPs (forward + backward) per clip vs peak."""
    peak = gpu_peak_flops(worker.device, worker.cfg.train.precision)
    if peak is None or not worker.flops_per_clip:
        return None
    return 3.0 * worker.flops_per_clip * samples_per_s / (peak * worker.info.world_size)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_line(worker: Worker, epoch: int, metrics: dict[str, float], eta_s: float) -> str:
    name = metric_name(worker.stage)
    val = metrics.get(name, float("nan"))
    unit = " mm" if name == "val_mpjpe" else ""
    line = (f"[{worker.tag}] epoch {epoch + 1}/{worker.cfg.train.epochs} step {worker.progress.step} "
            f"loss {metrics['loss']:.4f} {name} {val:.2f}{unit} samples/s {metrics['samples_per_s']:.1f} "
            f"lr {metrics['lr']:.2e} eta {_fmt_time(eta_s)}")
    if metrics.get("mfu") is not None:
        line += f" mfu {100 * metrics['mfu']:.1f}%"
    return line


def checkpoint_due(cfg: Config, epoch: int) -> bool:
    return (epoch + 1) % max(1, cfg.train.checkpoint_every) == 0 or epoch + 1 == cfg.train.epochs


def report(worker: Worker, epoch: int, metrics: dict[str, Any], scratch: Path) -> None:
    """``ray.train.report`` once per epoch; a checkpoint when due (collective write first).
    ``worker.extra['checkpoint_meta']`` (if any) goes into the checkpoint's meta."""
    import ray.train

    checkpoint = None
    if checkpoint_due(worker.cfg, epoch) or metrics.get("plateaued"):
        directory = ckpt.write_checkpoint(scratch / f"epoch{epoch:04d}-rank{worker.info.rank}",
                                          worker.strategy, worker.progress, worker.cfg,
                                          worker.stage, worker.generator,
                                          worker.extra.get("checkpoint_meta"))
        checkpoint = ray.train.Checkpoint.from_directory(str(directory))
    clean = {k: v for k, v in metrics.items() if v is not None}
    ray.train.report(clean, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint_epoch{epoch:04d}",
                     delete_local_checkpoint_after_upload=checkpoint is not None)


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------

def dataset_iterators(worker: Worker):
    """(make_train_iter, make_val_iter) over this worker's Ray Data shards."""
    import ray.train

    from raypose.data.pipeline import CachedPasses, iter_device_batches

    train = ray.train.get_dataset_shard("train")
    val = ray.train.get_dataset_shard("val")
    data, device = worker.cfg.data, worker.device
    seed = worker.cfg.train.seed * 1_000_003 + 7919 * worker.info.rank

    def stream_train():
        return iter_device_batches(train, data, device, shuffle=True, seed=seed)

    def stream_val():
        return iter_device_batches(val, data, device) if val is not None else iter(())

    # after the first pass, a shard that fits stays on this worker: no Ray Data execution per pass
    return (CachedPasses(stream_train, data.worker_cache_mb, data.batch_size, True, seed),
            CachedPasses(stream_val, data.worker_cache_mb, data.batch_size, False, 0))


def plateaued(values: list[float], patience: int, delta: float) -> bool:
    """True when none of the last ``patience`` values beat the best before them by more than
    ``delta`` (relative): the early-stopping rule of ``train.plateau_patience``. Non-finite
    values (no validation split) never count as a plateau."""
    if patience <= 0 or len(values) <= patience:
        return False
    before, recent = values[:-patience], values[-patience:]
    finite = [v for v in before if math.isfinite(v)]
    if not finite or not all(math.isfinite(v) for v in recent):
        return False
    return min(recent) > min(finite) * (1.0 - delta)


def run_epochs(worker: Worker, train_iter, val_iter, emit, step: StepFn = train_step,
               validation: Optional[Callable[[Worker, Iterator[Any]], dict[str, float]]] = None) -> None:
    """Epochs ``start_epoch`` … ``epochs − 1``: train, decay lr, validate, emit metrics.

    ``step`` and ``validation`` (default :func:`train_step`, :func:`validate`) let another
    model's loop (:mod:`raypose.train.image_loop`) keep the schedule, metrics and reporting.
    """
    cfg = worker.cfg
    if plateaued([h[metric_name(worker.stage)] for h in worker.progress.history],
                 cfg.train.plateau_patience, cfg.train.plateau_delta):
        return  # resumed from the checkpoint of a run that had stopped on its plateau
    source = cycle(train_iter) if cfg.train.steps_per_epoch > 0 else None
    durations: list[float] = []
    for epoch in range(worker.start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        epoch_source = source if source is not None else iter(train_iter())
        metrics: dict[str, Any] = train_epoch(worker, epoch_source, epoch, step)
        metrics["lr"] = worker.strategy.lr()
        worker.strategy.scheduler_step()
        metrics.update((validation or validate)(worker, val_iter()))
        metrics["mfu"] = mfu(worker, metrics["samples_per_s"])
        worker.progress.epoch = epoch + 1
        value = metrics[metric_name(worker.stage)]
        if math.isfinite(value):
            worker.progress.best = min(worker.progress.best, value)
        metrics.update(epoch=epoch, step=worker.progress.step, stage=worker.stage,
                       world_size=worker.info.world_size, attempt_start_epoch=worker.start_epoch)
        worker.progress.history.append({"epoch": epoch, "step": worker.progress.step,
                                        "loss": float(metrics["loss"]),
                                        metric_name(worker.stage): float(value),
                                        "lr": float(metrics["lr"]),
                                        "samples_per_s": float(metrics["samples_per_s"])})
        durations.append(time.perf_counter() - t0)
        eta = (sum(durations) / len(durations)) * (cfg.train.epochs - epoch - 1)
        metrics["eta_s"] = eta
        curve = [h[metric_name(worker.stage)] for h in worker.progress.history]
        metrics["plateaued"] = plateaued(curve, cfg.train.plateau_patience, cfg.train.plateau_delta)
        if worker.strategy.is_main:
            print(progress_line(worker, epoch, metrics, eta), flush=True)
        emit(worker, epoch, metrics)
        if metrics["plateaued"]:
            # the metric is all-reduced, so every rank stops at the same epoch
            if worker.strategy.is_main:
                print(f"[{worker.stage}] validation {metric_name(worker.stage)} has plateaued "
                      f"({cfg.train.plateau_patience} epochs without a {cfg.train.plateau_delta:.0%} "
                      f"gain): stopping after epoch {epoch + 1} of {cfg.train.epochs}", flush=True)
            break


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point Ray Train runs on every worker; ``config`` is a ``Config.to_dict()``."""
    import tempfile

    cfg = config_from_loop_dict(config)
    worker = setup_worker(cfg)
    train_iter, val_iter = dataset_iterators(worker)
    scratch = Path(tempfile.mkdtemp(prefix=f"raypose-ckpt-r{worker.info.rank}-"))
    try:
        run_epochs(worker, train_iter, val_iter, lambda w, e, m: report(w, e, m, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
