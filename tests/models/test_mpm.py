"""MPM: 2D/3D stems into shared layers, alternating pretraining, completion, hand-over."""
from __future__ import annotations

import pytest
import torch

from raypose.models import build, count_parameters


@pytest.mark.parametrize("f", [9, 27, 81, 243])
def test_shapes_and_step_parity(f, tiny, make_masks):
    x2, x3 = torch.randn(2, f, 17, 2), torch.randn(2, f, 17, 3)
    lift = build("mpm", f, **tiny).eval()
    out = lift(x2)
    assert out["centre"].shape == (2, 1, 17, 3) and out["multi"].shape == (2, f, 17, 3)
    pre = build("mpm", f, "pretrain", **tiny)
    masks = make_masks(2, f, max(1, round(f * 0.4)), 5)
    even = pre(x2, masks, x3, step=0)
    assert even["rec_2d"].shape == (2, f, 17, 2) and even["lift_3d"].shape == (2, f, 17, 3)
    assert "rec_3d" not in even
    odd = pre(x2, masks, x3, step=1)
    assert set(odd) == {"rec_3d"} and odd["rec_3d"].shape == (2, f, 17, 3)
    assert set(pre(x2, masks, None, step=1)) >= {"rec_2d"}  # no 3D → a 2D step


def test_default_size_and_layout():
    lift = build("mpm", 243)
    # MPM fine-tunes encoder2D + shared layers + the P-STMO lifting tail (4 shared layers at
    # 243 frames in the reference README), so it is P-STMO-sized: ≈ 7.0 M.
    assert abs(count_parameters(lift) / 1e6 - 7.0) / 7.0 < 0.10
    assert not hasattr(lift.encoder, "stem_3d")
    pre = build("mpm", 243, "pretrain")
    assert pre.encoder.stem_3d.linear.in_features == 51 and pre.encoder.stem_2d.linear.in_features == 34
    shared = sum(p.numel() for n, p in pre.named_parameters() if n.startswith("encoder.shared"))
    stems = sum(p.numel() for n, p in pre.named_parameters() if n.startswith("encoder.stem"))
    assert shared > 10 * stems  # the paper's point: shared layers hold most parameters


def test_masked_3d_joints_use_3d_token(tiny, make_masks):
    pre = build("mpm", 9, "pretrain", **tiny)
    seen = {}
    pre.encoder.stem_3d.register_forward_pre_hook(lambda m, a: seen.update(x=a[0].detach()))
    x3 = torch.randn(2, 9, 17, 3)
    masks = make_masks(2, 9, 4, 5)
    pre(torch.randn(2, 9, 17, 2), masks, x3, step=1)
    got = seen["x"].reshape(2, 9, 17, 3)
    jm = masks.joints_masked
    assert torch.equal(got[jm], pre.encoder.mask_token_3d.token.detach().expand(int(jm.sum()), 3))
    assert torch.equal(got[~jm], x3[~jm])


def test_pose_completion_is_the_trained_masked_3d_reconstruction(tiny, make_masks):
    """complete_3d fills exactly what a masked-3D training step predicts for the same hidden
    joints and dropped frames (so what pretraining learnt is what completion uses), keeps the
    observed joints, and its fill depends on what it observes."""
    torch.manual_seed(0)
    pre = build("mpm", 9, "pretrain", **tiny).eval()
    x3 = torch.randn(2, 9, 17, 3)
    masks = make_masks(2, 9, 5, 4)
    hidden = masks.joints_masked | masks.frames_masked[..., None]
    trained_path = pre(torch.zeros(2, 9, 17, 2), masks, x3, step=1)["rec_3d"]
    done = pre.complete_3d(x3, masks.joints_masked, masks.frames_masked)
    assert torch.equal(done[~hidden], x3[~hidden])
    torch.testing.assert_close(done[hidden], trained_path[hidden])
    moved = x3 + 0.3 * (~hidden).unsqueeze(-1)
    assert not torch.allclose(pre.complete_3d(moved, masks.joints_masked, masks.frames_masked)[hidden],
                              done[hidden], atol=1e-3)
    # without dropped frames the joint-mask path is the same computation with no frame removed
    none = torch.zeros(2, 9, dtype=torch.bool)
    torch.testing.assert_close(pre.complete_3d(x3, masks.joints_masked, none),
                               pre.complete_3d(x3, masks.joints_masked))


def test_pretrained_weights_load_by_name(tiny):
    pre = build("mpm", 27, "pretrain", **tiny)
    lift = build("mpm", 27, **tiny).eval()
    enc = pre.encoder_state_dict()
    loaded = lift.load_pretrained(enc).loaded
    assert sorted(loaded) == sorted(k for k in enc if "_3d" not in k)
    x = torch.randn(2, 27, 17, 2)
    before = lift(x)["centre"]
    with torch.no_grad():
        pre.encoder.shared_temporal.pos_embed.add_(0.5)
    lift.load_pretrained(pre.encoder_state_dict())
    assert not torch.allclose(before, lift(x)["centre"])


def test_tiny_model_overfits_real_clip(walk_clips, tiny, overfit):
    torch.manual_seed(0)
    first, last = overfit(build("mpm", 9, **tiny), walk_clips, steps=100)
    assert last * 10 <= first, (first, last)
