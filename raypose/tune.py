"""Ray Tune search over masking ratios and loss weights, judged by the fine-tuned error.

Every trial is the whole two-stage recipe in miniature: a short masked **pretraining** with the
trial's masks (ratio, joints, strategy/levels) and reconstruction weights, then a short
**fine-tuning** from that checkpoint with the trial's lifting weights. The objective is the
fine-tuned model's **validation** MPJPE (mm) — the test split never reaches a trial
(:func:`raypose.train.run.datasets` hands the trainers train and val only).

Ray 2.60 pattern: the Tune trainable is a plain function (:func:`run_trial`, 0.1 CPU) that
drives two ``TorchTrainer``s; the fine-tuning one carries a ``TuneReportCallback`` that forwards
each epoch's report to Tune with ``finetune_epoch`` added — the clock ASHA stops trials on.
Each trial's Train runs are named after its trial id (``<id>-pretrain`` / ``<id>-finetune``
under ``<storage>/<name>/trials``), so a trial restarted by ``Tuner.restore`` or Tune's
failure handling skips a finished pretraining (a ``done.json`` beside its checkpoints) and
resumes its fine-tuning from the latest checkpoint.

Results (:func:`write_results`): ``trials.csv`` / ``trials.json`` (params → val MPJPE, epochs,
time), ``best_finetune.yaml`` (a ready-to-run fine-tuning config: the base config with the best
params and ``train.init`` = that trial's pretraining checkpoint) and ``mask_ratios.png`` (error
over temporal ratio × spatial joints).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from raypose import config as config_mod
from raypose.config import Config
from raypose.errors import ConfigError

METRIC = "val_mpjpe"
MODE = "min"
#: ASHA's clock: fine-tuning epochs completed (1-based), added by the report callback.
TIME_ATTR = "finetune_epoch"
#: CPU the trial function itself holds (Ray 2.60 rejects 0); the trainers reserve their own.
DRIVER_CPU = 0.1
#: CPUs left free for Ray Data tasks when deriving concurrency from the cluster's size.
DATA_CPU_RESERVE = 1.0
#: The two axes of the error plot (P-STMO Fig. 5, MPM Fig. 6).
PLOT_AXES = ("masking.temporal_ratio", "masking.spatial_joints")
DONE_FILE = "done.json"
SPACE_TYPES = ("uniform", "loguniform", "randint", "choice")

#: The papers' settings, tried first (``tune.points_to_evaluate`` overrides these). Keys not in
#: the search space are dropped when the points are built.
PAPER_POINTS: list[dict[str, Any]] = [
    # P-STMO (Shan et al. 2022, Fig. 5): q_T = 0.8, m_S = 2, 2D reconstruction only (its 3D
    # weight sits at the log-uniform space's floor, 0.1, so every searcher accepts the point).
    {"masking.strategy": "spatiotemporal", "masking.temporal_ratio": 0.8,
     "masking.spatial_joints": 2, "loss.rec_2d": 1.0, "loss.rec_3d": 0.1},
    # MPM (Zhang et al. 2022, Fig. 6): 60 % of frames and 5 of 17 joints, λ2D = 2, λ3D = 3.
    {"masking.strategy": "spatiotemporal", "masking.temporal_ratio": 0.6,
     "masking.spatial_joints": 5, "loss.rec_2d": 2.0, "loss.rec_3d": 3.0},
    # APTPose (Yan et al.): hierarchical keypoint/bone/limb/body masking, λ2D = λ3D = 1.
    {"masking.strategy": "hierarchical", "masking.temporal_ratio": 0.8,
     "masking.spatial_joints": 2, "loss.rec_2d": 1.0, "loss.rec_3d": 1.0},
]


# --------------------------------------------------------------------------------------------
# search space
# --------------------------------------------------------------------------------------------

def _spec_error(key: str, spec: Any, problem: str) -> ConfigError:
    return ConfigError(f"tune.space.{key}: {problem} (got {spec!r})")


def check_space(cfg: Config) -> None:
    """Every space key names a config leaf and every spec is well formed (fail before Ray)."""
    base = cfg.to_dict()
    for key, spec in cfg.tune.space.items():
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise _spec_error(key, spec, f"needs type one of {list(SPACE_TYPES)}")
        kind = spec["type"]
        if kind == "choice":
            if not isinstance(spec.get("values"), list) or not spec["values"]:
                raise _spec_error(key, spec, "choice needs a non-empty 'values' list")
        else:
            if "low" not in spec or "high" not in spec or not spec["low"] < spec["high"]:
                raise _spec_error(key, spec, "needs low < high")
            if kind == "loguniform" and spec["low"] <= 0:
                raise _spec_error(key, spec, "loguniform needs low > 0")
        if "grid" in spec and not (isinstance(spec["grid"], list) and spec["grid"]):
            raise _spec_error(key, spec, "'grid' must be a non-empty list")
        node: Any = base
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"tune.space: {key!r} is not a config key")
            node = node[part]
    for sample in _space_examples(cfg):  # every value must also pass the config's own checks
        cfg.with_overrides(sample)


def _space_examples(cfg: Config) -> list[dict[str, Any]]:
    """Corner values of the space (low/high, every choice), to validate against the config."""
    out = []
    for key, spec in cfg.tune.space.items():
        if spec["type"] == "choice":
            values = spec["values"]
        elif spec["type"] == "randint":
            values = [int(spec["low"]), int(spec["high"]) - 1]  # high is exclusive (Tune)
        else:
            values = [spec["low"], spec["high"] * (1 - 1e-9)]
        out += [{key: v} for v in values + list(spec.get("grid", []))]
    return out


def domain(key: str, spec: dict[str, Any], grid: bool = False) -> Any:
    """One Tune domain from a YAML spec. With ``grid``, ``choice``/``randint`` become grid axes,
    as do specs that list ``grid: [...]``; other continuous specs stay random samples."""
    from ray import tune

    kind = spec["type"]
    if grid and "grid" in spec:
        return tune.grid_search(list(spec["grid"]))
    if kind == "choice":
        return tune.grid_search(list(spec["values"])) if grid else tune.choice(list(spec["values"]))
    if kind == "randint":
        low, high = int(spec["low"]), int(spec["high"])
        return tune.grid_search(list(range(low, high))) if grid else tune.randint(low, high)
    if kind == "uniform":
        return tune.uniform(float(spec["low"]), float(spec["high"]))
    if kind == "loguniform":
        return tune.loguniform(float(spec["low"]), float(spec["high"]))
    raise _spec_error(key, spec, f"unknown type {kind!r}")


def search_space(cfg: Config) -> dict[str, Any]:
    """Tune's ``param_space``: flat ``{dotted config key: domain}``."""
    check_space(cfg)
    grid = cfg.tune.search == "grid"
    return {key: domain(key, spec, grid) for key, spec in cfg.tune.space.items()}


