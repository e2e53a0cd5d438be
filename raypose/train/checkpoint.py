"""Checkpoints: what a run needs to resume exactly, and what evaluation needs to rebuild a model.

A checkpoint directory holds

- ``model.pt``        plain ``state_dict`` of the (unwrapped) model, fp32 — enough for
                      :func:`load_model` (evaluation, inference, ``finetune --init``);
- ``meta.pt``         step, epochs done, per-epoch history, stage, world size and the config as
                      JSON text;
- ``config.json``     the same config, for people;
- ``rng_rank{r}.pt``  every rank's torch / numpy / python RNG state and its data generator;
- ``train_state.pt``  DDP: optimizer, scheduler and counters (rank 0), or
- ``deepspeed/``      DeepSpeed: the engine's own checkpoint, one ZeRO shard per rank.

Every file is written with ``torch.save`` to a temporary name and ``os.replace``-d; a rank's
directory is assembled under a temporary name and renamed when complete, then handed to
``ray.train.report``, which merges the ranks' directories into one. Only tensors and
primitive containers are stored, so everything loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from raypose import checkpoints
from raypose.checkpoints import (CONFIG_FILE, FORMAT_VERSION, META_FILE, MODEL_FILE,  # noqa: F401
                                 config_from_json, load_encoder, load_model, load_state, safe_load)
from raypose.config import Config


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: str | Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# RNG state as tensors
# --------------------------------------------------------------------------------------------

def rng_state(generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """This process's RNG states in a ``weights_only``-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: Optional[torch.Generator] = None) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------

@dataclass
class Progress:
    """Where a run is: optimizer steps taken, epochs completed, and one record per epoch."""

    step: int = 0
    epoch: int = 0                    # epochs completed = the next epoch to run
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "history": list(self.history), "best": self.best}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Progress":
        return cls(int(d.get("step", 0)), int(d.get("epoch", 0)), list(d.get("history", [])),
                   float(d.get("best", float("inf"))))


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, floating ones as fp32 (bf16 engines), on the CPU."""
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu()
            for k, v in model.state_dict().items()}


def write_checkpoint(directory: str | Path, strategy: Any, progress: Progress, cfg: Config,
                     stage: str, generator: Optional[torch.Generator] = None,
                     extra_meta: Optional[dict[str, Any]] = None) -> Path:
    """Write this rank's part of a checkpoint into ``directory`` (atomically) and return it.

    ``extra_meta`` (primitives) is added to ``meta.pt``, e.g. Lifting by Image's ``lift_stage``.

    Collective for DeepSpeed (every rank must call it). ``directory`` must be private to this
    rank (Ray merges the ranks' directories when they are reported).
    """
    final = Path(directory)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    strategy.save(tmp)
    rank = strategy.info.rank
    atomic_torch_save(rng_state(generator), tmp / rng_file(rank))
    if rank == 0:
        text = json.dumps(cfg.to_dict(), indent=1)
        atomic_torch_save(_float_state(strategy.unwrapped()), tmp / MODEL_FILE)
        atomic_torch_save({"format": FORMAT_VERSION, "stage": stage, "progress": progress.to_dict(),
                           "world_size": strategy.info.world_size, "strategy": cfg.train.strategy,
                           "config_json": text, **(extra_meta or {})}, tmp / META_FILE)
        atomic_write_text(text, tmp / CONFIG_FILE)
    _swap_in(tmp, final)
    return final


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the complete ``tmp``: the previous checkpoint is moved aside, not
    deleted, until the new one is in place, so a crash at any moment leaves one whole checkpoint
    (``final`` or ``final.old``) — never a half-written one under the final name."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

def read_meta(directory: str | Path) -> dict[str, Any]:
    """:func:`raypose.checkpoints.read_meta` with ``progress`` as a :class:`Progress`."""
    meta = checkpoints.read_meta(directory)
    meta["progress"] = Progress.from_dict(meta["progress"])
    return meta


def restore(directory: str | Path, strategy: Any, generator: Optional[torch.Generator] = None
            ) -> Progress:
    """Load model, optimizer, scheduler and this rank's RNG state; return the saved progress.

    At another world size the RNG state of rank ``rank % saved_world_size`` is used; DDP
    optimizer state is whole on every rank, and DeepSpeed ZeRO-1/2 state, which cannot be
    re-sharded, falls back to module weights with fresh optimizer moments (see
    ``DeepSpeedStrategy.load``).
    """
    directory = Path(directory)
    meta = read_meta(directory)
    if getattr(strategy, "engine", None) is not None:
        strategy.load(directory, saved_world_size=int(meta.get("world_size", strategy.info.world_size)))
    else:
        strategy.load(directory)
    rank = strategy.info.rank
    path = directory / rng_file(rank)
    if not path.exists():
        path = directory / rng_file(rank % max(1, int(meta.get("world_size", 1))))
    if path.exists():
        set_rng_state(safe_load(path), generator)
    return meta["progress"]
