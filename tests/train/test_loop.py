"""The training loop's pieces without Ray Train: stages, init from pretraining, epochs, validation."""
from __future__ import annotations

import math

import pytest
import torch

from raypose.train import checkpoint as ck
from raypose.train import loop
from raypose.train.strategy import WorkerInfo

from ._helpers import run_local, tiny_config

ONE = WorkerInfo(0, 1, 0, torch.device("cpu"), False)


def test_epoch_batches_cap_and_mark_the_last():
    out = list(loop.epoch_batches(iter(range(10)), 3, ONE))
    assert out == [(0, False), (1, False), (2, True)]
    assert list(loop.epoch_batches(iter(range(2)), None, ONE)) == [(0, False), (1, True)]
    assert list(loop.epoch_batches(iter([]), None, ONE)) == []


def _pretrained(tmp_path):
    """A tiny config and the checkpoint of one real pretraining epoch on it."""
    cfg = tiny_config("train.epochs=1")
    reports = []
    pre = run_local(cfg, "pretrain", lambda w, e, m: reports.append(m))
    assert reports[0]["stage"] == "pretrain" and torch.isfinite(torch.tensor(reports[0]["val_loss"]))
    assert reports[0]["lr"] == 1e-4  # stage_overrides: P-STMO's stage-I learning rate
    return cfg, pre, ck.write_checkpoint(tmp_path / "pre", pre.strategy, pre.progress, pre.cfg, "pretrain")


def test_pretrain_then_finetune_starts_from_the_encoder(tmp_path):
    """The lifting model's encoder equals the pretraining checkpoint's; its head does not come from it."""
    cfg, pre, path = _pretrained(tmp_path)
    encoder = pre.strategy.unwrapped().encoder_state_dict()
    lifted = loop.build_model(cfg.with_overrides({"train.init": str(path), "train.stage": "finetune"}), "finetune")
    scratch = loop.build_model(cfg.with_overrides({"train.stage": "finetune"}), "finetune")
    state, base = lifted.state_dict(), scratch.state_dict()
    assert encoder and all(torch.equal(state[k], v) for k, v in encoder.items())
    assert any(not torch.equal(state[k], base[k]) for k in encoder)
    tail = [k for k in state if not k.startswith("encoder.")]
    assert tail and all(torch.equal(state[k], base[k]) for k in tail)


def test_finetune_init_of_another_width_or_length_is_explicit(tmp_path, capsys):
    from raypose.errors import ConfigError

    cfg, _, path = _pretrained(tmp_path)
    init = {"train.init": str(path), "train.stage": "finetune"}
    # the original failure: another width loaded what matched and skipped the rest silently
    wider = cfg.with_overrides({**init, "model.dim": 2 * cfg.model.dim})
    with pytest.raises(ConfigError, match=rf"train.init {path}: pretrained encoder does not fit"):
        loop.build_model(wider, "finetune")
    loop.build_model(wider.with_overrides({"train.init_strict": False}), "finetune", verbose=True)
    assert "[finetune] train.init:   skipped encoder." in capsys.readouterr().out
    # another clip length: positional embeddings resampled, everything else loaded as is
    longer = cfg.with_overrides({**init, "data.num_frames": 2 * cfg.data.num_frames + 1})
    loop.build_model(longer, "finetune", verbose=True)
    out = capsys.readouterr().out
    assert "positional embeddings resampled" in out and "skipped" not in out


def test_finetune_epochs_report_loss_val_mpjpe_and_throughput():
    cfg = tiny_config("train.epochs=2", "optim.lr_decay=0.5")
    reports = []
    worker = run_local(cfg, "finetune", lambda w, e, m: reports.append(m))
    assert [r["epoch"] for r in reports] == [0, 1]
    assert [r["step"] for r in reports] == [2, 4]
    assert reports[1]["lr"] == reports[0]["lr"] * 0.5  # ×lr_decay per epoch
    for r in reports:
        assert r["val_mpjpe"] > 0 and r["samples_per_s"] > 0 and r["train_clips"] == 2 * 2 * 4
        assert r["val_clips"] == 64
    assert worker.progress.history[-1]["step"] == 4


@pytest.mark.parametrize("causal", [False, True], ids=["centred", "causal"])
def test_validation_covers_each_frame_once(causal):
    """Owned centres: every valid frame of the val split is evaluated exactly once (a causal
    clip reaches twice as far back, so its chunks carry more context)."""
    from raypose.data.clips import eval_clips
    from raypose.data.pipeline import local_batches

    cfg = tiny_config("data.chunk_frames=64", f"data.causal={str(causal).lower()}")
    frames, clips_seen = 0, 0
    for chunks in local_batches(cfg.data, "val"):
        frames += int((chunks["centre_stop"] - chunks["centre_start"]).sum())
        for clips in eval_clips(chunks, cfg.data):
            clips_seen += int(loop.owned_clips(clips, chunks).sum())
    assert frames > 64 and clips_seen == frames


