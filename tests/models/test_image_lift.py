"""Lifting by Image: shapes, the pose-guided attention maths, feature selection, stage freezing."""
from __future__ import annotations

import pytest
import torch

from raypose.models import build
from raypose.models.backbones import build_backbone, load_weights
from raypose.models.blocks import pose_guided_attention
from raypose.models.image_lift import background_attention_share, num_kept, select_tokens

SMALL = dict(dim=32, ffn_dim=64, heads=4, depth=1, dropout=0.0, backbone="resnet18_w8",
             image_height=64, image_width=48, patch_stride=8)


def _inputs(n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 17, 2, generator=g) * 0.3, torch.randn(n, 3, 64, 48, generator=g)


@pytest.mark.parametrize("name,kw,shape", [("resnet18_w8", {}, (2, 32, 4, 3)), ("resnet50_w8", {"out_stride": 8}, (2, 64, 8, 6)),
                                           ("hrnet_w8", {"blocks": 1}, (2, 8, 16, 12))])
def test_backbone_shapes(name, kw, shape):
    m = build_backbone(name, **kw)
    y = m(torch.randn(2, 3, 64, 48))
    assert tuple(y.shape) == shape and m.out_channels == shape[1] and 64 // m.stride == shape[2]


def test_backbone_weights_from_local_file(tmp_path):
    a, b = build_backbone("resnet18_w8"), build_backbone("resnet18_w8")
    torch.save({"state_dict": {"backbone." + k: v for k, v in a.state_dict().items()}}, tmp_path / "w.pt")
    keys = load_weights(b, tmp_path / "w.pt")
    assert len(keys) == len(a.state_dict())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in keys)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")


def test_timm_backbone_fails_clearly_without_timm():
    try:
        import timm  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError, match="timm"):
            build_backbone("timm:resnet18")
    else:
        pytest.skip("timm imports here")


def test_shapes_both_stages():
    torch.manual_seed(0)
    model = build("image_lift", 1, **SMALL)
    pose, image = _inputs()
    out = model(pose, None, image, return_attention=True)
    assert out["centre"].shape == out["coarse"].shape == (3, 1, 17, 3)
    assert out["attention"].shape == (3, 3, 17, 8 * 6)
    model.set_stage(2)
    out = model(pose, None, image, return_attention=True)
    assert out["refined"].shape == (3, 1, 17, 3) and torch.equal(out["centre"], out["refined"])
    assert out["kept_index"].shape == (3, num_kept(48, 0.3))
    off = build("image_lift", 1, use_image=False, **SMALL)
    assert off(pose)["centre"].shape == (3, 1, 17, 3) and off.stage1.encoder is None
    with pytest.raises(ValueError, match="image"):
        model(pose)


def test_pose_guided_attention_normalises_before_transposition():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 4, 17, 8, generator=g), torch.randn(2, 4, 30, 8, generator=g)
    v_img, v_kp = torch.randn(2, 4, 30, 8, generator=g), torch.randn(2, 4, 17, 8, generator=g)
    upd_kp, upd_img, attn = pose_guided_attention(q, k, v_img, v_kp)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 17))          # rows sum to 1
    assert not torch.allclose(attn.sum(-2), torch.ones(2, 4, 30))      # columns do not
    assert torch.allclose(upd_kp, attn @ v_img, atol=1e-6)
    assert torch.allclose(upd_img, attn.transpose(-1, -2) @ v_kp, atol=1e-6)
    # identical keypoint values: image token i receives (column sum of A at i) × that value
    v = torch.randn(8, generator=g)
    _, upd_img, attn = pose_guided_attention(q, k, v_img, v.expand(2, 4, 17, 8))
    assert torch.allclose(upd_img, attn.sum(-2).unsqueeze(-1) * v, atol=1e-5)
    # a token no keypoint attends to gathers nothing; the most attended gathers most
    qp, k2 = q.abs() + 0.1, k.clone()
    k2[..., 0, :] = -10.0  # token 0 repels every (positive) query
    _, upd_img, attn = pose_guided_attention(qp, k2, v_img, v.expand(2, 4, 17, 8))
    col = attn.sum(-2)
    assert float(col[..., 0].max()) < 1e-3 and float(upd_img[..., 0, :].abs().max()) < 1e-2


def test_pose_guided_layer_in_model_updates_image_tokens_with_its_own_map():
    torch.manual_seed(0)
    model = build("image_lift", 1, **SMALL).eval()
    layer = model.stage1.layers[1]
    assert layer.pose_guided and layer.cross.dual and not model.stage1.layers[0].pose_guided
    joints, image = torch.randn(2, 17, 32), torch.randn(2, 48, 32)
    upd_j, upd_i, attn = layer.cross(joints, image)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 17), atol=1e-6)
    c = layer.cross
    vj = c._split(c.v_joints(joints))
    expect = c.proj_image(c._merge(attn.transpose(-1, -2) @ vj))
    assert torch.allclose(upd_i, expect, atol=1e-5)
    plain = build("image_lift", 1, pose_guided=False, **SMALL)
    assert not any(layer.pose_guided for layer in plain.stage1.layers)


@pytest.mark.parametrize("ratio", [0.01, 0.3, 0.5, 1.0])
def test_feature_selection_keeps_exactly_the_top_ranked(ratio):
    g = torch.Generator().manual_seed(2)
    attn = torch.softmax(torch.randn(2, 4, 17, 192, generator=g), -1)
    tokens = torch.randn(2, 192, 16, generator=g)
    kept, index = select_tokens(attn, tokens, ratio)
    k = round(ratio * 192) or 1
    assert kept.shape == (2, k, 16) and index.shape == (2, k)
    scores = attn.mean(1).sum(1)
    for n in range(2):
        assert set(index[n].tolist()) == set(scores[n].argsort(descending=True)[:k].tolist())
        assert torch.equal(kept[n], tokens[n, index[n]])
        if k < 192:
            assert scores[n, index[n]].min() >= scores[n][~torch.isin(torch.arange(192), index[n])].max()


def test_stage2_training_leaves_stage1_bitwise_unchanged():
    torch.manual_seed(0)
    model = build("image_lift", 1, **SMALL)
    pose, image = _inputs(4)
    target = torch.randn(4, 1, 17, 3) * 0.2
    opt = torch.optim.Adam(model.stage_parameters(), lr=1e-2)
    for _ in range(2):  # a little stage-1 training so BatchNorm stats are non-trivial
        loss = (model(pose, None, image)["coarse"] - target).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_stage(2).train()
    params = model.stage_parameters()
    assert params and not any(p is q for p in params for q in model.stage1.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(3):
        loss = (model(pose, None, image)["refined"] - target).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    after = model.state_dict()
    for k, v in before.items():
        if k.startswith("stage1."):
            assert torch.equal(v, after[k]), k       # weights and BatchNorm buffers
    assert any(not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("stage2."))
    assert all(p.grad is None for p in model.stage1.parameters())


def test_background_attention_share():
    centres = torch.tensor([[10.0, 10.0], [100.0, 100.0], [200.0, 10.0]])
    kp = torch.tensor([[[12.0, 12.0], [100.0, 90.0]]])  # 2 keypoints near patches 0 and 1
    attn = torch.tensor([[[0.5, 0.3, 0.2], [0.0, 0.0, 1.0]]])
    share = background_attention_share(attn, kp, centres, radius=30.0)
    assert torch.allclose(share, torch.tensor([(0.2 + 1.0) / 2]))
