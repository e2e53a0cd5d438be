"""Controlled accuracy studies: many small pretrain → fine-tune → evaluate runs, several seeds
each, side by side on a local Ray (one CPU per run), and the statistics to tell a real
difference from seed noise.

A *row* is one YAML config (``configs/study/<name>.yaml``) plus whether it pretrains; a *trial*
is one row at one seed. Each trial trains in-process (:mod:`raypose.train.local` — the same loop
a Ray Train worker runs, without a Trainer per run) and is scored on

- the fixed protocol on the held-out person (:mod:`raypose.protocol`), the headline;
- the test split of its own data, with Gaussian 2D noise σ (normalised screen units) added to
  the input — ``headline_noise``, a detector-like σ — and every σ of
  ``noise_levels`` for the robustness curve;
- the same test split with whole joints or body parts occluded (MPM's table 3 patterns);
- real detector output from calibrated cameras (``../shared/data/pose2sim_demo.npz``): each
  camera's OpenPose 2D lifted and compared with the triangulated 3D in that camera.

The corrupted inputs are drawn from fixed seeds, so every model sees the same corruption.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from raypose import config

#: Seed of the test-time corruptions (the same for every model and training seed).
CORRUPTION_SEED = 1234


@dataclass(frozen=True)
class Row:
    """One setting of the study: ``configs/study/<name>.yaml``; ``pretrain`` runs stage I first."""

    name: str
    label: str
    pretrain: bool = True


@dataclass
class Budget:
    """What every trial gets: the evaluation's corruptions and, when ``epochs`` /
    ``steps_per_epoch`` are set (> 0), a schedule that replaces the configs' own (both stages
    the same length, for reduced runs)."""

    epochs: int = 0
    steps_per_epoch: int = 0
    virtual_cameras: int = 4
    headline_noise: float = 0.004
    noise_levels: tuple[float, ...] = (0.0, 0.004, 0.01, 0.03)
    #: Frames of each protocol view scored (0 = all; reduced runs).
    protocol_frames: int = 0
    occlusions: tuple[str, ...] = ("1 joint", "2 joints", "2 legs", "2 arms", "left side", "right side")

    def overrides(self, stage_overrides: Mapping[str, Mapping[str, Any]] = {}) -> dict[str, Any]:
        """Config overrides that put a row on this budget: both stages' lengths replaced (also
        inside ``stage_overrides``, the row's own, whose other settings — learning rates, the
        label fraction — stay)."""
        schedule: dict[str, Any] = {}
        if self.epochs > 0:
            schedule["train.epochs"] = self.epochs
        if self.steps_per_epoch > 0:
            schedule["train.steps_per_epoch"] = self.steps_per_epoch
        if not schedule:
            return {}
        staged = {stage: {**dict(v), **schedule} for stage, v in stage_overrides.items()}
        return {**schedule, "train.stage_overrides": staged}


def trial_config(config_dir: Path, row: Row, seed: int, budget: Budget) -> config.Config:
    """The row's config at ``seed`` on ``budget``: its sources with paths made absolute (relative
    ones are relative to the repository, and a Ray task's working directory may differ) and
    ``budget.virtual_cameras`` cameras each."""
    cfg = config.with_absolute_sources(config.load(config_dir / f"{row.name}.yaml"), config_dir.resolve().parents[1])
    sources = [{**dataclasses.asdict(src), "virtual_cameras": budget.virtual_cameras} for src in cfg.data.sources]
    return cfg.with_overrides({**budget.overrides(cfg.train.stage_overrides), "data.sources": sources,
                               "train.seed": seed})


#: Key of the fixed protocol's scores (held-out climb_b, :mod:`raypose.protocol`), the headline.
PROTOCOL = "protocol"


def _corruptions(budget: Budget) -> list[tuple[str, float, Optional[str]]]:
    """(key, σ, occlusion) of every evaluation a robustness trial runs; the headline first."""
    out = [(f"noise={budget.headline_noise:g}", budget.headline_noise, None)]
    out += [(f"noise={s:g}", s, None) for s in budget.noise_levels if s != budget.headline_noise]
    out += [(f"occlude={p}", budget.headline_noise, p) for p in budget.occlusions]
    return out


def evaluate_trial(model: Any, cfg: config.Config, budget: Budget, robustness: bool,
                   calibrated: Optional[Path], protocol_mocap: Optional[Path] = None
                   ) -> dict[str, dict[str, float]]:
    """Scores (mm) of a fine-tuned model under the fixed protocol, under each corruption of its
    test split, and on real detections."""
    from raypose import perturb
    from raypose.protocol import protocol_views, score_protocol
    from raypose.evaluate import (data_config_for, evaluate_calibrated, mean_over_cameras, predict_chunks,
                                  score, split_chunks)

    data_cfg = data_config_for(cfg)
    chunks, info = split_chunks(data_cfg, "test")
    sequence_ids = np.array(["/".join(map(str, c["key"][:3])) for c in info])
    results: dict[str, dict[str, float]] = {}
    if protocol_mocap is not None:
        test = protocol_views(protocol_mocap)
        if budget.protocol_frames:
            test = [(kp[: budget.protocol_frames], j[: budget.protocol_frames]) for kp, j in test]
        results[PROTOCOL] = {k: v for k, v in score_protocol(model, cfg, test).items() if k != "frames"}
    for key, sigma, pattern in _corruptions(budget)[: None if robustness else 1]:
        seen = perturb.add_noise(chunks, sigma, seed=CORRUPTION_SEED)
        if pattern is not None:
            seen = perturb.occlude(seen, pattern, sequence_ids, seed=CORRUPTION_SEED)
        s = score(predict_chunks(model, seen, info, data_cfg, cfg.train.flip_test))
        results[key] = {k: s[k] for k in ("mpjpe", "p_mpjpe", "n_mpjpe")}
    if calibrated is not None:
        rows = evaluate_calibrated(model, calibrated, cfg.data.num_frames, cfg.data.stride,
                                   flip=cfg.train.flip_test, causal=cfg.data.causal)
        results["real_detections"] = mean_over_cameras(rows)
    return results


def run_trial(config_dir: str, row: Row, seed: int, budget: Budget, robustness: bool = False,
              calibrated: Optional[str] = None, protocol_mocap: Optional[str] = None,
              threads: int = 1) -> dict[str, Any]:
    """Pretrain (if the row does) → fine-tune from its encoder → evaluate; one seed of one row."""
    import torch

    from raypose.evaluate import split_chunks
    from raypose.train.local import fit_in_process
    from raypose.train.run import stage_config

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cpu = time.process_time()
    cfg = trial_config(Path(config_dir), row, seed, budget)

    def chunks(staged: config.Config, split: str) -> Any:
        if split == "val" and not staged.data.val_subjects:
            return None
        return split_chunks(staged.data, split, seed)[0]

    with tempfile.TemporaryDirectory(prefix=f"study-{row.name}-{seed}-") as tmp:
        history: list[dict[str, Any]] = []
        if row.pretrain:
            pre_dir = Path(tmp) / "pretrain"
            pre = stage_config(cfg, "pretrain")
            _, history = fit_in_process(pre, chunks(pre, "train"), pre_dir, chunks(pre, "val"))
            cfg = cfg.with_overrides({"train.init": str(pre_dir)})
        ft = stage_config(cfg, "finetune")
        model, ft_history = fit_in_process(ft, chunks(ft, "train"), None, chunks(ft, "val"))
    seconds_train = time.perf_counter() - t0
    cpu_train = time.process_time() - cpu
    scores = evaluate_trial(model.eval(), ft, budget, robustness, Path(calibrated) if calibrated else None,
                            Path(protocol_mocap) if protocol_mocap else None)
    return {"row": row.name, "seed": seed, "scores": scores,
            "pretrain_loss": history[-1]["loss"] if history else None,
            "pretrain_epochs": len(history), "finetune_loss": ft_history[-1]["loss"],
            "train_seconds": seconds_train, "train_cpu_seconds": cpu_train,
            "seconds": time.perf_counter() - t0}


def finished(pending: dict[Any, Any]) -> Iterator[tuple[Any, Optional[dict[str, Any]], Optional[str]]]:
    """Ray tasks of ``pending`` (object ref → key) as they end, removed from it: ``(key, result,
    None)``, or ``(key, None, error)`` for a task that raised. Tasks added to ``pending`` while
    iterating are waited for too."""
    import ray

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        try:
            yield key, ray.get(ready[0]), None
        except ray.exceptions.RayTaskError as e:
            yield key, None, str(e.cause) if e.cause else str(e)


def append_journal(journal: Optional[Path], entry: Mapping[str, Any]) -> None:
    """One finished run as a JSON line (nothing without a journal)."""
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        with journal.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def run_study(config_dir: Path, rows: Sequence[Row], seeds: Sequence[int], budget: Budget,
              robust_rows: Sequence[str] = (), calibrated: Optional[Path] = None,
              protocol_mocap: Optional[Path] = None, journal: Optional[Path] = None,
              progress: bool = True) -> list[dict[str, Any]]:
    """Every (row, seed) trial as a Ray task of one CPU on the running (or a new local) Ray.

    With ``journal`` (a JSON-lines file) each finished trial is appended as it ends and trials
    already there (same row, seed and budget) are not run again, so an interrupted or partly
    failed study resumes where it stopped. A failing trial does not stop the others; the failures
    are raised together at the end.
    """
    import ray

    signature = as_dict(budget)
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if journal is not None and journal.exists():
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("budget") == json.loads(json.dumps(signature)):
                done[(entry["row"], entry["seed"])] = entry
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=0)(run_trial)
    pending = {task.remote(str(config_dir), row, seed, budget, row.name in robust_rows,
                           str(calibrated) if calibrated else None,
                           str(protocol_mocap) if protocol_mocap else None): (row.name, seed)
               for seed in seeds for row in rows if (row.name, seed) not in done}
    results = [done[(r.name, s)] for r in rows for s in seeds if (r.name, s) in done]
    failures: list[str] = []
    total, t0 = len(results) + len(pending), time.perf_counter()
    for (name, seed), result, error in finished(pending):
        if result is None:
            failures.append(f"{name} seed {seed}: {error}")
            print(f"[study] {name} seed {seed} FAILED: {failures[-1]}", flush=True)
            continue
        results.append(result)
        append_journal(journal, {**result, "budget": signature})
        if progress:
            head = result["scores"][next(iter(result["scores"]))]["mpjpe"]
            print(f"[study] {len(results)}/{total} {name} seed {seed}: MPJPE {head:.1f} mm "
                  f"({result['seconds']:.0f}s, {time.perf_counter() - t0:.0f}s total)", flush=True)
    if failures:
        raise RuntimeError(f"{len(failures)} trial(s) failed (the others are kept"
                           f"{' in ' + str(journal) if journal else ''}):\n" + "\n".join(failures))
    order = [x.name for x in rows]
    return sorted(results, key=lambda r: (order.index(r["row"]), r["seed"]))


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------

@dataclass
class Stat:
    """Mean ± sample standard deviation over seeds."""

    mean: float
    std: float
    n: int
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        v = [float(x) for x in values]
        if not v:
            return cls(float("nan"), float("nan"), 0, [])
        std = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
        return cls(float(np.mean(v)), std, len(v), v)

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.std:.1f}" if math.isfinite(self.std) else f"{self.mean:.1f}"


def stat(results: Sequence[Mapping[str, Any]], row: str, key: str, metric: str = "mpjpe") -> Stat:
    return Stat.of([r["scores"][key][metric] for r in results if r["row"] == row and key in r["scores"]])


@dataclass
class Difference:
    """``a − b`` of two rows' means, its standard error, and whether it exceeds the noise."""

    diff: float
    se: float
    verdict: str            # 'lower' | 'higher' | 'within noise'

    def __str__(self) -> str:
        if not math.isfinite(self.se):
            return f"{self.diff:+.1f} mm ({self.verdict})"
        return f"{self.diff:+.1f} ± {self.se:.1f} mm ({self.verdict})"

    @classmethod
    def called(cls, diff: float, se: float, z: float) -> "Difference":
        """The verdict both comparisons share: lower / higher only beyond ``z`` standard errors."""
        if abs(diff) <= z * se:
            return cls(diff, se, "within noise")
        return cls(diff, se, "lower" if diff < 0 else "higher")


