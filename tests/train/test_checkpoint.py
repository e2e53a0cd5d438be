"""Checkpoints: atomic, weights_only-loadable, exact resume of model/optimizer/scheduler/RNG."""
from __future__ import annotations

import random

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

from raypose.checkpoints import latest_checkpoint
from raypose.train import checkpoint as ck
from raypose.train import loop

from ._helpers import run_local, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A worker after 2 epochs of fine-tuning, and its checkpoint."""
    cfg = tiny_config("train.epochs=2")
    worker = run_local(cfg, "finetune")
    path = ck.write_checkpoint(tmp_path_factory.mktemp("ck") / "c", worker.strategy, worker.progress,
                               worker.cfg, "finetune", worker.generator)
    return worker, path


def test_files_load_with_weights_only_and_nothing_temporary_is_left(trained):
    _, path = trained
    names = sorted(p.name for p in path.iterdir())
    assert names == ["config.json", "meta.pt", "model.pt", "rng_rank0.pt", "train_state.pt"]
    for name in names:
        if name.endswith(".pt"):
            torch.load(path / name, weights_only=True)
    assert not list(path.parent.glob("*.tmp")) and not list(path.glob(".*"))


def test_restore_brings_back_everything(trained):
    worker, path = trained
    expected_rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(),
                    worker.generator.get_state())
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    fresh = loop.setup_worker(worker.cfg)
    assert not torch.equal(fresh.generator.get_state(), expected_rng[3])
    progress = ck.restore(path, fresh.strategy, fresh.generator)
    assert progress.step == worker.progress.step == 4 and progress.epoch == 2
    assert [h["epoch"] for h in progress.history] == [0, 1]
    for a, b in zip(worker.strategy.unwrapped().state_dict().values(),
                    fresh.strategy.unwrapped().state_dict().values()):
        torch.testing.assert_close(a, b)
    sa, sb = worker.strategy.optimizer.state_dict(), fresh.strategy.optimizer.state_dict()
    for k in sa["state"]:
        torch.testing.assert_close(sa["state"][k]["exp_avg"], sb["state"][k]["exp_avg"])
    assert fresh.strategy.lr() == pytest.approx(worker.strategy.lr())
    assert fresh.strategy.scheduler.last_epoch == worker.strategy.scheduler.last_epoch == 2
    assert torch.equal(torch.get_rng_state(), expected_rng[0])
    assert np.array_equal(np.random.get_state()[1], expected_rng[1])
    assert random.getstate() == expected_rng[2]
    assert torch.equal(fresh.generator.get_state(), expected_rng[3])


def test_load_model_rebuilds_the_same_network(trained):
    worker, path = trained
    model, cfg = ck.load_model(str(path))
    x = torch.randn(3, cfg.data.num_frames, 17, 2, generator=torch.Generator().manual_seed(0))
    ref = worker.strategy.unwrapped().eval()
    torch.testing.assert_close(model(x)["centre"], ref(x)["centre"])
    assert cfg.train.stage == "finetune" and cfg.model.name == "pstmo_s"


def test_load_model_from_s3(trained, s3_server):
    worker, path = trained
    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint, allow_bucket_creation=True)
    fs.create_dir("ckpts")
    pafs.copy_files(str(path), "ckpts/run/c", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    model, _ = ck.load_model("s3://ckpts/run/c", s3_endpoint=s3_server.endpoint)
    local, _ = ck.load_model(str(path))
    for a, b in zip(model.state_dict().values(), local.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_latest_checkpoint_by_stage(trained, tmp_path):
    worker, _ = trained
    first = ck.write_checkpoint(tmp_path / "run1" / "checkpoint_a", worker.strategy, worker.progress,
                                worker.cfg, "finetune")
    ck.write_checkpoint(tmp_path / "run2" / "checkpoint_b", worker.strategy, worker.progress,
                        worker.cfg, "pretrain")
    assert latest_checkpoint(str(tmp_path), "finetune") == str(first)
    assert latest_checkpoint(str(tmp_path / "nothing"), "finetune") is None


def test_best_checkpoint_ignores_unscored_ones_and_falls_back_to_the_latest(tmp_path):
    """A run without validation subjects reports NaN: its chosen checkpoint is the latest, and
    NaN never wins the ranking over a finite score."""
    from ray.train import Checkpoint, Result

    from raypose.train.run import checkpoint_uri

    cfg = tiny_config(f"train.storage_path={tmp_path}")
    dirs = [tmp_path / f"checkpoint_epoch{i:04d}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    ck_ = [Checkpoint.from_directory(str(d)) for d in dirs]
    nan = float("nan")

    def result(scores):
        return Result(metrics={}, checkpoint=ck_[-1], error=None, path=str(tmp_path), metrics_dataframe=None,
                      best_checkpoints=[(c, {"val_mpjpe": s}) for c, s in zip(ck_, scores)])

    assert checkpoint_uri(result([nan, nan, nan]), "finetune", cfg) == str(dirs[2])
    assert checkpoint_uri(result([nan, 80.0, nan]), "finetune", cfg) == str(dirs[1])
    assert checkpoint_uri(result([70.0, 80.0, nan]), "finetune", cfg) == str(dirs[0])


def test_a_crash_mid_write_leaves_the_previous_checkpoint_whole(trained, tmp_path, monkeypatch):
    """Fault injection: ``torch.save`` dies after the first file of the second write (a killed
    process or a full disk); the first checkpoint stays in place and loads."""
    worker, _ = trained
    target = tmp_path / "c"
    ck.write_checkpoint(target, worker.strategy, worker.progress, worker.cfg, "finetune", worker.generator)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    real_save, calls = torch.save, []

    def dying_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) > 1:
            raise OSError("injected: disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    worker.progress.step += 100  # the new checkpoint would differ
    try:
        with pytest.raises(OSError, match="injected"):
            ck.write_checkpoint(target, worker.strategy, worker.progress, worker.cfg, "finetune",
                                worker.generator)
    finally:
        worker.progress.step -= 100
    monkeypatch.undo()
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert ck.read_meta(target)["progress"].step == 4
    fresh = loop.setup_worker(worker.cfg)
    assert ck.restore(target, fresh.strategy, fresh.generator).step == 4
    ck.load_model(str(target))


@pytest.mark.parametrize("name", ["model.pt", "meta.pt", "train_state.pt"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_file_is_an_error_naming_it(trained, tmp_path, name, damage):
    import shutil

    from raypose.errors import RayposeDataError

    worker, path = trained
    copy = tmp_path / "c"
    shutil.copytree(path, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 64,
                               "empty": b""}[damage])
    fresh = loop.setup_worker(worker.cfg)
    with pytest.raises(RayposeDataError, match=rf"{copy / name}: unreadable checkpoint file, truncated or corrupt"):
        ck.restore(copy, fresh.strategy, fresh.generator)
    if name != "train_state.pt":
        with pytest.raises(RayposeDataError, match=rf"{copy / name}: unreadable checkpoint file"):
            ck.load_model(str(copy))


def test_a_checkpoint_missing_its_meta_is_an_error_naming_it(trained, tmp_path):
    import shutil

    from raypose.errors import RayposeDataError

    _, path = trained
    shutil.copytree(path, tmp_path / "c")
    (tmp_path / "c" / "meta.pt").unlink()
    with pytest.raises(RayposeDataError, match=rf"{tmp_path / 'c' / 'meta.pt'}: checkpoint file not found"):
        ck.load_model(str(tmp_path / "c"))