def initial_points(cfg: Config) -> list[dict[str, Any]]:
    """``tune.points_to_evaluate`` (or the papers' settings), restricted to the space's keys.

    Grid search takes none (its grid is the plan); keys outside the space are dropped
    because the searchers only accept points inside it.
    """
    if cfg.tune.search == "grid":
        return []
    points = cfg.tune.points_to_evaluate or PAPER_POINTS
    keys = set(cfg.tune.space)
    out = []
    for point in points:
        kept = {k: v for k, v in point.items() if k in keys}
        if kept and kept not in out:
            cfg.with_overrides(kept)  # a bad point fails here, not in a trial
            out.append(kept)
    return out


# --------------------------------------------------------------------------------------------
# one trial
# --------------------------------------------------------------------------------------------

def trials_storage(cfg: Config) -> str:
    """Where the trials' Train runs live: ``<tune storage>/<name>/trials``."""
    return f"{storage_root(cfg).rstrip('/')}/{experiment_name(cfg)}/trials"


def plain(value: Any) -> Any:
    """Python scalars for the config's type checks (Tune samples numpy ints)."""
    return value.item() if hasattr(value, "item") and callable(value.item) else value


def trial_config(base: Config, params: dict[str, Any], trial_id: str) -> Config:
    """``base`` with a trial's sampled values and the short per-stage schedule and run names.

    The trial's Train runs get stable names (``<trial id>-pretrain`` / ``-finetune``) so a
    restarted trial resumes them.
    """
    cfg = base.with_overrides({k: plain(v) for k, v in params.items()})
    t = cfg.tune
    overrides = dict(cfg.train.stage_overrides)
    overrides["pretrain"] = {**overrides.get("pretrain", {}), "train.epochs": t.pretrain_epochs,
                             "train.run_name": f"{trial_id}-pretrain"}
    overrides["finetune"] = {**overrides.get("finetune", {}), "train.epochs": t.finetune_epochs,
                             "train.run_name": f"{trial_id}-finetune"}
    return cfg.with_overrides({"train.stage_overrides": overrides,
                               "train.storage_path": trials_storage(cfg)})