def compare(a: Stat, b: Stat, z: float = 2.0) -> Difference:
    """Welch-style: the difference is called only when it exceeds ``z`` standard errors."""
    diff = a.mean - b.mean
    se = math.sqrt((a.std ** 2 / a.n if a.n > 1 else 0.0) + (b.std ** 2 / b.n if b.n > 1 else 0.0))
    if not (a.n > 1 and b.n > 1) or not math.isfinite(se):
        return Difference(diff, float("nan"), "too few seeds")
    return Difference.called(diff, se, z)


def compare_paired(a: Mapping[int, float], b: Mapping[int, float], z: float = 2.0) -> Difference:
    """``a − b`` over the seeds both have, paired by seed: for designs where a seed fixes what
    both rows share (the labelled subset, the rig's draw), so that between-seed variation
    cancels. The standard error is that of the mean per-seed difference."""
    seeds = sorted(set(a) & set(b))
    d = Stat.of([a[s] - b[s] for s in seeds])
    if d.n < 2:
        return Difference(d.mean, float("nan"), "too few seeds")
    return Difference.called(d.mean, d.std / math.sqrt(d.n), z)


def summary_rows(results: Sequence[Mapping[str, Any]], rows: Sequence[Row], key: str,
                 split_key: Optional[str] = None) -> list[dict[str, Any]]:
    """One dict per row: label and mean ± std of MPJPE / P-MPJPE under ``key`` (and N-MPJPE where
    scored), MPJPE under ``split_key`` (the test split through the training rig), on real
    detections, plus the seed count, stage I's length and the mean training CPU time."""
    out = []
    for row in rows:
        rs = [r for r in results if r["row"] == row.name]
        if not rs:
            continue
        line: dict[str, Any] = {"row": row.name, "setting": row.label}
        for metric, col in (("mpjpe", "MPJPE"), ("p_mpjpe", "P-MPJPE"), ("n_mpjpe", "N-MPJPE")):
            if all(metric in r["scores"].get(key, {}) for r in rs):
                line[col] = str(stat(results, row.name, key, metric))
        if split_key and all(split_key in r["scores"] for r in rs):
            line["rig test MPJPE"] = str(stat(results, row.name, split_key))
        if any("real_detections" in r["scores"] for r in rs):
            line["real 2D MPJPE"] = str(stat(results, row.name, "real_detections"))
            line["real 2D P-MPJPE"] = str(stat(results, row.name, "real_detections", "p_mpjpe"))
        line["seeds"] = len(rs)
        if row.pretrain and all("pretrain_epochs" in r for r in rs):
            line["stage I epochs"] = " / ".join(str(r["pretrain_epochs"]) for r in sorted(rs, key=lambda r: r["seed"]))
        cpu = [r.get("train_cpu_seconds", r["train_seconds"]) for r in rs]
        line["train CPU s"] = f"{np.mean(cpu):.0f}"
        out.append(line)
    return out


def as_dict(budget: Budget) -> dict[str, Any]:
    return dataclasses.asdict(budget)
