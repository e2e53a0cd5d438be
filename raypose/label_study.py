"""Label-scarcity study: does masked pretraining pay off when 2D is plentiful and 3D labels scarce?

The regime the papers' idea is for: stage I sees the 2D (and, for MPM / APTPose, the unpaired
3D poses) of *every* training sequence; stage II fine-tunes on the 3D labels of a fraction of
them (``data.label_fraction``: 1 %, 5 %, 25 %, 100 % of the sequences, a seeded subset shared by
every method at a seed). Beside the pretrained methods, the same lifter from scratch and a
single-frame MLP get the same stage-II budget.

* A *method* is one config in ``configs/label_study/`` plus whether it pretrains.
* Stage I runs once per (method, seed) until its validation loss plateaus
  (``train.plateau_patience``), and its curve is kept; its checkpoint is reused by every
  fraction's fine-tuning at that seed.
* Every fine-tuned model is scored under the fixed protocol (:mod:`raypose.protocol`, held-out
  climb_b) and on the real Pose2Sim detections.
* CPU seconds are kept per stage, so "pretraining + fine-tuning" can be set against "scratch".

Each run is a Ray task of one CPU; a JSON-lines journal records every finished run, so an
interrupted study resumes where it stopped (stage I checkpoints live beside the journal).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from raypose import config
from raypose.study import Stat, append_journal, compare_paired, finished

FRACTIONS = (0.01, 0.05, 0.25, 1.0)


@dataclass(frozen=True)
class Method:
    """``configs/label_study/<name>.yaml``; ``pretrain`` runs stage I before fine-tuning."""

    name: str
    label: str
    pretrain: bool


@dataclass
class Schedule:
    """Overrides for reduced runs (``--quick``): 0 keeps the configs' own schedule."""

    pretrain_epochs: int = 0
    finetune_epochs: int = 0
    steps_per_epoch: int = 0
    test_frames: int = 0          # frames of each protocol view scored (0 = all)
    pose2sim: bool = True

    def overrides(self, stage: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        epochs = self.pretrain_epochs if stage == "pretrain" else self.finetune_epochs
        if epochs:
            out["train.epochs"] = epochs
        if self.steps_per_epoch:
            out["train.steps_per_epoch"] = self.steps_per_epoch
        return out


def method_config(config_dir: Path, method: Method, seed: int, stage: str, schedule: Schedule,
                  fraction: float = 1.0, init: str = "") -> config.Config:
    """The method's config for ``stage`` at ``seed``: stage I on every sequence, stage II on
    ``fraction`` of them (from ``init``, a stage I checkpoint, when given)."""
    from raypose.train.run import stage_config

    # source paths are relative to the repository (a Ray task's working directory may differ)
    cfg = config.with_absolute_sources(config.load(config_dir / f"{method.name}.yaml"),
                                       config_dir.resolve().parents[1]).with_overrides({"train.seed": seed})
    staged = stage_config(cfg, stage).with_overrides(schedule.overrides(stage))
    extra: dict[str, Any] = {"data.label_fraction": fraction if stage == "finetune" else 1.0}
    if init:
        extra["train.init"] = init
    return staged.with_overrides(extra)


def _fit(cfg: config.Config, checkpoint_dir: Optional[Path] = None) -> tuple[Any, list[dict], float]:
    """Train one stage in this process; (model, per-epoch history, CPU seconds)."""
    from raypose.evaluate import split_chunks
    from raypose.train.local import fit_in_process

    cpu = time.process_time()
    train, _ = split_chunks(cfg.data, "train", cfg.train.seed)
    val = split_chunks(cfg.data, "val", cfg.train.seed)[0] if cfg.data.val_subjects else None
    model, history = fit_in_process(cfg, train, checkpoint_dir, val_chunks=val)
    return model, history, time.process_time() - cpu


def _curve(history: Sequence[dict], metric: str) -> list[dict[str, float]]:
    return [{"epoch": int(h["epoch"]), "loss": float(h["loss"]), metric: float(h.get(metric, float("nan")))}
            for h in history]


def pretrain_run(config_dir: str, method: Method, seed: int, schedule: Schedule, out_dir: str,
                 threads: int = 1) -> dict[str, Any]:
    """Stage I of ``method`` at ``seed`` until its validation loss plateaus (or the epoch cap)."""
    import torch

    torch.set_num_threads(threads)
    cfg = method_config(Path(config_dir), method, seed, "pretrain", schedule)
    directory = Path(out_dir) / f"{method.name}-seed{seed}"
    shutil.rmtree(directory, ignore_errors=True)
    _, history, cpu_s = _fit(cfg, directory)
    return {"kind": "pretrain", "method": method.name, "seed": seed, "checkpoint": str(directory),
            "cpu_s": cpu_s, "epochs": len(history), "max_epochs": cfg.train.epochs,
            "plateaued": bool(history and history[-1].get("plateaued")),
            "curve": _curve(history, "val_loss")}


def finetune_run(config_dir: str, method: Method, seed: int, fraction: float, schedule: Schedule,
                 init: str, mocap: str, pose2sim: str, threads: int = 1) -> dict[str, Any]:
    """Stage II on ``fraction`` of the labelled sequences, then the protocol's scores."""
    import torch

    from raypose.evaluate import evaluate_calibrated, mean_over_cameras
    from raypose.protocol import protocol_views, score_protocol

    torch.set_num_threads(threads)
    cfg = method_config(Path(config_dir), method, seed, "finetune", schedule, fraction, init)
    model, history, cpu_s = _fit(cfg)
    model.eval()
    test = protocol_views(Path(mocap))
    if schedule.test_frames:
        test = [(kp[: schedule.test_frames], j[: schedule.test_frames]) for kp, j in test]
    scores = {"climb_b": score_protocol(model, cfg, test)}
    if schedule.pose2sim:
        cams = evaluate_calibrated(model, pose2sim, cfg.data.num_frames, cfg.data.stride, flip=True,
                                   model_fps=cfg.data.target_fps or None, causal=cfg.data.causal)
        scores["pose2sim"] = mean_over_cameras(cams)
    from raypose.evaluate import split_chunks

    sequences = len({tuple(i["key"][:2]) for i in split_chunks(cfg.data, "train", seed)[1]})
    return {"kind": "finetune", "method": method.name, "seed": seed, "fraction": fraction,
            "labelled_sequences": sequences, "cpu_s": cpu_s, "scores": scores,
            "curve": _curve(history, "val_mpjpe")}


def _signature(schedule: Schedule) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(schedule)))


