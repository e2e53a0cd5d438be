"""jobs/prepare_data.py end to end (local and S3) and the APTPose still-noising pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raypose.config import DataConfig, SourceConfig
from raypose.data import store
from raypose.data.augment import StillNoise, noise_still, person_scale, still_to_sequence
from raypose.data.pipeline import raw_views
from raypose.data.record import SequenceRecord

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def job(script):
    return script("jobs/prepare_data.py")


def test_parse_source(job):
    assert job.parse_source("mocap:") == SourceConfig(name="mocap", format="mocap", path="")
    assert job.parse_source("h36m:/d/x.npz:h36m_cpn") == SourceConfig(name="h36m_cpn", format="h36m", path="/d/x.npz")
    assert job.parse_source("amass:s3://b/amass") == SourceConfig(name="amass", format="amass", path="s3://b/amass")


def test_prepare_mocap_local_then_rerun_is_idempotent(job, tmp_path, capsys):
    out = tmp_path / "store"
    m = job.main(["--source", "mocap:", "--out", str(out), "--shard-mb", "0.5", "--virtual-cameras", "2", "--seed", "3"])
    text = capsys.readouterr().out
    assert f"rows {m['rows']}" in text and f"shards {len(m['shards'])}" in text and "manifest.json" in text
    assert json.loads((out / "manifest.json").read_text()) == m
    expected = raw_views(SourceConfig(virtual_cameras=2), DataConfig(), seed=3, index=0)
    got = {(v.subject, v.action, v.camera.name): v for v in store.read_store(str(out))}
    assert len(got) == len(expected) == m["rows"]
    for e in expected:
        g = got[(e.subject, e.action, e.camera.name)]
        np.testing.assert_array_equal(g.keypoints_2d, e.keypoints_2d)
        np.testing.assert_array_equal(g.joints_3d, e.joints_3d)
    assert m["frames"] == sum(len(e.keypoints_2d) for e in expected)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    assert job.main(["--source", "mocap:", "--out", str(out), "--shard-mb", "0.5", "--virtual-cameras", "2",
                     "--seed", "3"]) == m
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before


def test_prepare_to_s3_with_explicit_splits(job, s3_server):
    uri = "s3://rp-job/mocap"
    m = job.main(["--source", "mocap:", "--out", uri, "--s3-endpoint", s3_server.endpoint,
                  "--virtual-cameras", "1", "--set", "data.test_subjects=[climb_b]",
                  "--set", "data.val_subjects=[deepmimic]"])
    assert m["splits"] == {"train": ["climb_a", "cmu_02", "cmu_06"], "val": ["deepmimic"], "test": ["climb_b"]}
    assert store.read_manifest(uri, s3_server.endpoint) == m
    assert sum(1 for _ in store.read_store(uri, s3_server.endpoint)) == m["rows"]


def _real_still() -> np.ndarray:
    """One real OpenPose detection (Pose2Sim demo, camera 0, frame 0), pixels + confidence."""
    d = np.load(Path(REPO.parent / "shared" / "data" / "pose2sim_demo.npz"))
    kp = d["keypoints_coco17"][0, 0].copy()
    kp[3, 2] = 0.0   # one undetected joint
    return kp


def test_still_noising_replicates_jitters_and_keeps_labels(shared_data):
    kp = _real_still()
    params = StillNoise(num_frames=81, jitter=0.005, noise=0.01)
    seq = noise_still(kp, params, np.random.default_rng(0))
    assert seq.shape == (81, 17, 3) and seq.dtype == np.float32
    np.testing.assert_array_equal(seq[..., 2], np.broadcast_to(kp[:, 2], (81, 17)))   # confidences kept
    np.testing.assert_array_equal(seq[:, 3, :2], np.broadcast_to(kp[3, :2], (81, 2)))  # missing stays put
    s = person_scale(kp)
    resid = seq[:, kp[:, 2] > 0, :2] - kp[kp[:, 2] > 0, :2]
    assert 0.5 * 0.01 * s < resid.std() < 4 * 0.01 * s        # noise at the requested scale
    assert np.abs(resid.mean(axis=(0, 1))).max() < 0.01 * s   # centred on the annotation
    frame_diff = np.diff(seq[:, kp[:, 2] > 0, :2], axis=0)
    assert np.abs(frame_diff).max() > 0                        # it moves frame to frame
    # a still record with a 3D pseudo-label → a sequence whose 3D is the label replicated
    pseudo = np.random.default_rng(1).normal(size=(1, 17, 3)).astype(np.float32)
    rec = SequenceRecord("coco", "img1", "still", 50.0, positions_3d=pseudo, keypoints_2d=[kp[None]],
                         frame_3d="camera")
    out = still_to_sequence(rec, params, np.random.default_rng(0))
    assert out.num_frames == 81 and out.keypoints_2d[0].shape == (81, 17, 3)
    np.testing.assert_array_equal(out.positions_3d, np.repeat(pseudo, 81, axis=0))
    assert still_to_sequence(out, params, np.random.default_rng(0)) is out  # sequences pass through
