"""bench/trajectory.py: the trajectory head beside the same recipe without it, on held-out climb_b
under the accuracy protocol (following and static cameras), in a smoke run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_static_protocol_cameras_see_the_climber_travel(shared_data, script):
    bench = script("bench/trajectory.py")
    follow = bench.protocol_tracks(shared_data / "mocap_h36m17.npz", follow=True)
    static = bench.protocol_tracks(shared_data / "mocap_h36m17.npz", follow=False)
    assert len(follow) == len(static) == 4
    # following cameras keep the pelvis 5 m ahead; static ones see it travel (climb_b moves ~4 m)
    np.testing.assert_allclose(follow[0]["root"][:, [0, 2]], [[0.0, 5.0]] * len(follow[0]["root"]), atol=1e-4)
    assert np.ptp(static[0]["root"][:, 0]) > 2.0
    for t in static:   # the root the bench scores is the pelvis the 2D shows
        cam = t["camera"]
        pelvis_px = cam.project(t["root"], distort=False)
        assert np.abs(pelvis_px - t["kp"][:, 0, :2]).mean() < 5.0              # σ = 2 px noise
        np.testing.assert_allclose(t["pose"][:, 0], 0.0)


def test_quick_run_scores_both_runs_and_draws_the_path(shared_data, tmp_path, script):
    bench = script("bench/trajectory.py")
    out, fig = tmp_path / "traj.json", tmp_path / "traj.png"
    assert bench.main(["--config", str(REPO / "configs" / "pstmo_s_smoke.yaml"), "--quick", "--threads", "1",
                       "--out", str(out), "--figure", str(fig)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["trajectory"] for r in rows] == [True, False]        # with the head, then the baseline
    for name in ("protocol", "static"):
        with_head, without = rows[0][name], rows[1][name]
        assert np.isfinite(with_head["mpjpe"]) and np.isfinite(without["mpjpe"]) and with_head["frames"] == 90
        assert with_head["root_error"] > 0 and with_head["root_error_z"] <= with_head["root_error"]
        assert "root_error" not in without
    assert fig.stat().st_size < 200_000 and fig.read_bytes()[:4] == b"\x89PNG"
