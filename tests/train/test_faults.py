"""Faults for real on Ray Train (CPU, gloo, the embedded mocap): a DeepSpeed worker process dies
mid-run and the run resumes from its last checkpoint (ZeRO-1 and ZeRO-2, same world size); a
fine-tuning job storing its checkpoints on S3 (the local moto server) is killed, and re-running it
under the same name resumes from S3. Time-boxed: a few epochs × 2 steps of the tiny smoke model
(≈ 2 min for the file on 2 cores)."""
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


def test_a_killed_s3_job_resumes_from_s3(ray_local, s3_server, tmp_path):
    """The fine-tuning job's driver process (and the Ray it started) is SIGKILLed once its
    second checkpoint is on S3; re-running the run (same run_name and s3:// storage_path)
    continues from the last checkpoint Ray recorded there, with each epoch trained once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint, allow_bucket_creation=True)
    fs.create_dir("jobs")
    sets = ["train.steps_per_epoch=2", "train.val_max_clips=64", "data.max_sequences=4",
            "data.batch_size=2", "data.clips_per_sequence=4", "train.epochs=6",
            "train.storage_path=s3://jobs/runs", f"train.s3_endpoint={s3_server.endpoint}",
            "train.run_name=killed", "train.keep_checkpoints=6"]
    argv = [sys.executable, str(REPO / "jobs" / "finetune.py"), "--config", "configs/pstmo_s_smoke.yaml"]
    for s in sets:
        argv += ["--set", s]
    env = {**os.environ, "RAY_ADDRESS": ""}
    with open(tmp_path / "job.log", "w") as log:
        job = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            marker = "jobs/runs/killed/checkpoint_epoch0001/meta.pt"
            deadline = time.time() + 400   # a liveness bound (Ray start + 2 epochs), not a speed test
            while fs.get_file_info(marker).type == pafs.FileType.NotFound:
                assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
                assert time.time() < deadline, "no second checkpoint on S3 in time"
                time.sleep(0.2)
            assert job.poll() is None, "the job finished before it could be killed"
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    stored = {i.base_name for i in fs.get_file_info(pafs.FileSelector("jobs/runs/killed"))}
    assert "checkpoint_epoch0005" not in stored

    cfg = tiny_config(*[s for s in sets if not s.startswith(("train.steps_per_epoch", "train.val_max",
                                                             "data."))])
    uri, result = fit(cfg, "finetune")
    assert uri.startswith("s3://jobs/runs/killed/checkpoint_epoch000")
    assert result.metrics["epoch"] == 5 and result.metrics["step"] == 12
    assert result.metrics["attempt_start_epoch"] >= 1  # resumed from S3, not restarted
    local, tmp = local_copy("s3://jobs/runs/killed/checkpoint_epoch0005", s3_server.endpoint)
    try:
        history = ck.read_meta(local)["progress"].history
    finally:
        tmp.cleanup()
    assert [h["epoch"] for h in history] == list(range(6))
    assert [h["step"] for h in history] == [2 * (e + 1) for e in range(6)]