@pytest.mark.parametrize("rec_3d", [0.0, 3.0], ids=["masked-2d-only", "masked-2d-and-3d"])
def test_mpm_pretraining_with_and_without_the_3d_objective(rec_3d):
    """MPM alternates masked-2D / masked-3D steps only while the 3D objective has a weight; with
    loss.rec_3d = 0 every step is a masked-2D step (and no step is left without a loss)."""
    history = []
    cfg = tiny_config("train.epochs=1", "train.steps_per_epoch=4", f"loss.rec_3d={rec_3d}", model="mpm")
    run_local(cfg, "pretrain", emit=lambda w, e, m: history.append(m))
    parts = {k for k in history[-1] if k.startswith("train_")}
    assert math.isfinite(history[-1]["loss"])
    assert ("train_rec_3d" in parts) == (rec_3d > 0) and "train_rec_2d" in parts


def test_progress_pings_only_when_the_console_asks(monkeypatch, capsys):
    """The live bar's feed: tagged JSON lines on the main rank when RAYPOSE_PROGRESS_PINGS=1,
    the last step of each epoch always among them; nothing otherwise. The run's history carries
    what the curves draw (loss, validation metric, lr, samples/s)."""
    import json

    from raypose.console import PINGS_ENV, PROGRESS_TAG

    monkeypatch.setenv(PINGS_ENV, "1")
    worker = run_local(tiny_config("train.epochs=2"), "finetune")
    pings = [json.loads(line[len(PROGRESS_TAG):]) for line in capsys.readouterr().out.splitlines()
             if line.startswith(PROGRESS_TAG)]
    assert {(p["epoch"], p["step"]) for p in pings if p["step"] == p["steps"]} == {(1, 2), (2, 2)}
    assert all(p["stage"] == "finetune" and p["epochs"] == 2 and p["samples_per_s"] > 0 for p in pings)
    assert all({"loss", "val_mpjpe", "lr", "samples_per_s"} <= set(h) for h in worker.progress.history)
    monkeypatch.setenv(PINGS_ENV, "0")
    run_local(tiny_config("train.epochs=1"), "finetune")
    assert PROGRESS_TAG not in capsys.readouterr().out


def test_causal_finetune_trains_and_its_checkpoint_lifts_online(tmp_path):
    """data.causal through training (clips end at the predicted frame) to the checkpoint, which
    inference then reads as a causal lifter."""
    from raypose.infer import load_checkpoint

    cfg = tiny_config("train.epochs=1", "data.causal=true")
    reports = []
    worker = run_local(cfg, "finetune", lambda w, e, m: reports.append(m))
    assert math.isfinite(reports[-1]["val_mpjpe"]) and reports[-1]["val_mpjpe"] > 0
    path = ck.write_checkpoint(tmp_path / "ft", worker.strategy, worker.progress, worker.cfg, "finetune")
    lifter = load_checkpoint(str(path))
    assert lifter.causal and lifter.num_frames == cfg.data.num_frames


def test_plateau_rule_compares_the_last_epochs_with_the_best_before_them():
    assert not loop.plateaued([3.0, 2.0, 1.9], patience=0, delta=0.01)          # off
    assert not loop.plateaued([3.0, 2.0], patience=2, delta=0.01)               # too short to tell
    assert loop.plateaued([3.0, 2.0, 1.99, 2.1], patience=2, delta=0.01)        # < 1 % better: plateau
    assert not loop.plateaued([3.0, 2.0, 1.9, 2.1], patience=2, delta=0.01)     # 5 % better: going on
    assert not loop.plateaued([3.0, math.nan, math.nan], patience=2, delta=0.01)  # no validation: never


def test_training_stops_on_its_validation_plateau_and_checkpoints_there(tmp_path):
    # a 99 % gain per epoch is out of reach, so the run stops after patience + 1 epochs
    cfg = tiny_config("train.epochs=6", "train.plateau_patience=1", "train.plateau_delta=0.99")
    reports = []
    worker = run_local(cfg, "pretrain", lambda w, e, m: reports.append(m))
    assert [r["epoch"] for r in reports] == [0, 1] and [r["plateaued"] for r in reports] == [False, True]
    assert worker.progress.epoch == 2 and len(worker.progress.history) == 2
    # resuming a run that stopped on its plateau trains nothing more
    steps = worker.progress.step
    loop.run_epochs(worker, lambda: iter(()), lambda: iter(()), lambda w, e, m: reports.append(m))
    assert worker.progress.step == steps and len(reports) == 2