def _filesystem(cfg: Config, uri: str):
    """(pyarrow filesystem, path on it) for a local path or s3:// URI."""
    import pyarrow.fs as pafs

    from raypose.train import run

    path, fs, _ = run.storage(cfg.with_overrides({"train.storage_path": uri}))
    return (fs or pafs.LocalFileSystem()), path


def read_done(cfg: Config, run_dir: str) -> Optional[dict[str, Any]]:
    """The record a finished stage left in its run folder (local or S3), or None."""
    fs, path = _filesystem(cfg, run_dir)
    try:
        with fs.open_input_stream(f"{path}/{DONE_FILE}") as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        return None


def write_done(cfg: Config, run_dir: str, record: dict[str, Any]) -> None:
    """Mark a stage finished (checkpoint URI, seconds) so a restarted trial skips it."""
    fs, path = _filesystem(cfg, run_dir)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{DONE_FILE}") as f:
        f.write(json.dumps(record).encode())


def pretrain_stage(cfg: Config) -> dict[str, Any]:
    """The trial's pretraining (or its record, when a previous attempt finished it)."""
    from raypose.train import run

    staged = run.stage_config(cfg, "pretrain")
    run_dir = f"{staged.train.storage_path}/{staged.train.run_name}"
    done = read_done(cfg, run_dir)
    if done is not None:
        return done
    t0 = time.time()
    result = run.make_trainer(cfg, "pretrain").fit()
    record = {"checkpoint": run.checkpoint_uri(result, "pretrain", staged),
              "seconds": time.time() - t0}
    write_done(cfg, run_dir, record)
    return record


def _report_callback(extra: dict[str, Any], started: float):
    """A ``TuneReportCallback`` that adds ``finetune_epoch`` (ASHA's clock) and the trial's
    time and pretraining checkpoint to every forwarded fine-tuning report."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class FinetuneReport(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            rows = [{**m, TIME_ATTR: int(m.get("epoch", -1)) + 1,
                     "trial_seconds": extra["pretrain_seconds"] + time.time() - started,
                     "pretrain_checkpoint": extra["pretrain_checkpoint"]} for m in metrics]
            super().after_report(run_context, rows, checkpoint)

    return FinetuneReport()


def run_trial(params: dict[str, Any], base: dict[str, Any]) -> None:
    """The Tune trainable: pretrain with the trial's masks, fine-tune from it, report val MPJPE."""
    from ray import tune

    from raypose.train import run

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(config_mod.from_dict(base), params, trial_id)
    pre = pretrain_stage(cfg)
    started = time.time()
    callback = _report_callback({"pretrain_seconds": pre["seconds"],
                                 "pretrain_checkpoint": pre["checkpoint"]}, started)
    finetune = cfg.with_overrides({"train.init": pre["checkpoint"]})
    run.make_trainer(finetune, "finetune", callbacks=[callback]).fit()


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------

def storage_root(cfg: Config) -> str:
    """``tune.storage_path`` (local path or s3:// URI), else ``train.storage_path``, else
    ``~/ray_results``."""
    path = cfg.tune.storage_path or cfg.train.storage_path or "~/ray_results"
    return path if path.startswith("s3://") else os.path.abspath(os.path.expanduser(path))


