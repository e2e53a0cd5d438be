"""bench/accuracy.py: the fixed protocol on held-out climb_b, end to end in a smoke run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_protocol_views_are_the_documented_test(shared_data, script):
    bench = script("bench/accuracy.py")
    test = bench.protocol_views(shared_data / "mocap_h36m17.npz")
    assert len(test) == 4                                      # climb_4 seen by the 4 protocol cameras
    kp, target = test[0]
    assert kp.shape[0] == int((2303 - 1) / 120 * 30) + 1       # resampled to 30 fps
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < 1000) & (kp[..., 1] >= 0) & (kp[..., 1] < 1002)
    assert inside.all(-1).mean() > 0.99
    np.testing.assert_allclose(target[:, 0], 0)                # root-relative


def test_quick_run_trains_scores_and_writes(shared_data, tmp_path, script):
    bench = script("bench/accuracy.py")
    out = tmp_path / "acc.json"
    assert bench.main(["--quick", "--threads", "1", "--precision", "int8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [Path(r["config"]).stem for r in result["rows"]] == ["wild", "mlp_wild"]
    assert [r["weights"] for r in result["rows"]] == ["int8", "fp32"]        # the baseline is not shipped
    assert "protocol_fp32" in result["rows"][0]
    for row in result["rows"]:
        assert np.isfinite(row["protocol"]["mpjpe"]) and row["protocol"]["frames"] == 90
        assert row["train_clips"] > 0
    held = bench.held_out_config(str(REPO / "configs" / "wild.yaml"), [], 0, quick=False)
    assert held.data.test_subjects == ["climb_b"] and not held.data.train_subjects
    assert "| wild | window_mlp |" in result["table"]
