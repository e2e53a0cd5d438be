"""APTPose's SEM fusion on the study's budget: test MPJPE per seed and the fused features' scale.

    python bench/apt_fusion.py --rows apt_mul apt_add --seeds 0 1 2        # ≈1 min per trial, 1 thread
    python bench/apt_fusion.py --rows apt_mul --fusion mul_raw             # the reference's raw product

Each trial is :func:`raypose.study.run_trial` (stage I → stage II on 5 % of the labels → held-out
climb_b under the fixed protocol), one thread, in this process. A hook on the encoder's ``Fusion`` records, over every training
step of both stages, the largest branch RMS and the fused RMS and peak |entry| — the numbers
that showed the unnormalised product's runaway scale (:class:`raypose.models.blocks.Fusion`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from raypose import study  # noqa: E402
from raypose.models import blocks  # noqa: E402
from raypose.study import Budget, Row  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["apt_mul", "apt_add"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--fusion", default=None, help="override model.fusion of every row (e.g. mul_raw)")
    p.add_argument("--epochs", type=int, default=0, help="reduced budget: epochs per stage (0: the configs')")
    p.add_argument("--steps", type=int, default=0, help="reduced budget: steps per epoch (0: the configs')")
    p.add_argument("--protocol-mocap", default=str(REPO.parent / "shared" / "data" / "mocap_h36m17.npz"))
    args = p.parse_args(argv)

    stats: list[tuple[float, float, float]] = []

    def record(module, inputs, out):
        if module.training:
            branch = max(float(f.detach().pow(2).mean().sqrt()) for f in inputs[0])
            stats.append((branch, float(out.detach().pow(2).mean().sqrt()), float(out.detach().abs().max())))

    real_init = blocks.Fusion.__init__

    def init(self, mode, dim, n):
        real_init(self, args.fusion or mode, dim, n)
        self.register_forward_hook(record)

    blocks.Fusion.__init__ = init
    budget = Budget(epochs=args.epochs, steps_per_epoch=args.steps)
    for name in args.rows:
        errors = []
        for seed in args.seeds:
            stats.clear()
            res = study.run_trial(str(REPO / "configs" / "study"), Row(name, name), seed, budget,
                                  protocol_mocap=args.protocol_mocap)
            mpjpe = res["scores"][study.PROTOCOL]["mpjpe"]
            errors.append(mpjpe)
            print(f"{name} fusion={args.fusion or 'config'} seed {seed}: MPJPE {mpjpe:.1f} mm; "
                  f"max branch RMS {max(s[0] for s in stats):.2f}, "
                  f"fused RMS max {max(s[1] for s in stats):.2f}, "
                  f"fused peak |x| {max(s[2] for s in stats):.1f}; {res['seconds']:.0f} s", flush=True)
        sd = statistics.stdev(errors) if len(errors) > 1 else 0.0
        print(f"{name}: {statistics.mean(errors):.1f} ± {sd:.1f} mm over seeds {args.seeds}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
