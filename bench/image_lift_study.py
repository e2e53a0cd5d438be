"""Study: does lifting with image cues beat lifting from 2D alone, on rendered real mocap?

    python bench/image_lift_study.py            # full (10–20 min on 2 shared CPU cores) → docs/image_lift.md
    python bench/image_lift_study.py --quick    # CI-sized (≈2 min), prints the table only

Held-out performer: train on crops rendered from climb_a + deepmimic, test on climb_b (the
shared mocap, 2 virtual cameras per clip). Every row gets the same budget: S1 stage-1 steps
then S2 stage-2 steps at the same batch size and learning rate (the single-stage MLP baseline
gets S1 + S2 steps). Rows: the Martinez MLP ('baseline'); the image-lifting model with the image
branch off (2D alone, same transformer); with image cues but no pose-guided layer; with it, for
r ∈ {0.01, 0.3, 1} (stage 1 is trained once per variant and shared by its r rows).
Background-attention share (paper, Table 5): keypoint attention on patches whose centre is
outside circles around every keypoint — 30 px in 256×192 crops, scaled to the study's crop.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raypose.image_training import (evaluate, ordered_batches, random_batches, render_split,  # noqa: E402
                                    train_stage)
from raypose.metrics import mpjpe, p_mpjpe  # noqa: E402
from raypose.models import build  # noqa: E402

TRAIN, TEST = ("climb_a", "deepmimic"), ("climb_b",)


def baseline_row(train, test, steps: int, batch: int, lr: float, seed: int) -> dict:
    """Martinez MLP on the same 2D (single stage, S1 + S2 steps, same MSE)."""
    torch.manual_seed(seed)
    model = build("baseline", 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    it = random_batches(train, batch, np.random.default_rng(seed))
    model.train()
    for _ in range(steps):
        b = next(it)
        loss = (model(b["pose_2d"])["centre"] - b["pose_3d"]).pow(2).sum(-1).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(b["pose_2d"])["centre"][:, 0] for b in ordered_batches(test, 256)]) * 1000
    target = torch.as_tensor(test["joints_3d"]) * 1000
    return {"refined_mpjpe": float(mpjpe(pred, target)), "refined_p_mpjpe": float(p_mpjpe(pred, target))}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps1", type=int, default=None)
    p.add_argument("--steps2", type=int, default=None)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--frame-step", type=int, default=None)
    p.add_argument("--backbone", default="resnet18_w16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="markdown file (full run default: docs/image_lift.md)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    s1 = args.steps1 or (30 if args.quick else 600)
    s2 = args.steps2 or (15 if args.quick else 300)
    step = args.frame_step or (64 if args.quick else 8)
    size = (128, 96)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    train = render_split(TRAIN, rng, size, cameras=2, frame_step=step)
    test = render_split(TEST, np.random.default_rng(args.seed + 1), size, cameras=2, frame_step=step)
    print(f"rendered {len(train['image'])} train / {len(test['image'])} test crops {size} "
          f"in {time.time() - t0:.0f}s", flush=True)
    radius = 30.0 * size[0] / 256
    common = dict(dim=64, ffn_dim=128, heads=4, depth=2, dropout=0.1, backbone=args.backbone,
                  image_height=size[0], image_width=size[1], patch_stride=8)
    log = lambda s: print("  " + s, flush=True)  # noqa: E731

    def train_two(variant_kw: dict, ratios: list[float], label: str) -> list[dict]:
        torch.manual_seed(args.seed)
        model = build("image_lift", 1, **common, **variant_kw)
        it = random_batches(train, args.batch, np.random.default_rng(args.seed))
        train_stage(model, 1, it, s1, args.lr, log=log, log_every=max(1, s1 // 4))
        rows = []
        for r in ratios:
            m = copy.deepcopy(model)
            m.keep_ratio = r
            torch.manual_seed(args.seed + 1)
            it2 = random_batches(train, args.batch, np.random.default_rng(args.seed + 1))
            train_stage(m, 2, it2, s2, args.lr, log=log, log_every=max(1, s2 // 2))
            res = evaluate(m, ordered_batches(test, 128), radius)
            row = {"row": label if not variant_kw.get("use_image", True) else f"{label}, r={r:g}", **res}
            print(f"{row['row']}: " + " ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
            rows.append(row)
        return rows

    rows = [{"row": "MLP baseline (Martinez), 2D alone", **baseline_row(train, test, s1 + s2, args.batch, args.lr, args.seed)}]
    print(rows[0], flush=True)
    rows += train_two({"use_image": False}, [1.0], "image_lift, image branch off (2D alone)")
    rows += train_two({"pose_guided": False}, [0.3], "image cues, no pose-guided layer")
    rows += train_two({}, [0.01, 0.3, 1.0], "image cues + pose-guided layer")
    elapsed = time.time() - t0
    table = markdown(rows, radius)
    print(table)
    print(f"total {elapsed / 60:.1f} min")
    out = args.out if args.out is not None else ("" if args.quick else "docs/image_lift.md")
    if out:
        cmd = "python bench/image_lift_study.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
        write_doc(Path(out), table, cmd, dict(steps1=s1, steps2=s2, batch=args.batch, lr=args.lr, frame_step=step,
                                              train=len(train["image"]), test=len(test["image"]), size=size,
                                              backbone=args.backbone, minutes=elapsed / 60))
    return rows


def _f(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def markdown(rows: list[dict], radius: float) -> str:
    head = ("| model | coarse MPJPE | refined MPJPE | refined P-MPJPE | bg attention layer 1 | "
            "bg attention layer 3 (last) | bg share of patches (uniform) |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['row']} | {_f(r.get('coarse_mpjpe'))} | {_f(r.get('refined_mpjpe'))} | "
                     f"{_f(r.get('refined_p_mpjpe'))} | {_pct(r.get('bg_layer1'))} | {_pct(r.get('bg_layer3'))} | "
                     f"{_pct(r.get('bg_uniform'))} |")
    return "\n".join(lines)


def write_doc(path: Path, table: str, cmd: str, info: dict) -> None:
    text = path.read_text() if path.is_file() else ""
    start, end = "<!-- study:start -->", "<!-- study:end -->"
    block = (f"{start}\nCommand: `{cmd}` ({info['minutes']:.1f} min on this 2-core CPU machine).\n\n"
             f"Setup: {info['train']} training crops (climb_a + deepmimic) / {info['test']} test crops "
             f"(climb_b, a performer never seen in training), {info['size'][0]}×{info['size'][1]} crops "
             f"(the paper uses 256×192; reduced so the study fits the CPU budget), backbone "
             f"`{info['backbone']}` (random init, no pose pretraining), patch stride 8 → 16×12 = 192 "
             f"image tokens, d = 64, 2 stage-2 layers, batch {info['batch']}, Adam lr {info['lr']:g}; "
             f"stage 1: {info['steps1']} steps, stage 2: {info['steps2']} steps for every row; frame "
             f"step {info['frame_step']}, 2 virtual cameras per clip. MPJPE / P-MPJPE in mm on the test "
             f"performer. Background share: keypoint attention outside 15-px circles (the paper's 30 px "
             f"scaled to the 128-px crop) around every keypoint, averaged over keypoints and test crops.\n\n"
             f"{table}\n{end}")
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    main()