def experiment_name(cfg: Config) -> str:
    return cfg.tune.name or f"tune-{cfg.model.name}"


def experiment_uri(cfg: Config) -> str:
    return f"{storage_root(cfg).rstrip('/')}/{experiment_name(cfg)}"


def trial_resources(cfg: Config) -> dict[str, float]:
    """What one trial holds at once: its driver plus the (larger) of its two trainers."""
    t = cfg.train
    cpu = DRIVER_CPU + t.num_workers * t.cpus_per_worker
    return {"CPU": cpu, "GPU": float(t.num_workers) if t.use_gpu else 0.0}


def max_concurrent_trials(cfg: Config, cluster: Optional[dict[str, float]] = None) -> int:
    """``tune.max_concurrent_trials``, or as many trials as the cluster's CPUs (less a CPU for
    Ray Data) and GPUs hold at once — at least one."""
    if cfg.tune.max_concurrent_trials > 0:
        return cfg.tune.max_concurrent_trials
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    need = trial_resources(cfg)
    fits = [math.floor((cluster.get("CPU", 0.0) - DATA_CPU_RESERVE) / need["CPU"] + 1e-9)]
    if need["GPU"] > 0:
        fits.append(math.floor(cluster.get("GPU", 0.0) / need["GPU"] + 1e-9))
    return max(1, min(fits))


def search_algorithm(cfg: Config, points: list[dict[str, Any]], concurrency: int):
    """random/grid: Tune's variant generator; optuna: ``OptunaSearch`` (imported only then)
    behind a ``ConcurrencyLimiter``. Both cap the trials running at once at ``concurrency``
    (Tune ignores ``TuneConfig.max_concurrent_trials`` for a variant generator passed in)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    kind = cfg.tune.search
    if kind in ("random", "grid"):
        return BasicVariantGenerator(points_to_evaluate=points or None, max_concurrent=concurrency,
                                     random_state=cfg.train.seed)
    if kind == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("tune.search optuna needs the optuna package (pip install optuna)") from None
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(points_to_evaluate=points or None, seed=cfg.train.seed),
                                  max_concurrent=concurrency)
    raise ConfigError(f"tune.search must be random, grid or optuna, got {kind!r}")


def scheduler(cfg: Config):
    """ASHA on fine-tuning epochs: stop a trial at a rung when it trails the others."""
    from ray.tune.schedulers import ASHAScheduler

    t = cfg.tune
    return ASHAScheduler(time_attr=TIME_ATTR, max_t=t.finetune_epochs,
                         grace_period=min(t.grace_period, t.finetune_epochs),
                         reduction_factor=t.reduction_factor)


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def trainable(cfg: Config):
    """:func:`run_trial` bound to the base config, holding :data:`DRIVER_CPU`."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, base=cfg.to_dict()),
                               {"cpu": DRIVER_CPU})


def tune_storage(cfg: Config) -> tuple[str, Any]:
    """(storage_path, filesystem) for Tune, sharing the trainers' S3 handling."""
    from raypose.train import run

    path, fs, _ = run.storage(cfg.with_overrides({"train.storage_path": storage_root(cfg)}))
    return path, fs


def make_tuner(cfg: Config):
    """A fresh ``Tuner`` for the search in ``cfg.tune`` (Ray must be up)."""
    from ray import tune

    path, fs = tune_storage(cfg)
    points = initial_points(cfg)
    concurrency = max_concurrent_trials(cfg)
    return tune.Tuner(
        trainable(cfg),
        param_space=search_space(cfg),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=cfg.tune.num_samples,
            search_alg=search_algorithm(cfg, points, concurrency), scheduler=scheduler(cfg),
            trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=experiment_name(cfg), storage_path=path, storage_filesystem=fs,
                                  failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures),
                                  verbose=1),
    )


