"""Distributed training on Ray Train: strategies (DDP, DeepSpeed), the per-worker loop,
checkpoints and the ``TorchTrainer`` assembly. The only package that imports ``ray.train``
(lazily: importing this package does not import Ray).

Entry points: :func:`raypose.train.run.pretrain`, :func:`raypose.train.run.finetune`,
:func:`raypose.train.run.fit_image_lift` (Lifting by Image, :mod:`raypose.train.image_loop`); reading a
checkpoint back (evaluation, inference) is :func:`raypose.checkpoints.load_model`, outside this
package.
"""
from __future__ import annotations

__all__ = ["checkpoint", "image_loop", "loop", "run", "strategy"]
