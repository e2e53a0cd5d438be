"""Faults for real on Ray Train (CPU, gloo, the embedded mocap): a DeepSpeed worker process dies
mid-run and the run resumes from its last checkpoint (ZeRO-1 and ZeRO-2, same world size); a run
storing checkpoints on S3 (the local moto server) fails, and re-running it under the same name
resumes from S3. Time-boxed: 3 epochs × 2 steps of the tiny smoke model."""
from __future__ import annotations

import pyarrow.fs as pafs
import pytest
import torch

from raypose.checkpoints import local_copy
from raypose.train import checkpoint as ck
from raypose.train.run import fit
from raypose.train.strategy import DEEPSPEED_DIR, DEEPSPEED_TAG

from ._helpers import tiny_config

pytestmark = pytest.mark.slow

TWO_WORKERS = ["train.num_workers=2", "train.cpus_per_worker=0.5"]
#: Rank (last) exits once, one step into epoch 2; epoch 1's checkpoint is the last one written.
FAULT = ["train.epochs=3", "train.fail_at_epoch=2", "train.keep_checkpoints=3"]


def assert_each_epoch_once(history: list[dict]) -> None:
    """No epoch lost or repeated, and the step counter of an uninterrupted run (2 per epoch)."""
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert [h["step"] for h in history] == [2, 4, 6]


@pytest.mark.parametrize("zero", [1, 2])
def test_deepspeed_resumes_after_a_worker_dies(ray_local, tmp_path, zero):
    cfg = tiny_config(*TWO_WORKERS, *FAULT, "train.strategy=deepspeed", f"train.zero_stage={zero}",
                      "train.max_failures=1", f"train.storage_path={tmp_path}", f"train.run_name=z{zero}")
    uri, result = fit(cfg, "finetune")
    assert result.metrics["epoch"] == 2 and result.metrics["step"] == 6
    assert result.metrics["attempt_start_epoch"] == 2  # the restarted attempt began at epoch 2
    last = tmp_path / f"z{zero}" / "checkpoint_epoch0002"
    meta = ck.read_meta(last)
    assert meta["world_size"] == 2 and meta["strategy"] == "deepspeed"
    assert_each_epoch_once(meta["progress"].history)
    # DeepSpeed's own counter went on from the checkpoint too (not restarted at 0, not doubled)
    states = torch.load(last / DEEPSPEED_DIR / DEEPSPEED_TAG / "mp_rank_00_model_states.pt",
                        map_location="cpu", weights_only=False)
    assert states["global_steps"] == 6
    assert len(list((last / DEEPSPEED_DIR / DEEPSPEED_TAG).glob("*optim_states.pt"))) == 2  # a shard per rank


def test_a_run_on_s3_fails_and_resumes_from_s3(ray_local, s3_server, tmp_path):
    """The first run dies at epoch 2 with no retries left (the run is over, as if its driver had
    been killed); re-running it with the same run_name and s3:// storage_path continues from the
    checkpoint on S3 — nothing of that run is on the local disk."""
    from ray.train import TrainingFailedError

    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint, allow_bucket_creation=True)
    fs.create_dir("runs")
    cfg = tiny_config(*FAULT, "train.max_failures=0", "train.storage_path=s3://runs/faults",
                      f"train.s3_endpoint={s3_server.endpoint}", "train.run_name=s3run")
    with pytest.raises(TrainingFailedError) as failed:
        fit(cfg, "finetune")
    stored = {i.base_name for i in fs.get_file_info(pafs.FileSelector("runs/faults/s3run"))}
    assert {"checkpoint_epoch0000", "checkpoint_epoch0001"} <= stored, str(failed.value)
    assert "checkpoint_epoch0002" not in stored

    uri, result = fit(cfg, "finetune")
    assert uri.startswith("s3://runs/faults/s3run/checkpoint_epoch000")  # the best by val_mpjpe
    assert result.metrics["attempt_start_epoch"] == 2 and result.metrics["step"] == 6
    local, tmp = local_copy("s3://runs/faults/s3run/checkpoint_epoch0002", s3_server.endpoint)
    try:
        assert_each_epoch_once(ck.read_meta(local)["progress"].history)
    finally:
        tmp.cleanup()
    model, _ = ck.load_model(uri, s3_endpoint=s3_server.endpoint)
    assert sum(p.numel() for p in model.parameters()) > 0