def restore_tuner(cfg: Config):
    """``Tuner.restore`` of the search named by ``cfg.tune``: finished trials stay finished,
    unfinished and errored ones restart (and resume their Train runs)."""
    from ray import tune

    path, fs = tune_storage(cfg)
    uri = experiment_uri(cfg)
    exp_path = f"{path}/{experiment_name(cfg)}"
    if not tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        raise ConfigError(f"{uri}: no Tune experiment to resume (check tune.storage_path / tune.name)")
    return tune.Tuner.restore(exp_path, trainable=trainable(cfg), resume_unfinished=True,
                              resume_errored=True, storage_filesystem=fs)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

def _status(result: Any, finetune_epochs: int) -> str:
    if result.error is not None:
        return "error"
    done = int((result.metrics or {}).get(TIME_ATTR, 0))
    return "completed" if done >= finetune_epochs else "stopped"


def trial_rows(grid: Any, cfg: Config) -> list[dict[str, Any]]:
    """One row per trial: id, status, params, val MPJPE (last and best), epochs, time, checkpoints."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        best = float(history[METRIC].min()) if history is not None and METRIC in history else math.nan
        params = {k: plain(result.config.get(k)) for k in cfg.tune.space}
        rows.append({
            "trial_id": metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_"),
            "status": _status(result, cfg.tune.finetune_epochs),
            **params,
            METRIC: float(metrics.get(METRIC, math.nan)),
            f"best_{METRIC}": best,
            TIME_ATTR + "s": int(metrics.get(TIME_ATTR, 0)),
            "time_s": float(metrics.get("trial_seconds", metrics.get("time_total_s", math.nan))),
            "pretrain_checkpoint": metrics.get("pretrain_checkpoint", ""),
            "checkpoint": metrics.get("checkpoint_path", ""),
        })
    return sorted(rows, key=lambda r: (math.isnan(r[METRIC]), r[METRIC]))


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The lowest final val MPJPE among trials that ran every fine-tuning epoch (else any)."""
    finite = [r for r in rows if math.isfinite(r[METRIC])]
    full = [r for r in finite if r["status"] == "completed"] or finite
    if not full:
        raise RuntimeError("no trial reported a finite validation MPJPE")
    return min(full, key=lambda r: r[METRIC])


def best_finetune_config(base: Config, row: dict[str, Any]) -> Config:
    """A ready-to-run fine-tuning config: the base config (its own full schedule) with the best
    trial's values, initialised from that trial's pretraining checkpoint. The same file drives
    ``jobs/pretrain.py`` for a full pretraining with the winning masks."""
    params = {k: row[k] for k in base.tune.space if k in row}
    return base.with_overrides({**params, "train.stage": "finetune",
                                "train.init": row["pretrain_checkpoint"], "train.run_name": ""})


