"""The label-scarcity study (`bench/label_study.py --quick`): real stage I → stage II on a
fraction of the labelled sequences as Ray tasks, scored under the fixed protocol and on real
detections, journalled so a rerun resumes without training again."""
from __future__ import annotations

import json
import math
import time

from raypose import label_study as ls
from raypose.study import Stat


def load_bench():
    from conftest import load_script

    return load_script("bench/label_study.py")


def test_cost_counts_stage_one_once_per_seed_in_every_fraction():
    results = [{"kind": "pretrain", "method": "p", "seed": 0, "cpu_s": 600.0},
               {"kind": "finetune", "method": "p", "seed": 0, "fraction": 0.05, "cpu_s": 60.0,
                "scores": {"climb_b": {"mpjpe": 100.0}}},
               {"kind": "finetune", "method": "p", "seed": 0, "fraction": 1.0, "cpu_s": 120.0,
                "scores": {"climb_b": {"mpjpe": 80.0}}}]
    assert ls.cpu_minutes(results, "p", 0.05).mean == 11.0 and ls.cpu_minutes(results, "p", 1.0).mean == 12.0
    assert ls.cell(results, "p", 1.0).mean == 80.0 and ls.cell(results, "p", 0.25).n == 0
    assert isinstance(ls.cell(results, "p", 0.05), Stat)


def test_quick_label_study_runs_every_cell_and_resumes_from_its_journal(ray_local, shared_data, tmp_path, capsys):
    bench = load_bench()
    journal, work = tmp_path / "journal.jsonl", tmp_path / "work"
    argv = ["--quick", "--methods", "mlp", "scratch", "pstmo", "--fractions", "0.05", "1.0",
            "--seeds", "0", "1", "--journal", str(journal), "--work-dir", str(work)]
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    pre = [e for e in entries if e["kind"] == "pretrain"]
    ft = [e for e in entries if e["kind"] == "finetune"]
    assert sorted((e["method"], e["seed"]) for e in pre) == [("pstmo", 0), ("pstmo", 1)]
    assert sorted((e["method"], e["seed"], e["fraction"]) for e in ft) == sorted(
        (m, s, f) for m in ("mlp", "scratch", "pstmo") for s in (0, 1) for f in (0.05, 1.0))
    for e in pre:
        assert e["curve"] and math.isfinite(e["curve"][-1]["val_loss"]) and e["cpu_s"] > 0
    for e in ft:
        assert 0 < e["scores"]["climb_b"]["p_mpjpe"] <= e["scores"]["climb_b"]["mpjpe"]
        assert e["scores"]["pose2sim"]["mpjpe"] > 0 and math.isfinite(e["curve"][-1]["val_mpjpe"])
    # 5 % of the training sequences (at least one per source) vs all of them, the same at a seed
    counts = {(e["method"], e["seed"], e["fraction"]): e["labelled_sequences"] for e in ft}
    assert counts[("mlp", 0, 0.05)] == counts[("pstmo", 0, 0.05)] < counts[("mlp", 0, 1.0)]
    assert "pstmo − scratch" in text and "held-out climb_b" in text and "Pose2Sim" in text
    # a rerun trains nothing and reports the same numbers
    t0 = time.perf_counter()
    assert bench.main(argv) == 0
    assert time.perf_counter() - t0 < 20 and len(journal.read_text().splitlines()) == len(entries)
    tables = text[text.index("**held-out"):]
    assert capsys.readouterr().out == tables
    # and draws its plots from the journal alone
    assert bench.main([*argv, "--report", "--out", str(tmp_path / "page.md")]) == 0
    page = (tmp_path / "page.md").read_text()
    assert tables.strip() in page
    for name in ("error_vs_label_fraction_climb_b.png", "error_vs_label_fraction_pose2sim.png",
                 "stage_one_curves.png"):
        assert f"(page/{name})" in page
        data = (tmp_path / "page" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
