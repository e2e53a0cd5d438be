"""Strategies on a real engine at world size 1: accumulation, clipping, ZeRO, bf16 config checks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from raypose.config import Config, TrainConfig
from raypose.errors import ConfigError
from raypose.train.strategy import (DDPStrategy, DeepSpeedStrategy, Strategy, deepspeed_config,
                                    make_strategy, micro_batch_size, validate_deepspeed_config)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def _data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g), torch.randn(n, 3, generator=g)


def _train(strategy: Strategy, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float = 0.1) -> nn.Module:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model = strategy.setup(model, opt, None)
    stepped = []
    for i, (x, y) in enumerate(batches):
        strategy.begin_micro_step(last=i == len(batches) - 1)
        with strategy.forward_context():
            loss = (model(strategy.prepare_inputs(x)).float() - y).pow(2).mean()
            strategy.backward(loss)
        stepped.append(strategy.step())
    strategy.stepped = stepped
    return strategy.unwrapped()


def test_ddp_accumulation_equals_one_big_batch():
    x, y = _data(8)
    big = _train(DDPStrategy(TrainConfig(grad_accum=1)), [(x, y)])
    acc_strategy = DDPStrategy(TrainConfig(grad_accum=2))
    acc = _train(acc_strategy, [(x[:4], y[:4]), (x[4:], y[4:])])
    assert acc_strategy.stepped == [False, True]
    assert acc_strategy.optimizer_steps == 1 and acc_strategy.micro_steps == 2
    for a, b in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b)


def test_ddp_last_micro_step_closes_a_short_group():
    x, y = _data(8)
    s = DDPStrategy(TrainConfig(grad_accum=4))
    _train(s, [(x[:4], y[:4]), (x[4:], y[4:])])
    assert s.stepped == [False, True]  # the epoch's end forces the step


def test_ddp_clipping_bounds_the_update():
    x, y = _data(8)
    y = y * 1e4  # huge gradients
    before = [p.detach().clone() for p in _model().parameters()]
    clipped = _train(DDPStrategy(TrainConfig(), grad_clip=0.01), [(x, y)], lr=1.0)
    delta = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(clipped.parameters(), before)))
    assert float(delta.detach()) <= 0.01 + 1e-5


def test_deepspeed_zero2_accumulates_and_matches_ddp():
    """A real DeepSpeed engine (gloo, world of one): ZeRO-2 + accumulation = DDP's update."""
    x, y = _data(8)
    ddp = _train(DDPStrategy(TrainConfig(grad_accum=2)), [(x[:4], y[:4]), (x[4:], y[4:])])
    ds = DeepSpeedStrategy(TrainConfig(strategy="deepspeed", zero_stage=2, grad_accum=2), micro_batch=4)
    model = _train(ds, [(x[:4], y[:4]), (x[4:], y[4:])])
    assert ds.stepped == [False, True]
    assert ds.engine.zero_optimization_stage() == 2
    for a, b in zip(ddp.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_deepspeed_bf16_runs_on_cpu():
    x, y = _data(8)
    ds = DeepSpeedStrategy(TrainConfig(strategy="deepspeed", zero_stage=1, precision="bf16"), micro_batch=8)
    model = _train(ds, [(x, y)])
    assert next(model.parameters()).dtype == torch.bfloat16
    assert ds.stepped == [True]


def test_deepspeed_save_load_round_trip(tmp_path):
    x, y = _data(8)
    cfg = TrainConfig(strategy="deepspeed", zero_stage=2)
    ds = DeepSpeedStrategy(cfg, micro_batch=8)
    trained = _train(ds, [(x, y)])
    ds.save(tmp_path)
    fresh = DeepSpeedStrategy(cfg, micro_batch=8)
    model = _model()
    fresh.setup(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    fresh.load(tmp_path)
    assert fresh.optimizer_steps == 1
    for a, b in zip(trained.parameters(), fresh.unwrapped().parameters()):
        torch.testing.assert_close(a, b)


def test_deepspeed_config_derives_the_global_batch():
    cfg = TrainConfig(strategy="deepspeed", zero_stage=1, grad_accum=3, num_workers=4)
    ds = validate_deepspeed_config(cfg, micro_batch=32)
    assert ds["train_batch_size"] == 32 * 3 * 4
    assert ds["zero_optimization"]["stage"] == 1 and ds["bf16"]["enabled"] is False
    assert "optimizer" not in ds  # a torch optimizer is passed in: nothing JIT-compiles


def test_gpu_settings_validate_without_a_gpu():
    cfg = TrainConfig(strategy="deepspeed", zero_stage=2, precision="bf16", use_gpu=True,
                      num_workers=8, grad_accum=2)
    ds = validate_deepspeed_config(cfg, micro_batch=160, grad_clip=1.0)
    assert ds["bf16"]["enabled"] and ds["gradient_clipping"] == 1.0
    assert ds["train_batch_size"] == 160 * 2 * 8


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError):
        deepspeed_config(TrainConfig(strategy="deepspeed", zero_stage=3), 8, 0.0, 1)
    with pytest.raises(ConfigError):
        TrainConfig(strategy="ddp", zero_stage=2)
    with pytest.raises(ConfigError):
        TrainConfig(strategy="ddp", precision="bf16")


def test_make_strategy_picks_by_config():
    cfg = Config().with_overrides({"train.strategy": "deepspeed", "data.batch_size": 5,
                                   "data.clips_per_sequence": 3})
    s = make_strategy(cfg)
    assert isinstance(s, DeepSpeedStrategy) and s.micro_batch == micro_batch_size(cfg) == 15
    assert isinstance(make_strategy(Config()), DDPStrategy)
    assert s.is_main and s.world_size == 1


def test_deepspeed_clips_only_when_asked():
    assert deepspeed_config(TrainConfig(strategy="deepspeed"), 8, 0.0, 1)["gradient_clipping"] == 0.0
    assert deepspeed_config(TrainConfig(strategy="deepspeed"), 8, 2.5, 1)["gradient_clipping"] == 2.5


def test_deepspeed_resume_at_another_world_size_loads_module_weights_only(tmp_path):
    """ZeRO shards cannot be re-sharded: weights, scheduler and counters come back, moments restart."""
    x, y = _data(8)
    cfg = TrainConfig(strategy="deepspeed", zero_stage=1)
    ds = DeepSpeedStrategy(cfg, micro_batch=8)
    model = _model()
    ds.setup(model, torch.optim.Adam(model.parameters(), lr=0.01), None)
    for _ in range(3):
        ds.begin_micro_step(last=True)
        ds.backward((ds.model(x) - y).pow(2).mean())
        ds.step()
    ds.save(tmp_path)

    fresh = DeepSpeedStrategy(cfg, micro_batch=8)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    fresh.setup(model, opt, None)
    with pytest.warns(UserWarning, match="module weights only"):
        fresh.load(tmp_path, saved_world_size=2)   # as if saved by a 2-worker run
    assert fresh.optimizer_steps == 3
    for a, b in zip(ds.unwrapped().parameters(), fresh.unwrapped().parameters()):
        torch.testing.assert_close(a, b)
    assert all(not opt.state.get(p) or float(opt.state[p]["exp_avg"].abs().sum()) == 0.0
               for p in fresh.unwrapped().parameters())

    same = DeepSpeedStrategy(cfg, micro_batch=8)
    model = _model()
    same.setup(model, torch.optim.Adam(model.parameters(), lr=0.01), None)
    same.load(tmp_path, saved_world_size=1)       # same world size: full state, no warning
    assert same.optimizer_steps == 3