def read_journal(journal: Optional[Path], schedule: Schedule) -> list[dict[str, Any]]:
    """Finished runs of this schedule recorded in ``journal`` (JSON lines)."""
    if journal is None or not journal.exists():
        return []
    sig = _signature(schedule)
    entries = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return [e for e in entries if e.get("schedule") == sig]


def run_study(config_dir: Path, methods: Sequence[Method], seeds: Sequence[int],
              fractions: Sequence[float], schedule: Schedule, mocap: Path, pose2sim: Path,
              work_dir: Path, journal: Optional[Path] = None, progress: bool = True) -> list[dict[str, Any]]:
    """Every stage I and every (method, seed, fraction) fine-tuning as Ray tasks of one CPU on
    the running (or a new local) Ray; fine-tunings of a pretrained method start as soon as its
    stage I at that seed ends. Finished runs go to ``journal`` and are not run again.

    A failing run does not stop the others; the failures are raised together at the end.
    """
    import ray

    done = read_journal(journal, schedule)
    pretrained = {(e["method"], e["seed"]): e for e in done
                  if e["kind"] == "pretrain" and Path(e["checkpoint"]).exists()}
    finetuned = {(e["method"], e["seed"], e["fraction"]): e for e in done if e["kind"] == "finetune"}
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    pre_task = ray.remote(num_cpus=1, max_retries=0)(pretrain_run)
    ft_task = ray.remote(num_cpus=1, max_retries=0)(finetune_run)
    by_name = {m.name: m for m in methods}
    pending: dict[Any, tuple] = {}

    def submit_finetunes(method: Method, seed: int, init: str) -> None:
        for f in fractions:
            if (method.name, seed, f) not in finetuned:
                ref = ft_task.remote(str(config_dir), method, seed, f, schedule, init, str(mocap), str(pose2sim))
                pending[ref] = ("finetune", method.name, seed, f)

    for s in seeds:         # seed-major: a study cut short still has whole seeds
        for m in methods:
            if not m.pretrain:
                submit_finetunes(m, s, "")
            elif (m.name, s) in pretrained:
                submit_finetunes(m, s, pretrained[(m.name, s)]["checkpoint"])
            elif any((m.name, s, f) not in finetuned for f in fractions):
                pending[pre_task.remote(str(config_dir), m, s, schedule, str(work_dir))] = ("pretrain", m.name, s)
    failures: list[str] = []
    t0 = time.perf_counter()
    for what, result, error in finished(pending):
        if result is None:
            failures.append(f"{' '.join(map(str, what))}: {error}")
            print(f"[label-study] FAILED {failures[-1]}", flush=True)
            continue
        append_journal(journal, {**result, "schedule": _signature(schedule)})
        if result["kind"] == "pretrain":
            pretrained[(result["method"], result["seed"])] = result
            submit_finetunes(by_name[result["method"]], result["seed"], result["checkpoint"])
            line = (f"stage I {result['method']} seed {result['seed']}: {result['epochs']} epochs, "
                    f"val loss {result['curve'][-1]['val_loss']:.4f}")
        else:
            finetuned[(result["method"], result["seed"], result["fraction"])] = result
            line = (f"{result['method']} seed {result['seed']} at {result['fraction']:.0%}: climb_b "
                    f"MPJPE {result['scores']['climb_b']['mpjpe']:.1f} mm")
        if progress:
            print(f"[label-study] {line} ({result['cpu_s']:.0f} CPU s; {time.perf_counter() - t0:.0f}s "
                  f"total, {len(pending)} pending)", flush=True)
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) failed (the others are kept"
                           f"{' in ' + str(journal) if journal else ''}):\n" + "\n".join(failures))
    return [*pretrained.values(), *finetuned.values()]


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

