"""Accuracy on people the model never saw, under one fixed protocol, beside a same-run baseline.

Every recipe named by ``--configs`` is trained with **climb_b held out** (on all other shared real
mocap through the training rig), then climb_b is lifted the way a user's file would be
(:func:`raypose.infer.lift_sequence`, flip averaging, resampled to the model's rate) under the
protocol of the issue "Lifters that learn":

* 4 cameras at azimuths 0.6, 2.2, 3.8, 5.4 rad, 5 m from the subject, 1.2 m high, looking level,
  following the pelvis horizontally; f = 1145 px, c = (512, 515), image 1000 × 1002
  (:func:`raypose.config.protocol_rig`);
* climb_b resampled to 30 fps; Gaussian 2D noise σ = 2 px (fixed seed);
* MPJPE and P-MPJPE in mm over every frame of the four views;

and on the real Pose2Sim detections (4 calibrated cameras, against the triangulation). The
single-frame MLP baseline (``--baseline``) is trained on the same data in the same run.

    python bench/accuracy.py                                   # configs/wild.yaml vs the MLP
    python bench/accuracy.py --configs configs/wild.yaml configs/demo.yaml --seeds 0 1 2
    python bench/accuracy.py --quick                           # a smoke run (tests)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from raypose import config as config_mod  # noqa: E402
from raypose.protocol import HELD_OUT, protocol_views, score_protocol  # noqa: E402,F401

SHARED = ROOT.parent / "shared" / "data"


def held_out_config(path: str, overrides: Sequence[str], seed: int, quick: bool) -> config_mod.Config:
    """The recipe with climb_b moved to the test split (and no validation split: the bench
    scores the last model; the recipe's schedule is fixed in advance, not picked on climb_b)."""
    cfg = config_mod.load(path, list(overrides))
    extra: dict[str, Any] = {"data.train_subjects": [], "data.val_subjects": [],
                             "data.test_subjects": [HELD_OUT], "train.seed": seed}
    if quick:
        extra.update({"train.epochs": 1, "train.steps_per_epoch": 3, "train.stage_overrides": {}})
    return cfg.with_overrides(extra)


def train(cfg: config_mod.Config) -> tuple[Any, dict[str, float]]:
    """Train ``cfg``'s stages in this process (the Ray Train worker's loop, without Ray);
    returns the lifting model and the wall / CPU seconds spent."""
    from raypose.evaluate import split_chunks
    from raypose.train.local import fit_in_process
    from raypose.train.run import stage_config

    wall, cpu = time.perf_counter(), time.process_time()
    chunks, _ = split_chunks(cfg.data, "train", cfg.train.seed)
    model, history = fit_in_process(stage_config(cfg, "finetune"), chunks)
    return model.eval(), {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                          "train_clips": float(sum(h.get("train_clips", 0.0) for h in history))}


def stored_at(model: Any, precision: str) -> Any:
    """``model`` with its weights rounded as an export at ``precision`` stores them (what a
    shipped model made by ``jobs/export_model.py --precision`` lifts with)."""
    from raypose.checkpoints import dequantize_state, quantize_state

    if precision != "fp32":
        model.load_state_dict(dequantize_state(quantize_state(model.state_dict(), precision)))
    return model


def run(configs: Sequence[str], baseline: str, seeds: Sequence[int], overrides: Sequence[str],
        quick: bool, threads: int, precision: str = "fp32") -> list[dict[str, Any]]:
    import torch

    from raypose.evaluate import evaluate_calibrated, mean_over_cameras

    torch.set_num_threads(threads)
    mocap = SHARED / "mocap_h36m17.npz"
    test = protocol_views(mocap)
    if quick:
        test = [(kp[:90], j[:90]) for kp, j in test[:1]]
    rows = []
    for path in [*configs, *([baseline] if baseline else [])]:
        for seed in seeds:
            cfg = held_out_config(path, overrides if path != baseline else (), seed, quick)
            model, cost = train(cfg)
            weights = precision if path != baseline else "fp32"
            unrounded = score_protocol(model, cfg, test) if weights != "fp32" else None
            model = stored_at(model, weights)
            row = {"config": path, "model": cfg.model.name, "seed": seed, "weights": weights, **cost,
                   **({"protocol_fp32": unrounded} if unrounded else {}),
                   "protocol": score_protocol(model, cfg, test)}
            if not quick:
                cams = evaluate_calibrated(model, SHARED / "pose2sim_demo.npz", cfg.data.num_frames,
                                           cfg.data.stride, flip=True, model_fps=cfg.data.target_fps or None,
                                           causal=cfg.data.causal)
                row["pose2sim"] = mean_over_cameras(cams)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    p = row["protocol"]
    real = row.get("pose2sim")
    line = (f"{Path(row['config']).stem:<14} seed {row['seed']}  climb_b MPJPE {p['mpjpe']:6.1f} mm  "
            f"P-MPJPE {p['p_mpjpe']:6.1f} mm")
    if "protocol_fp32" in row:
        line += f" ({row['weights']}; fp32 {row['protocol_fp32']['mpjpe']:.1f} mm)"
    if real:
        line += f"  Pose2Sim MPJPE {real['mpjpe']:6.1f} P-MPJPE {real['p_mpjpe']:6.1f}"
    return line + f"  train {row['wall_s'] / 60:5.1f} min wall, {row['cpu_s'] / 60:5.1f} min CPU"


def summary(rows: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds per config, the baseline last."""
    lines = ["| recipe | model | seeds | climb_b MPJPE (mm) | climb_b P-MPJPE | Pose2Sim MPJPE | Pose2Sim P-MPJPE | train min (wall) |",
             "|---|---|---|---|---|---|---|---|"]
    for path in dict.fromkeys(r["config"] for r in rows):
        rs = [r for r in rows if r["config"] == path]

        def ms(get) -> str:
            v = np.array([get(r) for r in rs], dtype=np.float64)
            return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"

        real = all("pose2sim" in r for r in rs)
        lines.append(f"| {Path(path).stem} | {rs[0]['model']} | {len(rs)} | {ms(lambda r: r['protocol']['mpjpe'])} | "
                     f"{ms(lambda r: r['protocol']['p_mpjpe'])} | "
                     f"{ms(lambda r: r['pose2sim']['mpjpe']) if real else '–'} | "
                     f"{ms(lambda r: r['pose2sim']['p_mpjpe']) if real else '–'} | {ms(lambda r: r['wall_s'] / 60)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=[str(ROOT / "configs" / "wild.yaml")],
                   help="recipes to train and score (none: the baseline alone)")
    p.add_argument("--baseline", default=str(ROOT / "configs" / "mlp_wild.yaml"),
                   help="the single-frame MLP trained beside the recipes (\"\" skips it: experiments only)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every recipe (not to the baseline)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="score the recipes with weights rounded as exported at this precision")
    p.add_argument("--quick", action="store_true", help="3 steps and 90 test frames (smoke test)")
    p.add_argument("--out", default="", help="write the rows and the table as JSON here")
    args = p.parse_args(argv)
    rows = run(args.configs, args.baseline, args.seeds, args.overrides, args.quick, args.threads, args.precision)
    table = summary(rows)
    print(table)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows, "table": table},
                                             indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
