"""Typed config: YAML/dict round trips, inherit:, --set overrides and validation."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from raypose import config
from raypose.config import Config, SourceConfig
from raypose.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_round_trip_through_dict_and_yaml(tmp_path):
    cfg = Config()
    assert config.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert config.load(path) == cfg
    assert yaml.safe_load(path.read_text())["train"]["strategy"] == "ddp"


def test_non_default_round_trip(tmp_path):
    cfg = config.from_dict({
        "data": {"sources": [{"name": "h36m", "format": "h36m", "path": "s3://b/x.npz", "weight": 2.0},
                             {"name": "amass", "format": "amass", "path": "/d", "virtual_cameras": 6}],
                 "num_frames": 81, "train_subjects": ["S1", "S5"], "test_subjects": ["S9"]},
        "model": {"name": "mpm", "extra": {"foo": [1, 2]}},
        "optim": {"lr": 1e-4, "betas": [0.8, 0.99]},
        "train": {"strategy": "deepspeed", "zero_stage": 2},
    })
    assert isinstance(cfg.data.sources[1], SourceConfig) and cfg.data.sources[1].virtual_cameras == 6
    cfg.to_yaml(tmp_path / "c.yaml")
    back = config.load(tmp_path / "c.yaml")
    assert back == cfg
    assert back.optim.lr == pytest.approx(1e-4) and back.model.extra == {"foo": [1, 2]}


def test_inherit_between_two_files(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "data:\n  num_frames: 81\n  batch_size: 8\ntrain:\n  epochs: 5\nmodel:\n  extra: {a: 1, b: 2}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text(
        "inherit: ../base.yaml\ndata:\n  batch_size: 16\noptim:\n  lr: 1e-3\nmodel:\n  extra: {c: 3}\n")
    cfg = config.load(tmp_path / "sub" / "child.yaml")
    assert cfg.data.num_frames == 81  # from the parent
    assert cfg.data.batch_size == 16  # child wins, key by key
    assert cfg.train.epochs == 5
    assert cfg.optim.lr == pytest.approx(1e-3)  # 1e-3 is a float, not the string '1e-3'
    assert cfg.model.extra == {"c": 3}  # free-form mappings are replaced, not merged


def test_inherit_cycle_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        config.load(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")


def test_set_overrides_scalars_lists_bools():
    cfg = config.load(None, ["train.epochs=7", "optim.lr=3e-4", "data.flip_augment=false",
                             "data.train_subjects=[S1, S5, S6]", "optim.betas=[0.5, 0.9]",
                             "masking.levels=[keypoint, limb]", "model.extra.depth_scale=2",
                             "train.run_name=a=b"])
    assert cfg.train.epochs == 7
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.data.flip_augment is False
    assert cfg.data.train_subjects == ["S1", "S5", "S6"]
    assert cfg.optim.betas == [0.5, 0.9]
    assert cfg.masking.levels == ["keypoint", "limb"]
    assert cfg.model.extra == {"depth_scale": 2}
    assert cfg.train.run_name == "a=b"
    # dict overrides (Tune's sampled values) are taken as values, not parsed
    tuned = Config().with_overrides({"masking.temporal_ratio": 0.5, "masking.strategy": "tube"})
    assert tuned.masking.temporal_ratio == 0.5 and tuned.masking.strategy == "tube"


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    config.add_cli_arguments(parser)
    args = parser.parse_args(["--config", str(REPO / "configs" / "nonexistent.yaml")])
    with pytest.raises(ConfigError):
        config.from_cli(args)
    args = parser.parse_args(["--set", "train.epochs=3", "--set", "data.num_frames=9"])
    cfg = config.from_cli(args)
    assert (cfg.train.epochs, cfg.data.num_frames) == (3, 9)


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown"),
    ("nosection.x=1", "unknown"),
    ("data.sources.path=x", "unknown"),
    ("train.epochs=three", "integer"),
    ("train.epochs=2.5", "integer"),
    ("data.flip_augment=3", "true/false"),
    ("optim.lr=fast", "number"),
    ("model.name=5", "string"),
    ("train.strategy=horovod", "not one of"),
    ("data.train_subjects=S1", "list"),
    ("no_equals_sign", "a.b=value"),
])
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        config.load(None, [override])


def test_unknown_keys_and_wrong_types_in_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("data:\n  num_frame: 27\n")
    with pytest.raises(ConfigError, match="num_frame"):
        config.load(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("train:\n  use_gpu: 'yes please'\n")
    with pytest.raises(ConfigError, match="use_gpu"):
        config.load(tmp_path / "bad2.yaml")
    (tmp_path / "bad3.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load(tmp_path / "bad3.yaml")
    with pytest.raises(ConfigError, match="unknown keys"):
        config.from_dict({"data": {"sources": [{"name": "x", "colour": "red"}]}})


@pytest.mark.parametrize("values, message", [
    ({"data": {"num_frames": 28}}, "odd"),
    ({"data": {"stride": 0}}, "stride"),
    ({"data": {"train_subjects": ["S1"], "test_subjects": ["S1"]}}, "more than one split"),
    ({"model": {"dim": 250, "heads": 8}}, "multiple"),
    ({"model": {"fusion": "max"}}, "fusion"),
    ({"masking": {"temporal_ratio": 1.0}}, "temporal_ratio"),
    ({"masking": {"levels": ["keypoint", "organ"]}}, "organ"),
    ({"optim": {"lr": 0.0}}, "lr"),
    ({"optim": {"betas": [0.9]}}, "betas"),
    ({"train": {"zero_stage": 2}}, "deepspeed"),
    ({"train": {"zero_stage": 4, "strategy": "deepspeed"}}, "zero_stage"),
    ({"data": {"sources": [{"weight": 0}]}}, "weight"),
])
def test_validation_in_post_init(values, message):
    with pytest.raises(ConfigError, match=message):
        config.from_dict(values)
    # the same check fires when the value arrives as an override
    section, fields = next(iter(values.items()))
    if section != "data" or "sources" not in fields:
        with pytest.raises(ConfigError, match=message):
            Config().with_overrides({f"{section}.{k}": v for k, v in fields.items()})


def test_shipped_configs_load():
    files = sorted((REPO / "configs").rglob("*.yaml"))
    for path in files:
        if path.parent.name == "cluster":
            continue
        assert isinstance(config.load(path), Config), path


def test_cli_override_wins_over_per_stage_values():
    from raypose.config import Config

    cfg = Config().with_overrides({"train.stage_overrides": {
        "pretrain": {"train.epochs": 15, "optim.lr": 1e-4}, "finetune": {"train.epochs": 40}}})
    cfg = cfg.with_overrides(["train.epochs=3"])
    assert cfg.train.epochs == 3
    assert cfg.train.stage_overrides["pretrain"] == {"train.epochs": 3, "optim.lr": 1e-4}
    assert cfg.train.stage_overrides["finetune"] == {"train.epochs": 3}


@pytest.mark.parametrize("name", ["pstmo", "pstmo_s", "pstmo_gt2d", "mpm", "aptpose", "pstmo_3dhp",
                                  "aptpose_3dhp"])
def test_paper_configs_validate_on_a_held_out_training_subject(name):
    # the original failure: no validation split, so "best by validation MPJPE" was NaN
    from raypose.train.run import stage_config

    cfg = config.load(REPO / "configs" / f"{name}.yaml")
    for stage in ("pretrain", "finetune"):
        d = stage_config(cfg, stage).data
        assert d.val_subjects == ["S8"] and d.train_subjects and d.test_subjects
        assert not set(d.val_subjects) & (set(d.train_subjects) | set(d.test_subjects))


def test_causal_windows_need_a_model_that_predicts_the_last_frame():
    """A centre-frame model with a causal window would lift the wrong frame: refused by name."""
    with pytest.raises(ConfigError, match="cannot be trained with data.causal"):
        config.load(None, ["model.name=baseline", "data.num_frames=27", "data.causal=true"])
    assert config.load(None, ["model.name=baseline", "data.num_frames=1", "data.causal=true"]).data.causal
    online = config.load(Path(__file__).resolve().parents[1] / "configs" / "wild_online.yaml")
    assert online.data.causal and online.model.name == "window_mlp"


def test_relative_source_paths_are_pinned_to_the_directory_they_were_written_for(tmp_path):
    cfg = config.load(REPO / "configs" / "label_study" / "base.yaml")
    pinned = config.with_absolute_sources(cfg, REPO)
    assert [s.path for s in pinned.data.sources] == [str(REPO.resolve() / s.path) for s in cfg.data.sources]
    assert all(Path(s.path).is_file() for s in pinned.data.sources)
    # absolute paths, URIs and the embedded data ('') stay as they are
    kept = cfg.with_overrides({"data.sources": [
        {"name": "a", "format": "store", "path": "s3://bucket/store"},
        {"name": "b", "format": "mocap", "path": ""},
        {"name": "c", "format": "mocap", "path": str(tmp_path / "x.npz")}]})
    assert [s.path for s in config.with_absolute_sources(kept, tmp_path).data.sources] == [
        "s3://bucket/store", "", str(tmp_path / "x.npz")]
