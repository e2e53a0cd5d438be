"""How a worker turns a loss into an optimizer step: DDP or DeepSpeed, behind one small protocol.

The training loop only ever calls ``setup`` → (``forward_context`` / ``prepare_inputs`` →
``backward`` → ``step``)* → ``save``/``load``. Everything that differs between plain DDP and a
DeepSpeed engine — gradient accumulation, clipping, mixed precision, how state is saved — lives
here, so the loop is the same for both.

Both work inside a Ray Train worker (the process group already exists) and outside one at world
size 1 (tests, the benchmark), where no process group is needed for DDP and a single-process
gloo group is created for DeepSpeed.
"""
from __future__ import annotations

import contextlib
import warnings
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from raypose.config import Config, TrainConfig
from raypose.errors import ConfigError

#: Where a DeepSpeed engine keeps its own checkpoint inside a raypose checkpoint directory.
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"
#: Where DDP keeps optimizer / scheduler state.
TRAIN_STATE_FILE = "train_state.pt"


# --------------------------------------------------------------------------------------------
# where am I
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerInfo:
    """Rank, world size and device of this process (Ray Train worker or plain process)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    in_ray_train: bool


def worker_info(use_gpu: bool = False) -> WorkerInfo:
    """The Ray Train context when called inside ``train_loop_per_worker``, else a world of one."""
    try:
        import ray.train

        ctx = ray.train.get_context()
        import ray.train.torch

        return WorkerInfo(ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank(),
                          ray.train.torch.get_device(), True)
    except RuntimeError:
        device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        return WorkerInfo(0, 1, 0, device, False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_process_group(info: WorkerInfo) -> None:
    """A process group for DeepSpeed: Ray Train's when it exists, else a local world of one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if info.world_size != 1:
        raise RuntimeError("no torch.distributed process group for a multi-worker run")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------

@runtime_checkable
class Strategy(Protocol):
    """What the loop needs from a distributed training strategy."""

    info: WorkerInfo

    @property
    def is_main(self) -> bool: ...

    @property
    def device(self) -> torch.device: ...

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None) -> nn.Module: ...

    def begin_micro_step(self, last: bool = False) -> bool: ...

    def forward_context(self) -> contextlib.AbstractContextManager: ...

    def prepare_inputs(self, x: torch.Tensor) -> torch.Tensor: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> bool: ...

    def scheduler_step(self) -> None: ...

    def unwrapped(self) -> nn.Module: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def save(self, directory: str | Path) -> None: ...

    def load(self, directory: str | Path) -> None: ...


class _Base:
    """Shared bookkeeping: micro-steps, accumulation boundaries, scheduler, device."""

    def __init__(self, train_cfg: TrainConfig, grad_clip: float, info: Optional[WorkerInfo] = None):
        self.cfg = train_cfg
        self.grad_clip = float(grad_clip)
        self.accum = int(train_cfg.grad_accum)
        self.info = info or worker_info(train_cfg.use_gpu)
        self.model: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler: Optional[Any] = None
        self.micro_steps = 0
        self.optimizer_steps = 0
        self._in_group = 0          # micro-steps taken in the current accumulation group
        self._boundary = self.accum == 1

    @property
    def is_main(self) -> bool:
        return self.info.rank == 0

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def world_size(self) -> int:
        return self.info.world_size

    def begin_micro_step(self, last: bool = False) -> bool:
        """Call before each forward: decides whether this micro-step ends an accumulation group.

        ``last`` (the epoch's final micro-batch) closes a short group, so no gradient is carried
        across an epoch end (or a checkpoint).
        """
        self._boundary = self._in_group + 1 >= self.accum or last
        return self._boundary

    def at_boundary(self) -> bool:
        """True when the coming ``step()`` updates the weights."""
        return self._boundary

    def _advance(self) -> bool:
        boundary = self._boundary
        self.micro_steps += 1
        self._in_group = 0 if boundary else self._in_group + 1
        if boundary:
            self.optimizer_steps += 1
        return boundary

    def scheduler_step(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else 0.0

    def _counters(self) -> dict[str, int]:
        return {"micro_steps": self.micro_steps, "optimizer_steps": self.optimizer_steps}

    def _load_counters(self, state: dict[str, Any]) -> None:
        self.micro_steps = int(state.get("micro_steps", 0))
        self.optimizer_steps = int(state.get("optimizer_steps", 0))
        self._in_group = 0


# --------------------------------------------------------------------------------------------
# DDP
# --------------------------------------------------------------------------------------------

class DDPStrategy(_Base):
    """``ray.train.torch.prepare_model`` (DDP when world size > 1), torch optimizer, autocast bf16."""

    def __init__(self, train_cfg: TrainConfig, grad_clip: float = 0.0, info: Optional[WorkerInfo] = None,
                 find_unused_parameters: bool = False):
        super().__init__(train_cfg, grad_clip, info)
        self.find_unused_parameters = find_unused_parameters
        self.bf16 = train_cfg.precision == "bf16"
        if self.bf16 and self.device.type != "cuda":
            raise ConfigError("DDP bf16 needs a GPU (use strategy deepspeed for bf16 on CPU)")

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Optional[Any] = None) -> nn.Module:
        if self.info.in_ray_train:
            import ray.train.torch

            kwargs = {"find_unused_parameters": True} if self.find_unused_parameters else {}
            model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kwargs)
        else:
            model = model.to(self.device)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.optimizer.zero_grad(set_to_none=True)
        return model

    def unwrapped(self) -> nn.Module:
        m = self.model
        return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m

    def forward_context(self) -> contextlib.AbstractContextManager:
        """Autocast for bf16; DDP's ``no_sync`` on micro-steps that do not end an accumulation."""
        stack = contextlib.ExitStack()
        if self.bf16:
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        if isinstance(self.model, nn.parallel.DistributedDataParallel) and not self.at_boundary():
            stack.enter_context(self.model.no_sync())
        return stack

    def prepare_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accum).backward()

    def step(self) -> bool:
        """Clip, step and zero the gradients at the end of an accumulation group."""
        if not self._advance():
            return False
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.unwrapped().state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "counters": self._counters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.unwrapped().load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self._load_counters(state.get("counters", {}))

    def save(self, directory: str | Path) -> None:
        """Rank 0 writes everything (DDP replicas are identical)."""
        from raypose.train.checkpoint import atomic_torch_save

        if self.is_main:
            state = self.state_dict()
            atomic_torch_save({k: v for k, v in state.items() if k != "model"},
                              Path(directory) / TRAIN_STATE_FILE)

    def load(self, directory: str | Path) -> None:
        from raypose.train.checkpoint import MODEL_FILE, safe_load

        directory = Path(directory)
        state = safe_load(directory / TRAIN_STATE_FILE, self.device)
        state["model"] = safe_load(directory / MODEL_FILE, self.device)
        self.load_state_dict(state)


