"""Sources → views → sequence store: the library side of ``jobs/prepare_data.py``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from raypose.config import DataConfig
from raypose.data import store
from raypose.data.augment import StillNoise
from raypose.data.pipeline import raw_views


def prepare_store(data_cfg: DataConfig, out: str, shard_mb: float = 32.0, seed: int = 0,
                  still_noise: Optional[StillNoise] = None, virtual_cameras: Optional[int] = None,
                  on_shard: Optional[Callable[[int, str], None]] = None) -> dict[str, Any]:
    """Read every source of ``data_cfg`` (not 'store' ones), build its views and write one store.

    Views are the same the in-memory pipeline builds for this ``seed`` (same rng streams),
    so training from the store or from the raw files sees identical data. Splits: the
    config's subject lists when given, else the store's deterministic default.
    """
    views = []
    sources = []
    for i, src in enumerate(data_cfg.sources):
        if src.format == "store":
            raise store.RayposeDataError(src.path, "a store is not a raw source to prepare")
        if virtual_cameras is not None:
            src = dataclasses.replace(src, virtual_cameras=virtual_cameras)
        views.extend(raw_views(src, data_cfg, seed, i, still_noise))
        sources.append(dataclasses.asdict(src))
    splits = {"train": data_cfg.train_subjects, "val": data_cfg.val_subjects, "test": data_cfg.test_subjects}
    extra = {"sources": sources, "target_fps": data_cfg.target_fps, "seed": seed,
             "still_noise": dataclasses.asdict(still_noise or StillNoise(num_frames=data_cfg.num_frames))}
    return store.write_store(views, out, shard_mb, splits=splits, s3_endpoint=data_cfg.s3_endpoint,
                             extra=extra, on_shard=on_shard)
