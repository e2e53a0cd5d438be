"""Lifting by Image: two-stage progressive training (stage 1 broad query, stage 2 focused).

    python jobs/train_image_lift.py --config configs/image_lift_stage1.yaml
    python jobs/train_image_lift.py --config configs/image_lift_stage2.yaml --init runs/image_lift/stage1.pt
    python jobs/train_image_lift.py --config configs/image_lift_stage1_smoke.yaml --stage 1

`--stage` (or `model.extra.lift_stage` in the config) picks the stage; stage 2 needs the
stage-1 checkpoint (`--init`). Data: rendered crops of the mocap subjects in
data.train_subjects / data.test_subjects, or image folders (model.extra.image_data). Prints
progress and test MPJPE / P-MPJPE (mm) with background-attention shares, and last
`checkpoint: <path>`.
"""
from __future__ import annotations

import _common


def main(argv: list[str] | None = None) -> str:
    p = _common.parser(__doc__)
    p.add_argument("--stage", type=int, choices=(1, 2), default=None, help="1 = broad query, 2 = focused")
    p.add_argument("--init", default="", help="stage-1 checkpoint (stage 2)")
    p.add_argument("--out", default="", help="output folder (default train.storage_path or runs/)")
    args = p.parse_args(argv)
    cfg = _common.config.from_cli(args)
    stage = args.stage or int(cfg.model.extra.get("lift_stage", 1))
    import torch

    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    from raypose.image_training import run

    path = run(cfg, stage, args.init or cfg.train.init, args.out)
    _common.finish(path)
    return path


if __name__ == "__main__":
    main()
