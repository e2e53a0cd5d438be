"""Label-scarcity study: stage I on every sequence's 2D, stage II on 1 / 5 / 25 / 100 % of the
3D labels, against the same lifter from scratch and a single-frame MLP (issue "Does masked
pretraining pay off?").

    python bench/label_study.py                      # the whole table → docs/results/label_study.jsonl
    python bench/label_study.py --methods scratch pstmo --fractions 0.05 --seeds 0 1 2
    python bench/label_study.py --report             # only print the tables of the journal
    python bench/label_study.py --quick              # a minute-sized smoke run (tests)

Every run is journalled as it ends (``--journal``); a re-run skips what is there, so an
interrupted study resumes. Methods: ``configs/label_study/<name>.yaml``; test: held-out climb_b
under the fixed protocol (:mod:`raypose.protocol`) and the real Pose2Sim detections.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raypose import label_study as ls  # noqa: E402
from raypose.viz import format_table  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CONFIGS = ROOT / "configs" / "label_study"
METHODS = [
    ls.Method("mlp", "single-frame MLP (Martinez), no stage I", pretrain=False),
    ls.Method("scratch", "P-STMO-S from scratch", pretrain=False),
    ls.Method("scratch_long", "P-STMO-S from scratch, 1.5x the steps (a pretrained run's CPU time)", pretrain=False),
    ls.Method("pstmo", "P-STMO: masked 2D (spatio-temporal) stage I", pretrain=True),
    ls.Method("mpm", "MPM: masked 2D + masked 3D stage I", pretrain=True),
    ls.Method("aptpose", "APTPose: hierarchical masks, product fusion, 2D + 3D + reprojection", pretrain=True),
]


def report(results: Sequence[dict], methods: Sequence[ls.Method], fractions: Sequence[float]) -> str:
    """The study's tables as Markdown."""
    out = []
    for test, title in (("climb_b", "held-out climb_b (protocol), MPJPE mm"),
                        ("pose2sim", "real Pose2Sim detections, MPJPE mm")):
        out += [f"**{title}** (mean ± std over seeds; columns: labelled fraction of the training sequences)", "",
                format_table(ls.fraction_table(results, methods, fractions, test)), ""]
        for reference, skip in (("scratch", ()), ("scratch_long", ("scratch",))):  # equal steps; equal CPU
            others = [m for m in methods if m.name not in skip]
            if any(m.name == reference for m in methods):
                out += [format_table(ls.against(results, others, fractions, reference, test)), ""]
    out += ["**CPU minutes per run** (stage I at the same seed + stage II)", "",
            format_table(ls.cost_table(results, methods, fractions)), ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=[m.name for m in METHODS],
                   choices=[m.name for m in METHODS])
    p.add_argument("--fractions", type=float, nargs="+", default=list(ls.FRACTIONS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--journal", default=str(ROOT / "docs" / "results" / "label_study.jsonl"))
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "label_study"),
                   help="stage I checkpoints (kept for resuming)")
    p.add_argument("--quick", action="store_true", help="1 epoch of 3 steps per stage, 60 test frames")
    p.add_argument("--report", action="store_true", help="print the journal's tables; train nothing")
    p.add_argument("--out", default="", help="also write the tables and the plots as a Markdown page "
                                              "(plots in the folder of the same name), e.g. "
                                              "docs/results/label_study.md")
    args = p.parse_args(argv)
    methods = [m for m in METHODS if m.name in args.methods]
    schedule = (ls.Schedule(pretrain_epochs=1, finetune_epochs=1, steps_per_epoch=3, test_frames=60)
                if args.quick else ls.Schedule())
    journal = Path(args.journal)
    if args.report:
        results = ls.read_journal(journal, schedule)
    else:
        results = ls.run_study(CONFIGS, methods, args.seeds, args.fractions, schedule,
                               SHARED / "mocap_h36m17.npz", SHARED / "pose2sim_demo.npz",
                               Path(args.work_dir), journal)
    tables = report(results, methods, args.fractions)
    print(tables)
    if args.out:
        page = Path(args.out)
        pics = ls.plots(results, methods, args.fractions, page.with_suffix(""))
        page.write_text("\n".join([
            "# Label-scarcity study", "",
            f"Rendered by `python bench/label_study.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
            f"from the journal `{Path(args.journal).name}` ({sum(r['kind'] == 'finetune' for r in results)} "
            f"fine-tunings, {sum(r['kind'] == 'pretrain' for r in results)} stage I runs). Setting: "
            "`configs/label_study/base.yaml`; test protocol: `raypose/protocol.py`.", "",
            tables, *[f"![{p.stem}]({page.with_suffix('').name}/{p.name})" for p in pics], ""]))
        print(f"written: {page} (+ {len(pics)} plots)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