def _json_safe(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_table(rows: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    csv_path, json_path = out_dir / "trials.csv", out_dir / "trials.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in rows], indent=2))
    return csv_path, json_path


def _axis_value(base: Config, row: dict[str, Any], key: str) -> float:
    if key in row and row[key] is not None:
        return float(row[key])
    node: Any = base.to_dict()
    for part in key.split("."):
        node = node[part]
    return float(node)


def plot_mask_ratios(rows: list[dict[str, Any]], base: Config, path: Path) -> Path:
    """Val MPJPE over temporal ratio (x) × spatial joints (y), one marker per strategy."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    pts = [r for r in rows if math.isfinite(r[METRIC])]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    try:
        markers = {"spatiotemporal": "o", "hierarchical": "s", "temporal": "^", "spatial": "v",
                   "tube": "D", "none": "x"}
        strategies = sorted({str(r.get("masking.strategy") or base.masking.strategy) for r in pts})
        lo = min((r[METRIC] for r in pts), default=0.0)
        hi = max((r[METRIC] for r in pts), default=1.0)
        scatter = None
        labels: list[tuple[float, float, str]] = []
        for s in strategies:
            sel = [r for r in pts if str(r.get("masking.strategy") or base.masking.strategy) == s]
            xs = [_axis_value(base, r, PLOT_AXES[0]) for r in sel]
            ys = [_axis_value(base, r, PLOT_AXES[1]) for r in sel]
            scatter = ax.scatter(xs, ys, c=[r[METRIC] for r in sel], cmap="viridis_r", vmin=lo,
                                 vmax=hi if hi > lo else lo + 1.0, s=90, marker=markers.get(s, "o"),
                                 edgecolors="k", label=s)
            for x, y, r in zip(xs, ys, sel):
                stopped = "" if r.get("status") != "stopped" else " (stopped)"
                labels.append((x, y, f"{r[METRIC]:.1f}{stopped}"))
        _annotate_apart(ax, labels)
        if scatter is not None:
            fig.colorbar(scatter, ax=ax, label="val MPJPE (mm)")
            ax.legend(title="masking", fontsize=8)
        ax.set_xlabel("temporal mask ratio q_T")
        ax.set_ylabel("spatially masked joints m_S")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("fine-tuned val MPJPE per trial")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _annotate_apart(ax: Any, labels: list[tuple[float, float, str]]) -> None:
    """Label each point to its right; a label whose anchor would sit on an earlier one's (the
    papers' points are often tried twice, and random draws land close) goes a line lower."""
    ax.figure.canvas.draw()  # fixes the axis limits, so data → pixels is final
    line_pt = 11
    line_px = line_pt * ax.figure.dpi / 72  # offsets are in points, anchors in pixels
    placed: list[tuple[float, float]] = []
    for x, y, text in labels:
        px, py = ax.transData.transform((x, y))
        line = sum(1 for qx, qy in placed if abs(px - qx) < 80 and abs(py - qy) < line_px)
        placed.append((px, py - line_px * line))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(7, 4 - line_pt * line), fontsize=8)


@dataclass
class SearchOutputs:
    rows: list[dict[str, Any]]
    best: dict[str, Any]
    table_csv: Path
    table_json: Path
    best_config: Path
    plot: Path


def write_results(rows: list[dict[str, Any]], base: Config, out_dir: str | Path) -> SearchOutputs:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_csv, table_json = write_table(rows, out)
    best = best_row(rows)
    best_config = out / "best_finetune.yaml"
    best_finetune_config(base, best).to_yaml(best_config)
    config_mod.load(best_config)  # what we wrote must load
    plot = plot_mask_ratios(rows, base, out / "mask_ratios.png")
    return SearchOutputs(rows, best, table_csv, table_json, best_config, plot)


def default_out_dir(cfg: Config) -> Path:
    """Beside the experiment when storage is local; ``./tune_results/<name>`` for S3."""
    uri = experiment_uri(cfg)
    return Path("tune_results") / experiment_name(cfg) if uri.startswith("s3://") else Path(uri)


def ensure_ray() -> None:
    """Join RAY_ADDRESS's cluster, or start a local Ray *with* its dashboard.

    Ray Train releases the placement groups of a trial ASHA stops through a cleaner actor that
    queries the dashboard's state API; without the dashboard they leak and later trials wait
    for workers forever. The cleaner finds its cluster by RAY_ADDRESS or ``ray start``'s
    address file, so on a machine running several Ray instances start the cluster with
    ``ray start --head`` and set RAY_ADDRESS (as the tests do).
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto")
        return
    ray.init(include_dashboard=True, dashboard_host="127.0.0.1")


def run_search(cfg: Config, resume: bool = False, out_dir: str | Path | None = None) -> SearchOutputs:
    """Run (or, with ``resume``, ``Tuner.restore`` and finish) the search; write the results."""
    from raypose.train import run

    check_space(cfg)
    # trials run in their own folders: relative data paths are the caller's, so pin them here
    cfg = config_mod.with_absolute_sources(cfg, Path.cwd())
    run.check_data(cfg)   # unknown subjects or no training data: fail before any trial starts
    ensure_ray()
    tuner = restore_tuner(cfg) if resume else make_tuner(cfg)
    grid = tuner.fit()
    rows = trial_rows(grid, cfg)
    return write_results(rows, cfg, out_dir or default_out_dir(cfg))
