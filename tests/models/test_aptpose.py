"""APTPose: four masked SEM branches fused, reprojection, determinism, sizes, overfitting."""
from __future__ import annotations

import pytest
import torch

from raypose.models import build, count_flops, count_parameters


@pytest.mark.parametrize("f", [9, 27, 81, 243])
def test_shapes(f, tiny, make_masks):
    x = torch.randn(2, f, 17, 2)
    out = build("aptpose", f, **tiny).eval()(x)
    assert out["centre"].shape == (2, 1, 17, 3) and out["multi"].shape == (2, f, 17, 3)
    pre = build("aptpose", f, "pretrain", **tiny, decoder_depth=1)
    res = pre(x, make_masks(2, f, max(1, f // 5), 2, levels=True))
    assert res["rec_2d"].shape == (2, f, 17, 2) and res["reproj_2d"].shape == (2, f, 17, 2)
    assert res["rec_3d"].shape == (2, f, 17, 3)


@pytest.mark.parametrize("fusion", ["mul", "add", "avg", "cat"])
def test_fusion_modes(fusion, tiny):
    model = build("aptpose", 9, **tiny, fusion=fusion).eval()
    x = torch.randn(2, 9, 17, 2)
    feats = model.encoder.branch_features(x, {})
    fused = model.encoder.fusion(feats)
    if fusion == "mul":
        assert torch.allclose(fused, feats[0] * feats[1] * feats[2] * feats[3])
    elif fusion == "add":
        assert torch.allclose(fused, sum(feats))
    elif fusion == "avg":
        assert torch.allclose(fused, sum(feats) / 4)
    assert fused.shape == feats[0].shape and model(x)["centre"].shape == (2, 1, 17, 3)


def test_each_branch_gets_its_level_mask(tiny, make_masks):
    pre = build("aptpose", 9, "pretrain", **tiny, decoder_depth=1)
    seen = {}
    for lv, sem in pre.encoder.sems.items():
        sem.register_forward_pre_hook(lambda m, a, lv=lv: seen.update({lv: a[0].detach()}))
    x = torch.randn(2, 9, 17, 2)
    masks = make_masks(2, 9, 3, 2, levels=True)
    pre(x, masks)
    for lv, m in masks.levels.items():
        got = seen[lv].reshape(2, 9, 17, 2)
        token = pre.encoder.mask_tokens[lv].token.detach()
        assert torch.equal(got[m], token.expand(int(m.sum()), 2)) and torch.equal(got[~m], x[~m])


def test_evaluation_is_deterministic(tiny):
    model = build("aptpose", 27, **tiny).eval()
    x = torch.randn(2, 27, 17, 2)
    assert torch.equal(model(x)["centre"], model(x)["centre"])


def test_default_size_matches_paper():
    model = build("aptpose", 243)
    # Paper Table 1a: 1.367 G "FLOPs" at 243 frames, on the scale where P-STMO is 0.868 G,
    # i.e. multiply-accumulates; FlopCounterMode counts 2 per MAC.
    macs = count_flops(model, 243) / 2 / 1e9
    assert abs(macs - 1.367) / 1.367 < 0.10, macs
    # P-STMO (≈7.0 M) plus three more SEMs of ≈0.68 M each
    assert abs(count_parameters(model) / 1e6 - 9.0) / 9.0 < 0.10


def test_pretrained_weights_load_by_name(tiny):
    pre = build("aptpose", 27, "pretrain", **tiny, decoder_depth=1)
    lift = build("aptpose", 27, **tiny).eval()
    enc = pre.encoder_state_dict()
    assert sorted(lift.load_pretrained(enc).loaded) == sorted(enc)
    x = torch.randn(2, 27, 17, 2)
    before = lift(x)["centre"]
    with torch.no_grad():
        pre.encoder.sems["limb"].trunk.out.weight.mul_(2)
    lift.load_pretrained(pre.encoder_state_dict())
    assert not torch.allclose(before, lift(x)["centre"])


def test_tiny_model_overfits_real_clip(walk_clips, tiny, overfit):
    from raypose.config import LossConfig

    torch.manual_seed(0)
    cfg = LossConfig(multi_frame=1, single_frame=1, bone_multi_frame=0.5, bone_single_frame=0.5)
    first, last = overfit(build("aptpose", 9, **tiny), walk_clips, steps=100, loss_cfg=cfg)
    assert last * 10 <= first, (first, last)
