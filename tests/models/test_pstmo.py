"""P-STMO: shapes, paper-sized parameter/FLOP counts, mask token, weight hand-over, overfitting."""
from __future__ import annotations

import pytest
import torch

from raypose.models import build, count_flops, count_parameters


@pytest.mark.parametrize("f", [9, 27, 81, 243])
@pytest.mark.parametrize("name", ["pstmo", "pstmo_s"])
def test_lifting_and_pretraining_shapes(name, f, tiny, make_masks):
    lift = build(name, f, "finetune", **tiny).eval()
    x = torch.randn(2, f, 17, 2)
    out = lift(x)
    assert out["centre"].shape == (2, 1, 17, 3) and out["multi"].shape == (2, f, 17, 3)
    pre = build(name, f, "pretrain", **tiny, decoder_depth=1)
    masks = make_masks(2, f, max(1, f // 5), 2)
    rec = pre(x, masks)["rec_2d"]
    assert rec.shape == (2, f, 17, 2) and torch.isfinite(rec).all()


@pytest.mark.parametrize("name,issue_m,paper_m,paper_flops_m", [
    ("pstmo", 7.0, 6.7, 1737), ("pstmo_s", 6.5, 6.2, 1482)])
def test_default_size_matches_paper(name, issue_m, paper_m, paper_flops_m):
    model = build(name, 243)
    params = count_parameters(model) / 1e6
    assert abs(params - issue_m) / issue_m < 0.10 and abs(params - paper_m) / paper_m < 0.10, params
    flops = count_flops(model, 243) / 1e6  # FLOPs = 2 × MACs (paper Table 7 lists MACs: 868.5 / 741.4)
    assert abs(flops - paper_flops_m) / paper_flops_m < 0.10, flops


def test_default_layout_follows_paper():
    m = build("pstmo", 243)
    assert len(m.encoder.tem.layers) == 4 and m.tail.mofa.strides == [3, 3, 3, 3, 3]
    assert m.encoder.sem.stem.linear.in_features == 34 and m.encoder.sem.stem.linear.out_features == 512
    p = build("pstmo_s", 243, "pretrain")
    assert len(p.encoder.tem.layers) == 3 and len(p.decoder.transformer.layers) == 2
    assert p.decoder.mask_token.shape[-1] == 128  # decoder width d/2 as in the reference


def test_masked_joints_reach_sem_as_mask_token(tiny, make_masks):
    model = build("pstmo", 9, "pretrain", **tiny, decoder_depth=1)
    seen = {}
    model.encoder.sem.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0].detach()))
    x = torch.randn(2, 9, 17, 2)
    masks = make_masks(2, 9, 3, 4)
    model(x, masks)
    sem_in = seen["x"].reshape(2, 9, 17, 2)
    token = model.encoder.spatial_mask_token.token.detach()
    m = masks.joints_masked
    assert torch.equal(sem_in[m], token.expand(int(m.sum()), 2))
    assert torch.equal(sem_in[~m], x[~m])


def test_missing_joints_use_mask_token_when_lifting(tiny):
    model = build("pstmo", 9, **tiny).eval()
    x = torch.randn(1, 9, 17, 2)
    missing = torch.zeros(1, 9, 17, dtype=torch.bool)
    missing[0, :, 13] = True
    y = x.clone()
    y[0, :, 13] = 5.0  # what sits under a missing joint must not matter
    a, b = model(x, missing)["centre"], model(y, missing)["centre"]
    assert torch.equal(a, b) and not torch.equal(a, model(x)["centre"])


def test_pretrained_encoder_loads_into_lifting_model(tiny):
    pre = build("pstmo", 27, "pretrain", **tiny, decoder_depth=1)
    lift = build("pstmo", 27, **tiny).eval()
    enc = pre.encoder_state_dict()
    loaded = lift.load_pretrained(enc).loaded
    assert sorted(loaded) == sorted(enc) and all(k.startswith("encoder.") for k in loaded)
    for k in loaded:
        assert torch.equal(lift.state_dict()[k], enc[k])
    x = torch.randn(2, 27, 17, 2)
    before = lift(x)["centre"]
    with torch.no_grad():
        for p in pre.encoder.parameters():
            p.add_(0.1)
    lift.load_pretrained(pre.encoder_state_dict())
    assert not torch.allclose(before, lift(x)["centre"])


def test_tiny_lifting_model_overfits_real_clip(walk_clips, tiny, overfit):
    torch.manual_seed(0)
    model = build("pstmo", 9, **tiny)
    first, last = overfit(model, walk_clips, steps=100)
    assert last * 10 <= first, (first, last)


def test_tiny_pretraining_model_overfits_real_clip(walk_clips, tiny, overfit, make_masks):
    from raypose.config import LossConfig

    torch.manual_seed(0)
    model = build("pstmo", 9, "pretrain", **tiny, decoder_depth=1)
    masks = make_masks(len(walk_clips["pose_2d"]), 9, 5, 1)
    first, last = overfit(model, walk_clips, steps=100, masks=masks, pretrain=True,
                          loss_cfg=LossConfig(rec_2d=1.0))
    assert last * 10 <= first, (first, last)
