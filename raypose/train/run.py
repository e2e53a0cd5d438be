"""Assemble and run a ``TorchTrainer`` for one stage; return where its checkpoint lives.

``pretrain(cfg)`` and ``finetune(cfg)`` differ only in the stage written into the config the
workers receive. Resuming is re-running with the same ``train.run_name`` and
``train.storage_path``: Ray Train hands the workers the run's latest checkpoint.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Optional

from raypose.config import Config
from raypose.train.loop import metric_name, train_loop_per_worker

S3_PREFIX = "s3://"


def ensure_ray(num_cpus: Optional[int] = None) -> None:
    """Connect to the cluster in RAY_ADDRESS (e.g. under ``ray job submit``) or start one locally."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto")
    else:
        # "local": a new instance, never a cluster some earlier `ray start` left recorded on this
        # machine (a stopped one made ray.init() wait for its GCS forever)
        # the dashboard serves the state API that Ray Train's PlacementGroupCleaner polls: without
        # it the cleaner logs "Failed to query Ray Train Controller actor state" every second
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")


def storage(cfg: Config) -> tuple[Optional[str], Any, str]:
    """(storage_path for RunConfig, filesystem or None, URI prefix for reporting paths).

    ``s3://bucket/prefix`` becomes ``bucket/prefix`` on a pyarrow S3FileSystem (with the
    endpoint override for local S3 servers) — Ray 2.60 wants no scheme with an explicit
    filesystem. '' keeps Ray's default (``~/ray_results``).
    """
    path = cfg.train.storage_path
    if not path:
        return None, None, ""
    if path.startswith(S3_PREFIX):
        import pyarrow.fs as pafs

        endpoint = cfg.train.s3_endpoint or cfg.data.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
        fs = pafs.S3FileSystem(endpoint_override=endpoint or None)
        return path[len(S3_PREFIX):].rstrip("/"), fs, S3_PREFIX
    return os.path.abspath(os.path.expanduser(path)), None, ""


def run_name(cfg: Config, stage: str) -> str:
    return cfg.train.run_name or f"{stage}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_directory(cfg: Config, stage: str) -> str:
    """Where the run's checkpoints go: ``storage_path/run_name`` (an s3:// URI, or a local
    path; Ray's default root ``~/ray_results`` when no storage_path is set)."""
    path, _, prefix = storage(cfg)
    return f"{prefix}{path or os.path.expanduser('~/ray_results')}/{run_name(cfg, stage)}"


def scaling_config(cfg: Config):
    from ray.train import ScalingConfig

    resources: dict[str, float] = {"CPU": float(cfg.train.cpus_per_worker)}
    if cfg.train.use_gpu:
        resources["GPU"] = 1.0
    return ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu,
                         resources_per_worker=resources)


def run_config(cfg: Config, stage: str, callbacks: Optional[list[Any]] = None):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    path, fs, _ = storage(cfg)
    return RunConfig(
        name=run_name(cfg, stage), storage_path=path, storage_filesystem=fs,
        failure_config=FailureConfig(max_failures=cfg.train.max_failures), callbacks=callbacks,
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints,
                                           checkpoint_score_attribute=metric_name(stage),
                                           checkpoint_score_order="min"))


def datasets(cfg: Config) -> dict[str, Any]:
    """Train and val Ray Datasets (the test split never reaches training)."""
    from raypose.data.pipeline import build_datasets

    all_splits = build_datasets(cfg.data, seed=cfg.train.seed)
    out = {"train": all_splits["train"], "val": all_splits["val"]}
    out["val"].context.execution_options.preserve_order = True  # the capped val subset is stable
    if not os.environ.get("RAYPOSE_DATA_PROGRESS_BARS"):
        for ds in out.values():  # the per-epoch lines are the progress display
            ds.context.enable_progress_bars = False
    return out


def check_data(cfg: Config) -> dict[str, list[str]]:
    """Every split's subjects over all sources; unknown names or no training data raise
    :class:`~raypose.errors.ConfigError` here, before Ray starts (not 0 steps and a NaN loss)."""
    from raypose.data.pipeline import check_root_3d, check_splits

    if cfg.model.trajectory and cfg.train.stage == "finetune":
        check_root_3d(cfg.data)
    return check_splits(cfg.data)


def check_init(cfg: Config) -> None:
    """Load ``train.init`` into the lifting model once on the driver: its report (loaded,
    resampled, skipped) is printed, and a checkpoint that does not fit fails before Ray starts."""
    from raypose.train.loop import build_model

    build_model(cfg, "finetune", verbose=True)


def stage_config(cfg: Config, stage: str) -> Config:
    """``cfg`` with ``train.stage`` set and that stage's ``train.stage_overrides`` applied."""
    return cfg.with_overrides({"train.stage": stage, **cfg.train.stage_overrides.get(stage, {})})


