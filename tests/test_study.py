"""The accuracy-study machinery: seed statistics, the verdict rule, and a real reduced study
(`bench/study.py --quick`: real mocap, real pretrain → fine-tune → evaluate per seed as Ray
tasks, real detections from calibrated cameras) that writes its page, raw numbers and plots."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from raypose.errors import RayposeDataError
from raypose.evaluate import evaluate_calibrated
from raypose.models import build
from raypose.study import Budget, Stat, compare

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    from conftest import load_script

    return load_script("bench/study.py")


def test_stat_is_mean_and_sample_std():
    s = Stat.of([10.0, 12.0, 14.0])
    assert (s.mean, s.std, s.n) == (12.0, 2.0, 3) and str(s) == "12.0 ± 2.0"
    assert math.isnan(Stat.of([5.0]).std) and str(Stat.of([5.0])) == "5.0"


def test_a_difference_is_called_only_beyond_twice_its_standard_error():
    a, b = Stat.of([10.0, 11.0, 12.0]), Stat.of([20.0, 21.0, 22.0])
    d = compare(a, b)
    assert d.diff == pytest.approx(-10.0) and d.se == pytest.approx(math.sqrt(2 / 3)) and d.verdict == "lower"
    assert compare(b, a).verdict == "higher"
    assert compare(Stat.of([10.0, 14.0, 18.0]), Stat.of([12.0, 16.0, 20.0])).verdict == "within noise"
    assert compare(Stat.of([1.0]), Stat.of([2.0])).verdict == "too few seeds"


def test_budget_replaces_the_schedule_only_when_set():
    assert Budget().overrides() == {}
    assert Budget(epochs=2, steps_per_epoch=5).overrides() == {
        "train.epochs": 2, "train.steps_per_epoch": 5, "train.stage_overrides": {}}
    # a row's per-stage settings stay; only the stage lengths are replaced
    staged = Budget(epochs=1).overrides({"finetune": {"train.epochs": 10, "data.label_fraction": 0.05}})
    assert staged["train.stage_overrides"] == {"finetune": {"train.epochs": 1, "data.label_fraction": 0.05}}


def test_every_study_row_has_a_config_that_loads():
    from raypose import config

    bench = load_bench()
    names = [r.name for r in bench.ROWS]
    assert len(names) == len(set(names)) == len(list((REPO / "configs" / "study").glob("*.yaml"))) - 1
    for row in bench.ROWS:
        cfg = config.load(REPO / "configs" / "study" / f"{row.name}.yaml")
        assert cfg.data.test_subjects == ["climb_b"] and "climb_b" not in cfg.data.train_subjects
        assert row.pretrain == (cfg.model.name != "baseline" and row.name != "scratch")
    for _, shown, claims in bench.CLAIMS:
        assert {a for a, b, _ in claims} | {b for a, b, _ in claims} <= set(shown) <= set(names)


def test_calibrated_evaluation_refuses_bad_files(tmp_path):
    model = build("baseline", 1)
    with pytest.raises(RayposeDataError, match="not found"):
        evaluate_calibrated(model, tmp_path / "nope.npz", 1)
    np.savez(tmp_path / "partial.npz", keypoints_coco17=np.zeros((1, 5, 17, 3)))
    with pytest.raises(RayposeDataError, match="missing arrays"):
        evaluate_calibrated(model, tmp_path / "partial.npz", 1)


@pytest.mark.slow
def test_quick_study_writes_page_numbers_and_plots(ray_local, shared_data, tmp_path):
    bench = load_bench()
    page = tmp_path / "results.md"
    results = bench.main(["--quick", "--out", str(page), "--protocol-mocap", str(shared_data / "mocap_h36m17.npz"),
                          "--calibrated", str(shared_data / "pose2sim_demo.npz")])
    rows, seeds, budget, robust = bench.quick_setup()
    assert sorted((r["row"], r["seed"]) for r in results) == sorted((r.name, s) for r in rows for s in seeds)
    for r in results:
        headline = r["scores"][f"noise={budget.headline_noise:g}"]
        assert all(math.isfinite(v) and v > 0 for v in headline.values())
        assert headline["p_mpjpe"] <= headline["mpjpe"]
        assert r["scores"]["real_detections"]["mpjpe"] > 0
        assert 0 < r["scores"]["protocol"]["p_mpjpe"] <= r["scores"]["protocol"]["mpjpe"]
        assert (r["pretrain_loss"] is not None) == (r["row"] == "pretrained")
        if r["row"] in robust:
            assert {f"occlude={p}" for p in budget.occlusions} <= set(r["scores"])
    # seeds really differ (different initialisation and data order)
    by_seed = [r["scores"][f"noise={budget.headline_noise:g}"]["mpjpe"] for r in results if r["row"] == "scratch"]
    assert by_seed[0] != by_seed[1]
    text = page.read_text()
    for row in rows:
        assert f"| {row.name} " in text
    assert "pretrained − scratch" in text and "±" in text
    saved = json.loads((tmp_path / "results" / "study.json").read_text())
    assert len(saved["results"]) == len(results)
    # the journal makes a rerun resume: nothing is trained again, the same numbers come back
    journal = (tmp_path / "results" / "trials.jsonl").read_text().splitlines()
    assert len(journal) == len(results)
    t0 = time.perf_counter()
    rerun = bench.main(["--quick", "--out", str(page), "--protocol-mocap", str(shared_data / "mocap_h36m17.npz"),
                        "--calibrated", str(shared_data / "pose2sim_demo.npz")])
    assert time.perf_counter() - t0 < 20 and [r["scores"] for r in rerun] == [r["scores"] for r in results]
    assert len((tmp_path / "results" / "trials.jsonl").read_text().splitlines()) == len(results)
    text = page.read_text()
    assert f"resumed from its journal, which held {len(results)} trials" in text  # its wall time is not the study's
    again = tmp_path / "again.md"
    bench.main(["--from-json", str(tmp_path / "results" / "study.json"), "--out", str(again)])
    assert again.read_text() == text.replace("(results/", "(again/").replace("`results/", "`again/")
    for png in ("error_vs_noise.png",):
        data = (tmp_path / "results" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_a_paired_difference_cancels_what_a_seed_shares():
    from raypose.study import compare_paired

    # the seeds move both rows together (±40 mm) while a is 10 ± 1 mm better at every seed
    a, b = {0: 150.0, 1: 229.0, 2: 190.0}, {0: 160.0, 1: 240.0, 2: 199.0}
    assert compare(Stat.of(list(a.values())), Stat.of(list(b.values()))).verdict == "within noise"
    d = compare_paired(a, b)
    assert d.verdict == "lower" and d.diff == -10.0 and d.se == pytest.approx(1 / math.sqrt(3))
    assert compare_paired({0: 1.0, 1: 2.0}, {1: 3.0, 2: 4.0}).verdict == "too few seeds"  # one seed in common
