"""3D pose completion on a person the model never saw: MPM stage I vs two simple baselines.

An MPM stage I (``configs/mpm_complete.yaml``: masked 2D modeling + lift, and masked 3D
modeling) is trained in this process on all shared real mocap **except climb_b** (the held-out
person of ``bench/accuracy.py``), then climb_b (world space, Z up, resampled to the model's 50 fps)
is hidden three ways and completed by ``raypose.complete`` as a user's file would be:

* **joints** — 5 of the 17 joints hidden in every frame, drawn anew per frame;
* **limbs** — in every 2 s block an arm or a leg (3 joints) hidden for 1 s;
* **frames** — 10-frame gaps (0.2 s), one every 40 frames (a quarter of the frames).

MPJPE in mm over the hidden joints only, world space, against: linear interpolation over time per
joint (edges held), and the nearest training pose (matched on the observed joints after root and
heading alignment; a wholly missing frame has nothing to match, so it is not scored there).

    python bench/completion.py                      # seed 0
    python bench/completion.py --seeds 0 1 2 --out docs/results/completion.json
    python bench/completion.py --quick              # a smoke run (tests)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from raypose import config as config_mod  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
HELD_OUT = "climb_b"
HIDE_SEED = 1234
CONFIG = ROOT / "configs" / "mpm_complete.yaml"


# ----------------------------------------------------------------------------- what is hidden

def hide_joints(poses: np.ndarray, rng: np.random.Generator, k: int = 5) -> np.ndarray:
    """``k`` of 17 joints per frame, drawn anew in every frame."""
    out = poses.copy()
    order = rng.random((len(poses), 17)).argsort(1)[:, :k]
    out[np.arange(len(poses))[:, None], order] = np.nan
    return out


def hide_limbs(poses: np.ndarray, rng: np.random.Generator, fps: float) -> np.ndarray:
    """In every 2 s block, one arm or leg (hip/shoulder, knee/elbow, ankle/wrist) for 1 s."""
    from raypose.skeleton import LIMBS

    out = poses.copy()
    block = int(round(2 * fps))
    for start in range(0, len(out), block):
        first = start + int(rng.integers(0, block // 2 + 1))
        out[first:first + block // 2, list(LIMBS[rng.integers(len(LIMBS))])] = np.nan
    return out


def hide_frames(poses: np.ndarray, rng: np.random.Generator, gap: int = 10, every: int = 40) -> np.ndarray:
    """Gaps of ``gap`` whole frames, one in every ``every`` frames (at a random offset)."""
    out = poses.copy()
    for start in range(0, len(out), every):
        first = start + int(rng.integers(1, every - gap))
        out[first:first + gap] = np.nan
    return out


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator, float], np.ndarray]] = {
    "joints": lambda p, rng, fps: hide_joints(p, rng),
    "limbs": hide_limbs,
    "frames": lambda p, rng, fps: hide_frames(p, rng),
}
DESCRIBE = {"joints": "5 of 17 joints per frame", "limbs": "an arm or leg, 1 s in every 2 s",
            "frames": "10-frame gaps (0.2 s), 1 in 4 frames"}


# ----------------------------------------------------------------------------- data and training

def sequences(subjects_out: Sequence[str], fps: float, only: Sequence[str] = ()) -> list[np.ndarray]:
    """World-space Z-up sequences of the shared mocap at ``fps``: ``only`` these subjects, or all
    but ``subjects_out``."""
    from raypose.data.sources.mocap import read_mocap

    out = []
    for f in ("mocap_h36m17.npz", "cmu_h36m17.npz"):
        for rec in read_mocap(SHARED / f, fps):
            if (rec.subject in only) if only else (rec.subject not in subjects_out):
                out.append(rec.positions_3d.astype(np.float64))
    return out


def held_out_config(seed: int, quick: bool, overrides: Sequence[str] = ()) -> config_mod.Config:
    cfg = config_mod.load(str(CONFIG), list(overrides))
    extra: dict[str, Any] = {"data.train_subjects": [], "data.val_subjects": [],
                             "data.test_subjects": [HELD_OUT], "train.seed": seed}
    if quick:
        extra.update({"train.epochs": 1, "train.steps_per_epoch": 3, "train.stage_overrides": {}})
    return cfg.with_overrides(extra)


def train(cfg: config_mod.Config, checkpoint_dir: str = "") -> tuple[Any, dict[str, float]]:
    """MPM stage I in this process (the Ray Train worker's loop without Ray); model and cost.
    With ``checkpoint_dir`` the model is also written there as a regular checkpoint."""
    from raypose.evaluate import split_chunks
    from raypose.train.local import fit_in_process
    from raypose.train.run import stage_config

    wall, cpu = time.perf_counter(), time.process_time()
    chunks, _ = split_chunks(cfg.data, "train", cfg.train.seed)
    model, history = fit_in_process(stage_config(cfg, "pretrain"), chunks, checkpoint_dir or None)
    return model.eval(), {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                          "last_loss": float(history[-1].get("loss", float("nan"))) if history else float("nan")}


# ----------------------------------------------------------------------------- scoring

def score(method: Callable[[np.ndarray], np.ndarray], tests: list[tuple[np.ndarray, np.ndarray]]
          ) -> dict[str, float]:
    """MPJPE (mm) over hidden joints of every test sequence; frames a method left NaN are not
    scored (reported as ``scored``, the fraction of hidden joints it filled)."""
    errs, total = [], 0
    for truth, partial in tests:
        hidden = ~np.isfinite(partial).all(-1)
        filled = method(partial)
        err = np.linalg.norm(filled - truth, axis=-1)[hidden]
        total += err.size
        errs.append(err[np.isfinite(err)])
    e = np.concatenate(errs) * 1000
    return {"mpjpe": float(e.mean()) if e.size else float("nan"), "scored": e.size / max(total, 1),
            "hidden_joints": int(total)}


def run(seeds: Sequence[int], quick: bool, threads: int, overrides: Sequence[str],
        checkpoint_dir: str = "") -> dict[str, Any]:
    import torch

    from raypose.complete import Completer, NearestPose, complete_sequence, interpolate_missing

    torch.set_num_threads(threads)
    fps = float(held_out_config(0, quick, overrides).data.target_fps)
    truth = sequences((), fps, only=[HELD_OUT])
    if quick:
        truth = [t[:300] for t in truth]
    rng = np.random.default_rng(HIDE_SEED)
    tests = {c: [(t, hide(t, rng, fps)) for t in truth] for c, hide in CONDITIONS.items()}
    t0 = time.perf_counter()
    bank = NearestPose.from_sequences(sequences([HELD_OUT], fps), step=4 if quick else 1)
    baselines = {"interpolation": {c: score(interpolate_missing, ts) for c, ts in tests.items()},
                 "nearest_pose": {c: (score(bank.fill, ts) if c != "frames" else None)
                                  for c, ts in tests.items()}}
    print(f"baselines scored in {time.perf_counter() - t0:.0f} s (bank of {len(bank.bank)} training poses)",
          flush=True)
    rows = []
    for seed in seeds:
        cfg = held_out_config(seed, quick, overrides)
        model, cost = train(cfg, f"{checkpoint_dir}/seed{seed}" if checkpoint_dir else "")
        completer = Completer(model, cfg.data.num_frames, fps)
        mpm = {c: score(lambda p: complete_sequence(completer, p, fps, "z").poses, ts) for c, ts in tests.items()}
        rows.append({"seed": seed, **cost, "mpm": mpm})
        print(f"seed {seed}: " + "  ".join(f"{c} {m['mpjpe']:.1f} mm" for c, m in mpm.items())
              + f"  (train {cost['wall_s'] / 60:.1f} min wall)", flush=True)
    return {"config": str(CONFIG.relative_to(ROOT)), "held_out": HELD_OUT, "fps": fps,
            "frames": int(sum(len(t) for t in truth)), "conditions": DESCRIBE,
            "baselines": baselines, "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per method, one column per condition (MPM mean ± std over seeds)."""
    conds = list(CONDITIONS)
    lines = ["| method | " + " | ".join(f"{c}: {DESCRIBE[c]}" for c in conds) + " |",
             "|---|" + "---|" * len(conds)]
    seeds = len(result["rows"])
    cells = []
    for c in conds:
        v = np.array([r["mpm"][c]["mpjpe"] for r in result["rows"]])
        cells.append(f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}")
    lines.append(f"| MPM stage I ({seeds} seed{'s' if seeds > 1 else ''}) | " + " | ".join(cells) + " |")
    for name, label in (("interpolation", "linear interpolation over time"),
                        ("nearest_pose", "nearest training pose")):
        lines.append(f"| {label} | " + " | ".join(
            "–" if result["baselines"][name][c] is None else f"{result['baselines'][name][c]['mpjpe']:.1f}"
            for c in conds) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to configs/mpm_complete.yaml")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 training steps, 300 test frames (smoke test)")
    p.add_argument("--out", default="", help="write the results and the table as JSON here")
    p.add_argument("--checkpoint-dir", default="", help="also keep each seed's model (seed<N>/ here)")
    args = p.parse_args(argv)
    result = run(args.seeds, args.quick, args.threads, args.overrides, args.checkpoint_dir)
    result["table"] = table(result)
    print(result["table"])
    if args.out:
        result["command"] = " ".join(["python", "bench/completion.py", *(argv if argv is not None else sys.argv[1:])])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