def make_trainer(cfg: Config, stage: str, callbacks: Optional[list[Any]] = None):
    """The ``TorchTrainer`` for ``stage``: only 'train' is split across workers.

    ``callbacks`` go to ``RunConfig.callbacks`` (e.g. Tune's ``TuneReportCallback``).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    staged = stage_config(cfg, stage)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=staged.to_dict(),
        scaling_config=scaling_config(staged),
        run_config=run_config(staged, stage, callbacks),
        datasets=datasets(staged),
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )


def checkpoint_uri(result: Any, stage: str, cfg: Config) -> str:
    """Path/URI of the best checkpoint by the stage's validation metric, else the last one.

    Checkpoints whose metric is not finite (a run without validation subjects reports NaN) are
    not ranked: NaN compares false both ways, so "the best" of them would be arbitrary.
    """
    metric = metric_name(stage)
    scored = [(float(m[metric]), c) for c, m in (getattr(result, "best_checkpoints", None) or [])
              if isinstance(m.get(metric), (int, float)) and math.isfinite(m[metric])]
    best = min(scored, key=lambda x: x[0])[1] if scored else None
    chosen = best or result.checkpoint
    if chosen is None:
        raise RuntimeError(f"{stage} run produced no checkpoint")
    _, _, prefix = storage(cfg)
    return prefix + chosen.path


def check_cpu_budget(cfg: Config, cluster_cpus: float, autoscaling: bool = False,
                     ray_data: bool = True) -> None:
    """Refuse a run whose training workers would take every CPU of the cluster.

    Ray Data's read/chunk tasks need CPUs too; with none left the run logs "Cluster resources
    are not enough to run any task…" once and then hangs forever. A run without Ray Data
    (``ray_data=False``: Lifting by Image on rendered crops) may take them all, but not more.
    An autoscaling cluster can add nodes, so there it is not an error.
    """
    taken = cfg.train.num_workers * cfg.train.cpus_per_worker
    if autoscaling or taken < cluster_cpus or (not ray_data and taken <= cluster_cpus):
        return
    from raypose.errors import ConfigError

    spare = 0.5 if ray_data else 0.0
    fits = max(0.5, math.floor((cluster_cpus - spare) / cfg.train.num_workers * 2) / 2)
    raise ConfigError(
        f"train.num_workers ({cfg.train.num_workers}) × train.cpus_per_worker "
        f"({cfg.train.cpus_per_worker:g}) = {taken:g} CPUs " +
        (f"takes all {cluster_cpus:g} CPUs of the cluster and leaves none for Ray Data"
         if ray_data else f"is more than the cluster's {cluster_cpus:g} CPUs") +
        ", so the run would hang: set "
        f"train.cpus_per_worker={fits:g} (or fewer workers, or add nodes)")


def fit(cfg: Config, stage: str) -> tuple[str, Any]:
    """Run one stage to the end; (checkpoint path/URI, Ray Train Result)."""
    import ray

    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"stage must be pretrain or finetune, got {stage!r}")
    staged = stage_config(cfg, stage)
    check_data(staged)
    if stage == "finetune" and staged.train.init:
        check_init(staged)
    ensure_ray()
    # a cluster joined through RAY_ADDRESS may autoscale; a local Ray has the CPUs it has
    check_cpu_budget(stage_config(cfg, stage), float(ray.cluster_resources().get("CPU", 0.0)),
                     autoscaling=bool(os.environ.get("RAY_ADDRESS")))
    result = make_trainer(cfg, stage).fit()
    return checkpoint_uri(result, stage, stage_config(cfg, stage)), result


def pretrain(cfg: Config) -> str:
    """Masked pose pretraining; returns the checkpoint path/URI."""
    return fit(cfg, "pretrain")[0]


def finetune(cfg: Config) -> str:
    """Lifting fine-tuning (from ``train.init`` when set); returns the best checkpoint path/URI."""
    return fit(cfg, "finetune")[0]


def fit_image_lift(cfg: Config, lift_stage: int, init: str = "") -> tuple[str, Any]:
    """Train one Lifting-by-Image stage on Ray Train (:mod:`raypose.train.image_loop`);
    (best checkpoint path/URI by test MPJPE, Ray Train Result). Stage 2 loads ``init`` (a
    stage-1 checkpoint directory or an older ``stage1.pt``) once here first, so a wrong one
    fails before Ray starts."""
    import ray
    from ray.train.torch import TorchTrainer

    from raypose.image_training import image_data_settings
    from raypose.train.image_loop import STAGE, build_image_model, image_config, image_loop_per_worker

    staged = image_config(cfg, lift_stage, init)
    if lift_stage == 2:
        build_image_model(staged)
    ensure_ray()
    check_cpu_budget(staged, float(ray.cluster_resources().get("CPU", 0.0)),
                     autoscaling=bool(os.environ.get("RAY_ADDRESS")),
                     ray_data=image_data_settings(staged)["source"] == "folder")
    trainer = TorchTrainer(image_loop_per_worker, train_loop_config=staged.to_dict(),
                           scaling_config=scaling_config(staged), run_config=run_config(staged, STAGE))
    result = trainer.fit()
    return checkpoint_uri(result, STAGE, staged), result
