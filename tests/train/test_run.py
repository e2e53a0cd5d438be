"""End to end on Ray Train (CPU, 2 workers, gloo) over real mocap from ../shared/data:
pretrain → fine-tune from its encoder → evaluate, with DDP and DeepSpeed; and resume after a
worker process dies mid-run."""
from __future__ import annotations

import json
import math

import pytest

from raypose.evaluate import evaluate
from raypose.train import checkpoint as ck
from raypose.train.run import fit

from ._helpers import tiny_config

pytestmark = pytest.mark.slow

TWO_WORKERS = ["train.num_workers=2", "train.cpus_per_worker=0.5"]


@pytest.mark.parametrize("strategy", [["train.strategy=ddp"],
                                      ["train.strategy=deepspeed", "train.zero_stage=2"]],
                         ids=["ddp", "deepspeed-zero2"])
def test_pretrain_finetune_evaluate(ray_local, shared_data, tmp_path, strategy):
    cfg = tiny_config(*TWO_WORKERS, *strategy, f"train.storage_path={tmp_path}", "train.epochs=1",
                      mocap=shared_data / "mocap_h36m17.npz")
    pre_uri, pre = fit(cfg.with_overrides({"train.run_name": "pre"}), "pretrain")
    assert pre_uri.startswith(str(tmp_path / "pre"))
    meta = ck.read_meta(pre_uri)
    assert meta["stage"] == "pretrain" and meta["world_size"] == 2
    assert meta["config"].optim.lr == pytest.approx(1e-4)  # stage I learning rate
    assert pre.metrics["world_size"] == 2 and math.isfinite(pre.metrics["val_loss"])

    ft_uri, ft = fit(cfg.with_overrides({"train.run_name": "ft", "train.init": pre_uri}), "finetune")
    assert ck.read_meta(ft_uri)["stage"] == "finetune"
    assert ft.metrics["val_mpjpe"] > 0 and ft.metrics["samples_per_s"] > 0

    first = evaluate(ft_uri)
    second = evaluate(ft_uri)
    assert first.to_dict() == second.to_dict()  # deterministic
    assert first.split == "test" and first.frames > 0 and first.flip
    for key in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "pck", "auc"):
        assert math.isfinite(getattr(first, key))
    assert first.p_mpjpe <= first.mpjpe
    assert set(first.per_action) and json.loads(json.dumps(first.to_dict()))["mpjpe"] == first.mpjpe
    if "train.strategy=ddp" in strategy:
        no_flip = evaluate(ft_uri, flip=False)
        assert no_flip.mpjpe != first.mpjpe and no_flip.frames == first.frames


def test_resume_after_a_worker_dies(ray_local, shared_data, tmp_path):
    """Rank 1 exits mid-epoch 2; the run restarts from epoch 1's checkpoint and finishes with
    every epoch trained once and the step counter continuing."""
    cfg = tiny_config(*TWO_WORKERS, f"train.storage_path={tmp_path}", "train.run_name=crash",
                      "train.epochs=4", "train.fail_at_epoch=2", "train.max_failures=1",
                      "train.keep_checkpoints=4", mocap=shared_data / "mocap_h36m17.npz")
    uri, result = fit(cfg, "finetune")
    assert result.metrics["epoch"] == 3
    assert result.metrics["attempt_start_epoch"] == 2  # a second attempt ran, from the checkpoint
    history = ck.read_meta(uri)["progress"].history if uri.endswith("0003") else \
        ck.read_meta(str(tmp_path / "crash" / "checkpoint_epoch0003"))["progress"].history
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert [h["step"] for h in history] == [2, 4, 6, 8]


def test_workers_that_take_every_cpu_are_refused_with_advice():
    """On 2 CPUs a worker asking for both leaves none for Ray Data and the run hangs forever."""
    from raypose.config import Config
    from raypose.errors import ConfigError
    from raypose.train.run import check_cpu_budget

    greedy = Config().with_overrides({"train.cpus_per_worker": 2.0})
    with pytest.raises(ConfigError, match=r"leaves none for Ray Data.*train.cpus_per_worker=1\.5"):
        check_cpu_budget(greedy, cluster_cpus=2.0)
    two = Config().with_overrides({"train.num_workers": 2, "train.cpus_per_worker": 1.0})
    with pytest.raises(ConfigError, match=r"cpus_per_worker=0\.5"):
        check_cpu_budget(two, cluster_cpus=2.0)
    check_cpu_budget(Config(), cluster_cpus=2.0)                 # 1 of 2 CPUs: fine
    check_cpu_budget(greedy, cluster_cpus=2.0, autoscaling=True)  # a cluster may add nodes
