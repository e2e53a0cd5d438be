"""The training loop in one process, without Ray Train: for studies and benchmarks that run many
small trainings side by side (e.g. as Ray tasks), where a Trainer per run would cost more in
start-up and per-epoch ``report`` than the run itself.

It is the same code as a Ray Train worker runs — :func:`raypose.train.loop.setup_worker`,
:func:`~raypose.train.loop.run_epochs`, the strategies' single-process path and the checkpoint
writer — fed by in-memory chunk batches instead of a Ray Data shard.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np
import torch

from raypose.config import Config
from raypose.train import checkpoint as ckpt
from raypose.train.loop import run_epochs, setup_worker


def batch_source(chunks: Mapping[str, np.ndarray], batch_size: int, seed: int, shuffle: bool = True
                 ) -> Callable[[], Iterator[dict[str, torch.Tensor]]]:
    """A ``make_iter`` for :func:`run_epochs`: each call is one pass over ``chunks`` (shuffled
    per pass), the same in-memory passes a Ray Train worker uses once its shard is cached."""
    from raypose.data.pipeline import memory_passes, torch_dtypes

    dtypes = torch_dtypes()
    tensors = {k: torch.as_tensor(np.asarray(v)).to(dtype=dtypes[k]) for k, v in chunks.items()}
    return memory_passes(tensors, batch_size, shuffle, seed)


def fit_in_process(cfg: Config, train_chunks: Mapping[str, np.ndarray],
                   checkpoint_dir: Optional[str | Path] = None,
                   val_chunks: Optional[Mapping[str, np.ndarray]] = None
                   ) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """Train ``cfg.train.stage`` on ``train_chunks``; returns the model and per-epoch metrics.

    With ``checkpoint_dir`` the final state is written there as a regular raypose checkpoint
    (so a fine-tuning config can name it in ``train.init``).
    """
    worker = setup_worker(cfg)
    history: list[dict[str, Any]] = []
    train_iter = batch_source(train_chunks, cfg.data.batch_size, cfg.train.seed)
    val_iter = batch_source(val_chunks, cfg.data.batch_size, 0, shuffle=False) if val_chunks is not None else (lambda: iter(()))
    run_epochs(worker, train_iter, val_iter, lambda w, e, m: history.append(dict(m)))
    if checkpoint_dir is not None:
        ckpt.write_checkpoint(checkpoint_dir, worker.strategy, worker.progress, cfg, worker.stage,
                              worker.generator)
    return worker.strategy.unwrapped(), history