# --------------------------------------------------------------------------------------------
# DeepSpeed
# --------------------------------------------------------------------------------------------

def deepspeed_config(train_cfg: TrainConfig, micro_batch: int, grad_clip: float,
                     world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON for a run: batch sizes derived, never a DeepSpeed optimizer.

    ``train_batch_size`` = micro-batch × accumulation × world size (DeepSpeed asserts it).
    The optimizer is a torch one passed to ``initialize`` (no fused op is JIT-compiled), and
    ``zero_force_ds_cpu_optimizer`` is off so ZeRO on CPU keeps it.
    """
    if train_cfg.zero_stage > 2:
        raise ConfigError("train.zero_stage 3 is not supported here (ZeRO 0-2: parameters stay "
                          "whole on every rank, which checkpoints and evaluation rely on)")
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": int(train_cfg.grad_accum),
        "train_batch_size": int(micro_batch) * int(train_cfg.grad_accum) * int(world_size),
        "zero_optimization": {"stage": int(train_cfg.zero_stage)},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": train_cfg.precision == "bf16"},
        "fp16": {"enabled": False},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }
    if train_cfg.precision == "bf16":
        # DeepSpeed casts parameters only; BatchNorm's running statistics must follow, or the
        # (CPU) kernel refuses bf16 weights with fp32 buffers.
        cfg["data_types"] = {"buffer_dtype": "bf16"}
    # Always explicit: DeepSpeed 0.19 clips at 1.0 when the key is absent.
    cfg["gradient_clipping"] = float(grad_clip) if grad_clip > 0 else 0.0
    return cfg


def validate_deepspeed_config(train_cfg: TrainConfig, micro_batch: int, grad_clip: float = 0.0,
                              world_size: Optional[int] = None) -> dict[str, Any]:
    """Check a DeepSpeed setting without a GPU or process group; returns the config dict.

    Uses DeepSpeed's own ``DeepSpeedConfig`` (pydantic) validation at world size 1 with the
    batch derived for ``world_size`` checked by hand, plus the settings this machine cannot
    run: bf16 is fine on CPU, fp16 is not offered, ZeRO 3 is refused.
    """
    from deepspeed.runtime.config import DeepSpeedConfig

    ws = int(world_size or train_cfg.num_workers)
    full = deepspeed_config(train_cfg, micro_batch, grad_clip, ws)
    local = dict(full, train_batch_size=int(micro_batch) * int(train_cfg.grad_accum))
    try:
        parsed = DeepSpeedConfig(local)
    except Exception as e:  # DeepSpeed raises AssertionError / pydantic ValidationError
        raise ConfigError(f"invalid DeepSpeed setting: {e}") from None
    if parsed.zero_optimization_stage != train_cfg.zero_stage:
        raise ConfigError(f"DeepSpeed parsed ZeRO stage {parsed.zero_optimization_stage}, "
                          f"expected {train_cfg.zero_stage}")
    if full["train_batch_size"] != parsed.train_micro_batch_size_per_gpu * parsed.gradient_accumulation_steps * ws:
        raise ConfigError("train_batch_size is not micro-batch × accumulation × world size")
    return full


class DeepSpeedStrategy(_Base):
    """A DeepSpeed engine (ZeRO 0–2, bf16 or fp32) around a torch optimizer."""

    def __init__(self, train_cfg: TrainConfig, grad_clip: float = 0.0, micro_batch: int = 1,
                 info: Optional[WorkerInfo] = None):
        super().__init__(train_cfg, grad_clip, info)
        self.micro_batch = int(micro_batch)
        self.bf16 = train_cfg.precision == "bf16"
        self.ds_config = validate_deepspeed_config(train_cfg, micro_batch, grad_clip, self.world_size)
        self.engine = None

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Optional[Any] = None) -> nn.Module:
        import deepspeed

        # The shm all-reduce op only serves inference and would be JIT-compiled on CPU.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        ensure_process_group(self.info)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        deepspeed.init_distributed(dist_backend=backend)
        model = model.to(self.device)
        engine, ds_opt, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                    config=self.ds_config)
        self.engine, self.model = engine, engine
        # The scheduler was built on the torch optimizer; ZeRO keeps its param_group dicts, so
        # stepping it per epoch changes the learning rate DeepSpeed uses.
        self.optimizer, self.scheduler = optimizer, scheduler
        return engine

    def unwrapped(self) -> nn.Module:
        return self.engine.module

    def begin_micro_step(self, last: bool = False) -> bool:
        boundary = super().begin_micro_step(last)
        self.engine.set_gradient_accumulation_boundary(boundary)
        return boundary

    def forward_context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def prepare_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """bf16 engines hold bf16 weights: floating inputs must match."""
        return x.to(torch.bfloat16) if self.bf16 and x.is_floating_point() else x

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # scales by 1/accumulation itself

    def step(self) -> bool:
        self.engine.step()  # clips, steps and zeroes only at the boundary set above
        return self._advance()

    def state_dict(self) -> dict[str, Any]:
        """Everything but the engine's sharded state (that goes through ``save``)."""
        return {"scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "counters": self._counters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self._load_counters(state.get("counters", {}))

    def save(self, directory: str | Path) -> None:
        """Collective: every rank writes its ZeRO shard via ``engine.save_checkpoint``."""
        self.engine.save_checkpoint(str(Path(directory) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG,
                                    client_state={"raypose": self.state_dict()})

    def load(self, directory: str | Path, saved_world_size: Optional[int] = None) -> None:
        """Resume from ``save``'s files.

        ZeRO-1/2 optimizer state is sharded per rank and cannot be re-sharded. When a run comes
        back at another world size (a node lost for good, an elastic resize), the module weights,
        scheduler and counters are restored and the optimizer moments start afresh — the choice
        that keeps a long pretraining going; ZeRO-0 state is whole and reloads at any size.
        """
        changed = (saved_world_size is not None and saved_world_size != self.world_size
                   and self.cfg.zero_stage >= 1)
        if changed:
            warnings.warn(f"resuming ZeRO-{self.cfg.zero_stage} state saved at world size "
                          f"{saved_world_size} on {self.world_size} workers: loading module "
                          "weights only, optimizer moments restart")
        path, client = self.engine.load_checkpoint(
            str(Path(directory) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, load_module_only=changed)
        if path is None:
            raise FileNotFoundError(f"{directory}: no DeepSpeed checkpoint")
        # The scheduler's last lr must win over the one stored with the optimizer's groups.
        self.load_state_dict((client or {}).get("raypose", {}))
        if self.scheduler is not None:
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr


# --------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------

def micro_batch_size(cfg: Config) -> int:
    """Clips per worker per micro-step: chunks per batch × clips drawn per chunk."""
    return int(cfg.data.batch_size) * int(cfg.data.clips_per_sequence)


def make_strategy(cfg: Config, info: Optional[WorkerInfo] = None,
                  find_unused_parameters: bool = False) -> Strategy:
    """The strategy ``cfg.train.strategy`` names, for this worker."""
    if cfg.train.strategy == "deepspeed":
        return DeepSpeedStrategy(cfg.train, cfg.optim.grad_clip, micro_batch_size(cfg), info)
    if cfg.train.strategy == "ddp":
        return DDPStrategy(cfg.train, cfg.optim.grad_clip, info, find_unused_parameters)
    raise ConfigError(f"train.strategy {cfg.train.strategy!r} unknown (ddp | deepspeed)")
