"""Small configs and a Ray-free driver for the training tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from raypose import config
from raypose.config import Config

REPO = Path(__file__).resolve().parents[2]


def tiny_config(*overrides: str, model: str = "pstmo_s", mocap: Path | None = None) -> Config:
    """A smoke config: tiny model, 27 frames, 2 epochs × 2 steps, few sequences."""
    sets = ["train.steps_per_epoch=2", "train.val_max_clips=64", "data.max_sequences=4",
            "data.batch_size=2", "data.clips_per_sequence=4"]
    cfg = config.load(REPO / "configs" / f"{model}_smoke.yaml", sets + list(overrides))
    if mocap is not None:
        cfg = cfg.with_overrides({"data.sources": [{"name": "mocap", "format": "mocap", "path": str(mocap),
                                                    "weight": 1.0, "virtual_cameras": 2}]})
    return cfg


def run_local(cfg: Config, stage: str, emit=None) -> Any:
    """The training loop without Ray Train (world of one) over in-process batches."""
    from raypose.data.pipeline import local_batches
    from raypose.train import loop
    from raypose.train.run import stage_config

    cfg = stage_config(cfg, stage)
    worker = loop.setup_worker(cfg)
    loop.run_epochs(worker, lambda: local_batches(cfg.data, "train", shuffle=True, seed=1),
                    lambda: local_batches(cfg.data, "val"), emit or (lambda w, e, m: None))
    return worker
