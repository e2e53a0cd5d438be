"""The H36M per-action protocol of :func:`raypose.evaluate.score`, against a hand-computed case."""
from __future__ import annotations

import numpy as np
import pytest

from raypose import metrics
from raypose.evaluate import SequencePredictions, score


@pytest.fixture(scope="module")
def real_poses(shared_data):
    data = np.load(shared_data / "mocap_h36m17.npz", allow_pickle=True)
    pos = data["positions_3d"].item()["climb_a"]["climb_0"][:60].astype(np.float64)
    return pos - pos[:, :1]   # root-relative metres, as evaluation sees them


def _seq(action: str, target: np.ndarray, offset_mm: float) -> SequencePredictions:
    # every joint displaced by offset_mm along x: each frame's MPJPE is exactly offset_mm
    pred = target + np.array([offset_mm / 1000.0, 0.0, 0.0])
    return SequencePredictions("S9", action, "cam0", pred, target, np.ones(len(target), bool))


def test_per_action_mean_groups_sub_actions_as_the_papers(real_poses):
    seqs = [_seq("Walking", real_poses[:10], 10.0),      # 10 frames at 10 mm
            _seq("Walking 1", real_poses[10:40], 30.0),  # 30 frames at 30 mm
            _seq("Eating 2", real_poses[40:60], 50.0)]   # 20 frames at 50 mm
    got = score(seqs)
    # by hand: Walking = (10·10 + 30·30) / 40 = 25 mm; Eating = 50 mm; mean over actions 37.5 mm
    # (not (10 + 30 + 50) / 3 = 30 with sub-actions as rows); frame-weighted MPJPE 2000/60 mm
    assert set(got["per_action"]) == {"Walking", "Eating"}
    assert got["per_action"]["Walking"]["mpjpe"] == pytest.approx(25.0)
    assert got["per_action"]["Walking"]["frames"] == 40
    assert got["per_action"]["Eating"]["mpjpe"] == pytest.approx(50.0)
    assert got["mpjpe_action_mean"] == pytest.approx(37.5)
    assert got["mpjpe"] == pytest.approx(2000.0 / 60)
    assert got["per_action"]["Walking"]["p_mpjpe"] == pytest.approx(0.0, abs=1e-6)  # a shift aligns away


def test_action_names_group_only_h36m_sub_action_indices():
    assert metrics.action_name("Walking 1") == metrics.action_name("Walking") == "Walking"
    assert metrics.action_name("SittingDown 2") == "SittingDown"
    assert metrics.action_name("TakingPhoto 1") == metrics.action_name("Photo") == "Photo"
    assert metrics.action_name("WalkingDog") == metrics.action_name("WalkDog 1") == "WalkDog"
    assert metrics.action_name("WalkTogether 1") == "WalkTogether"
    for other in ("climb_0", "dance_a", "02_01_s1", "Free dance"):
        assert metrics.action_name(other) == other


@pytest.mark.parametrize("name", ["window_mlp", "pstmo_s"])
def test_a_trajectory_head_learns_the_root_and_evaluation_scores_it(name):
    """Real training (the worker's loop, in process) on the embedded mocap through the rig: the
    head's camera-space root on held-out motion (cmu_06) beats the best constant (the true mean
    root), so it learnt depth from the 2D across cameras 3–8 m away; evaluation reports it."""
    from raypose import config
    from raypose.evaluate import predict_split, split_chunks
    from raypose.train.local import fit_in_process
    from raypose.train.run import stage_config

    size = {"window_mlp": ["model.extra={hidden: 256, blocks: 1}", "model.dropout=0.0"],
            "pstmo_s": ["model.dim=32", "model.ffn_dim=64", "model.heads=4", "model.depth=1",
                        "model.sem_hidden=64", "model.dropout=0.0"]}[name]
    steps = {"window_mlp": 600, "pstmo_s": 250}[name]
    cfg = config.load(None, [f"model.name={name}", "model.trajectory=true", *size, "data.num_frames=9",
                             "data.chunk_frames=64", "data.batch_size=16", "data.clips_per_sequence=4",
                             "data.train_subjects=[climb_a, deepmimic, cmu_02]", "data.val_subjects=[climb_b]",
                             "data.test_subjects=[cmu_06]", "train.epochs=1", f"train.steps_per_epoch={steps}",
                             "optim.lr=2e-3", "train.torch_threads=1"])
    cfg = stage_config(cfg, "finetune")
    chunks, _ = split_chunks(cfg.data, "train")
    model, _ = fit_in_process(cfg, chunks)
    seqs = predict_split(model.eval(), cfg.data, "test", flip=True)
    got = score(seqs)
    true = np.concatenate([s.root_target[s.filled] for s in seqs])
    constant = np.linalg.norm(true - true.mean(0), axis=-1).mean() * 1000
    assert got["root_frames"] == got["frames"] and got["root_error_z"] <= got["root_error"]
    assert got["root_error"] < constant, (got["root_error"], constant)
    depth = np.concatenate([np.abs(s.root_pred[s.filled, 2] - s.root_target[s.filled, 2]) / s.root_target[s.filled, 2]
                            for s in seqs])
    assert depth.mean() < 0.25                            # depth within a quarter, 3–8 m away
