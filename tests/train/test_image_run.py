"""Lifting by Image on Ray Train, for real: both stages as Ray Train runs on the session's local
Ray (CPU, gloo), on crops rendered from the shared mocap by the workers themselves.

Stage 1 runs on two DeepSpeed (ZeRO-1) workers, each rendering one training subject, and the
last one is killed one step into epoch 1: the run must resume from the epoch-0 checkpoint and
finish. Its best
checkpoint must rebuild through ``raypose.checkpoints.load_model`` and reproduce the test MPJPE
the run reported. Stage 2 starts from it through the command (`jobs/train_image_lift.py`, as a
user runs it, joined to the same Ray; two DDP workers) and must leave every stage-1 tensor
unchanged. Tiny sizes
throughout (the smoke configs, 2 epochs × 2 steps of 8 crops).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from raypose import config, image_training
from raypose.checkpoints import load_model, load_state, read_meta
from raypose.models.image_lift import ImageLift
from raypose.train.image_loop import build_image_model, image_config
from raypose.train.run import fit_image_lift

from ._helpers import REPO

pytestmark = pytest.mark.slow

TINY = ["train.epochs=2", "train.steps_per_epoch=2", "data.batch_size=8", "train.keep_checkpoints=2"]


def smoke(stage: int, storage: Path, *sets: str):
    return config.load(REPO / "configs" / f"image_lift_stage{stage}_smoke.yaml",
                       [*TINY, f"train.storage_path={storage}", "train.run_name=il", *sets])


@pytest.fixture(scope="module")
def stage1(ray_local, shared_data, tmp_path_factory):
    """Stage 1 on two DeepSpeed workers; the last rank dies once, one step into epoch 1."""
    storage = tmp_path_factory.mktemp("image_runs")
    cfg = smoke(1, storage, "train.num_workers=2", "train.cpus_per_worker=1",
                "train.strategy=deepspeed", "train.zero_stage=1",
                "train.fail_at_epoch=1", "train.max_failures=1")
    uri, result = fit_image_lift(cfg, 1)
    return uri, result, storage


def test_stage1_resumes_after_a_worker_dies(stage1):
    uri, result, storage = stage1
    assert result.metrics["attempt_start_epoch"] == 1    # the restarted attempt began at epoch 1
    assert result.metrics["epoch"] == 1 and result.metrics["step"] == 4
    assert result.metrics["world_size"] == 2
    last = storage / "il-stage1" / "checkpoint_epoch0001"
    history = read_meta(last)["progress"]["history"]
    assert [h["epoch"] for h in history] == [0, 1]       # no epoch lost or trained twice
    assert [h["step"] for h in history] == [2, 4]
    assert all(math.isfinite(h["val_mpjpe"]) and h["val_mpjpe"] > 0 for h in history)


def test_stage1_checkpoint_loads_and_reproduces_its_test_mpjpe(stage1):
    uri, result, _ = stage1
    meta = read_meta(uri)
    assert meta["stage"] == "finetune" and meta["lift_stage"] == 1 and meta["world_size"] == 2
    assert meta["strategy"] == "deepspeed"
    history = meta["progress"]["history"]
    assert Path(uri).name == f"checkpoint_epoch{history[-1]['epoch']:04d}"
    # the returned checkpoint is the best of the kept ones by test MPJPE
    kept = sorted(Path(uri).parent.glob("checkpoint_epoch*"))
    scores = {p.name: read_meta(p)["progress"]["history"][-1]["val_mpjpe"] for p in kept}
    assert scores[Path(uri).name] == min(scores.values())

    model, cfg = load_model(uri)
    assert isinstance(model, ImageLift) and model.lift_stage == 1 and not model.training
    test = image_training.render_test(cfg)
    assert test is not None and len(test["image"]) > 0
    b = image_training.to_batch(test, np.arange(4))
    out = model(b["pose_2d"], None, b["image"])
    assert out["centre"].shape == (4, 1, 17, 3) and torch.isfinite(out["centre"]).all()
    again = image_training.evaluate(model, image_training.ordered_batches(test, 8),
                                    image_training.attention_radius(cfg))
    assert again["coarse_mpjpe"] == pytest.approx(history[-1]["val_mpjpe"], rel=1e-4)


@pytest.fixture(scope="module")
def stage2(stage1, ray_local, tmp_path_factory):
    """Stage 2 from stage 1's checkpoint through the command, `python jobs/train_image_lift.py`
    (= `raypose image-lift`) as a user runs it, joined to the session's Ray through RAY_ADDRESS
    (no second Ray on the machine). Returns (stdout lines, stderr lines, storage folder)."""
    uri1, _, _ = stage1
    out_dir = tmp_path_factory.mktemp("image_cli")
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, str(REPO / "jobs" / "train_image_lift.py"), "--config",
            "configs/image_lift_stage2_smoke.yaml", "--init", uri1, "--out", str(out_dir)]
    for s in [*TINY, "train.run_name=cli", "train.num_workers=2", "train.cpus_per_worker=1"]:
        argv += ["--set", s]
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return ([ln for ln in r.stdout.splitlines() if ln.strip()],
            [ln for ln in r.stderr.splitlines() if ln.strip()], out_dir)


def test_the_command_runs_stage2_on_ray_and_prints_the_checkpoint_last(stage2):
    lines, errors, out_dir = stage2
    assert lines[-1].startswith(f"checkpoint: {out_dir / 'cli-stage2'}/checkpoint_epoch000"), lines[-5:]
    assert lines[0].startswith("run: image-lift stage 2"), lines[:3]
    # the workers' per-epoch lines, on whichever stream Ray forwarded them to
    epochs = {ln.split()[3] for ln in lines + errors if ln.startswith("[image-lift s2] epoch") and "val_mpjpe" in ln}
    assert epochs == {"1/2", "2/2"}, (lines + errors)[-20:]
    assert (out_dir / "cli-stage2" / "console.log").is_file()


def test_stage2_trains_with_stage1_frozen(stage1, stage2):
    uri1, _, _ = stage1
    uri2 = stage2[0][-1].split(": ", 1)[1]
    before, _ = load_state(uri1)
    after, meta = load_state(uri2)
    assert meta["lift_stage"] == 2 and meta["config"].train.init == uri1
    assert meta["world_size"] == 2 and meta["strategy"] == "ddp"
    stage1_keys = [k for k in before if k.startswith("stage1.")]
    assert stage1_keys and any("running_mean" in k for k in stage1_keys)   # BatchNorm statistics too
    changed = [k for k in stage1_keys if not torch.equal(before[k], after[k])]
    assert not changed, changed[:5]
    # stage 2 trained: its head moved away from the coarse head it was started from
    assert not torch.equal(after["refined_head.1.weight"], before["stage1.head.1.weight"])
    last = meta["progress"]["history"][-1]
    assert last["step"] == 2 * (last["epoch"] + 1)
    model, _ = load_model(uri2)
    assert model.lift_stage == 2
    b = image_training.to_batch(image_training.render_test(meta["config"]), np.arange(2))
    assert model(b["pose_2d"], None, b["image"])["refined"].shape == (2, 1, 17, 3)


def test_stage1_weights_load_from_a_checkpoint_or_an_older_pt_file(stage1, tmp_path):
    uri1, _, _ = stage1
    state, _ = load_state(uri1)
    old = tmp_path / "stage1.pt"
    torch.save({"model": state, "stage": 1, "metrics": {}}, old)
    for init in (uri1, str(old)):
        cfg = image_config(smoke(2, tmp_path), 2, init)
        model = build_image_model(cfg)
        assert model.lift_stage == 2
        assert torch.equal(model.state_dict()["stage1.head.1.weight"], state["stage1.head.1.weight"])
        assert torch.equal(model.refined_head[1].weight, state["stage1.head.1.weight"])   # warm start
        assert not any(p.requires_grad for p in model.stage1.parameters())
    wider = image_config(smoke(2, tmp_path, "model.dim=48"), 2, uri1)
    with pytest.raises(Exception, match="stage-1 checkpoint|size mismatch"):
        build_image_model(wider)


def test_workers_render_disjoint_shares_the_same_way_every_time(shared_data):
    """Rank-strided subjects when there are enough (each rank one subject here), rank-strided
    crops of one rendering when there are fewer; a restarted worker gets the same crops."""
    cfg = smoke(1, Path("unused"), "data.train_subjects=[climb_a,deepmimic]")
    a, b = image_training.render_share(cfg, 0, 2), image_training.render_share(cfg, 1, 2)
    assert set(a["subject"]) == {"climb_a"} and set(b["subject"]) == {"deepmimic"}
    assert np.array_equal(a["image"], image_training.render_share(cfg, 0, 2)["image"])
    shares = [image_training.render_share(cfg, r, 3) for r in range(3)]
    whole = image_training.render_split(["climb_a", "deepmimic"], np.random.default_rng(cfg.train.seed),
                                        **image_training.render_kwargs(cfg))
    assert sum(len(x["image"]) for x in shares) == len(whole["image"])
    assert np.array_equal(shares[1]["joints_3d"], whole["joints_3d"][1::3])