def cell(results: Sequence[dict], method: str, fraction: float, test: str = "climb_b",
         metric: str = "mpjpe") -> Stat:
    return Stat.of([r["scores"][test][metric] for r in results if r["kind"] == "finetune"
                    and r["method"] == method and r["fraction"] == fraction and test in r["scores"]])


def cpu_minutes(results: Sequence[dict], method: str, fraction: float) -> Stat:
    """CPU minutes of one run of the row: its stage I (at the same seed) plus its fine-tuning."""
    pre = {r["seed"]: r["cpu_s"] for r in results if r["kind"] == "pretrain" and r["method"] == method}
    return Stat.of([(r["cpu_s"] + pre.get(r["seed"], 0.0)) / 60 for r in results
                    if r["kind"] == "finetune" and r["method"] == method and r["fraction"] == fraction])


def fraction_table(results: Sequence[dict], methods: Sequence[Method], fractions: Sequence[float],
                   test: str = "climb_b", metric: str = "mpjpe") -> list[dict[str, str]]:
    """One row per method: mean ± std over seeds at every label fraction."""
    rows = []
    for m in methods:
        line = {"method": m.name, "what": m.label}
        for f in fractions:
            s = cell(results, m.name, f, test, metric)
            line[f"{f:.0%}"] = str(s) if s.n else "–"
        line["seeds"] = str(max((cell(results, m.name, f, test, metric).n for f in fractions), default=0))
        rows.append(line)
    return rows


def cost_table(results: Sequence[dict], methods: Sequence[Method], fractions: Sequence[float]
               ) -> list[dict[str, str]]:
    """CPU minutes per run (stage I + stage II) and stage I's length, per method and fraction."""
    rows = []
    for m in methods:
        line = {"method": m.name}
        for f in fractions:
            s = cpu_minutes(results, m.name, f)
            line[f"{f:.0%}"] = f"{s.mean:.1f}" if s.n else "–"
        pre = [r for r in results if r["kind"] == "pretrain" and r["method"] == m.name]
        line["stage I CPU min"] = f"{np.mean([r['cpu_s'] for r in pre]) / 60:.1f}" if pre else "–"
        line["stage I epochs"] = (" / ".join(str(r["epochs"]) for r in sorted(pre, key=lambda r: r["seed"]))
                                  if pre else "–")
        rows.append(line)
    return rows


def by_seed(results: Sequence[dict], method: str, fraction: float, test: str = "climb_b") -> dict[int, float]:
    return {r["seed"]: r["scores"][test]["mpjpe"] for r in results if r["kind"] == "finetune"
            and r["method"] == method and r["fraction"] == fraction and test in r["scores"]}


def against(results: Sequence[dict], methods: Sequence[Method], fractions: Sequence[float],
            reference: str = "scratch", test: str = "climb_b") -> list[dict[str, str]]:
    """Every other method − ``reference`` at each fraction, paired by seed (a seed fixes the
    labelled subset and the rig's draw for every method): mean difference ± its standard error
    and the verdict, called only beyond two standard errors."""
    rows = []
    for m in methods:
        if m.name == reference:
            continue
        line = {"a − b (paired by seed)": f"{m.name} − {reference}"}
        for f in fractions:
            a, b = by_seed(results, m.name, f, test), by_seed(results, reference, f, test)
            line[f"{f:.0%}"] = str(compare_paired(a, b)) if a and b else "–"
        rows.append(line)
    return rows


def plots(results: Sequence[dict], methods: Sequence[Method], fractions: Sequence[float], out_dir: Path
          ) -> list[Path]:
    """error_vs_label_fraction.png (climb_b and Pose2Sim, mean ± std over seeds, log x) and
    stage_one_curves.png (every stage I run's loss and validation loss per epoch)."""
    from raypose.viz import plot_curves, plot_errorbars

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for test, title in (("climb_b", "held-out climb_b (protocol)"), ("pose2sim", "real Pose2Sim detections")):
        series = {}
        for m in methods:
            pts = [(f * 100, cell(results, m.name, f, test)) for f in fractions]
            pts = [(x, s) for x, s in pts if s.n]
            if pts:
                series[m.name] = ([x for x, _ in pts], [s.mean for _, s in pts],
                                  [s.std if s.n > 1 else 0.0 for _, s in pts])
        if series:
            paths.append(plot_errorbars(series, out_dir / f"error_vs_label_fraction_{test}.png",
                                        "labelled training sequences (%)", title=f"{title}: MPJPE vs labels",
                                        xscale="log"))
    curves = {f"{r['method']} s{r['seed']}": r["curve"] for r in results if r["kind"] == "pretrain"}
    if curves:
        paths.append(plot_curves(curves, out_dir / "stage_one_curves.png",
                                 title="stage I: loss and validation loss (cmu_07) per epoch"))
    return paths
