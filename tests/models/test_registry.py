"""Registry, config mapping, flip averaging, FLOP counting."""
from __future__ import annotations

import pytest
import torch

from raypose import config
from raypose.models import build, build_from_config, flip_average, names
from raypose.skeleton import flip_pose


def test_names_and_errors():
    assert names() == ["aptpose", "baseline", "image_lift", "mpm", "pstmo", "pstmo_s", "window_mlp"]
    with pytest.raises(KeyError):
        build("nope")
    with pytest.raises(TypeError):
        build("pstmo", 9, depht=2)
    with pytest.raises(ValueError):
        build("baseline", 9, "pretrain")


def test_overrides_reach_the_model():
    m = build("pstmo", 27, dim=64, heads=4, depth=2, ffn_dim=96, strides=[3, 9], dropout=0.0)
    assert len(m.encoder.tem.layers) == 2 and m.tail.mofa.strides == [3, 9]
    assert m.encoder.tem.pos_embed.shape == (1, 27, 64)


def test_build_from_config():
    cfg = config.from_dict({"model": {"name": "aptpose", "dim": 32, "heads": 4, "ffn_dim": 64, "depth": 1,
                                      "decoder_depth": 1, "decoder_dim": 16, "fusion": "add"},
                            "data": {"num_frames": 9}})
    pre = build_from_config(cfg, "pretrain")
    assert pre.decoder.mask_token.shape[-1] == 16 and pre.encoder.fusion.mode == "add"
    lift = build_from_config(cfg, "finetune").eval()
    assert lift(torch.randn(1, 9, 17, 2))["centre"].shape == (1, 1, 17, 3)


@pytest.mark.parametrize("name", ["pstmo", "mpm", "aptpose", "baseline"])
def test_flip_average_is_flip_equivariant(name):
    torch.manual_seed(0)
    kw = {} if name == "baseline" else dict(dim=32, ffn_dim=64, heads=4, depth=1, sem_hidden=64)
    model = build(name, 9, **kw).eval()
    x = torch.randn(2, 9, 17, 2)
    with torch.no_grad():
        a, b = flip_average(model, x), flip_average(model, flip_pose(x))
    for k in a:
        assert torch.allclose(flip_pose(a[k]), b[k], atol=1e-6)


@pytest.mark.parametrize("name", ["pstmo", "pstmo_s", "window_mlp"])
def test_trajectory_head_is_built_from_config_and_flip_averages_as_a_root(name):
    """model.trajectory adds 'trajectory' (N, 1, 3) to the lifting model only; flip averaging
    mirrors it as a point (x → −x), so the averaged root of a mirrored clip is the mirrored root."""
    torch.manual_seed(0)
    cfg = config.from_dict({"model": {"name": name, "dim": 32, "heads": 4, "ffn_dim": 64, "depth": 1,
                                      "sem_hidden": 64, "trajectory": True, "extra": {}},
                            "data": {"num_frames": 9}})
    if name == "window_mlp":
        cfg = cfg.with_overrides({"model.extra": {"hidden": 64, "blocks": 1}})
    model = build_from_config(cfg, "finetune").eval()
    x = torch.randn(2, 9, 17, 2) * 0.3
    with torch.no_grad():
        out, mirrored = flip_average(model, x), flip_average(model, flip_pose(x))
    assert out["trajectory"].shape == (2, 1, 3) and (out["trajectory"][..., 2] > 0).all()
    torch.testing.assert_close(mirrored["trajectory"], out["trajectory"] * torch.tensor([-1.0, 1.0, 1.0]))
    torch.testing.assert_close(flip_pose(out["centre"]), mirrored["centre"])
    if name != "window_mlp":
        assert "trajectory" not in build_from_config(cfg, "pretrain")(x, None)    # pretraining: no head
    plain = build_from_config(cfg.with_overrides({"model.trajectory": False}), "finetune").eval()
    assert "trajectory" not in plain(x)


@pytest.mark.parametrize("name", ["mpm", "aptpose", "baseline", "image_lift"])
def test_models_without_a_trajectory_head_refuse_it_clearly(name):
    from raypose.errors import ConfigError

    cfg = config.from_dict({"model": {"name": name, "trajectory": True}, "data": {"num_frames": 9}})
    with pytest.raises(ConfigError, match="model.trajectory.*pstmo, pstmo_s, window_mlp"):
        build_from_config(cfg, "finetune")
