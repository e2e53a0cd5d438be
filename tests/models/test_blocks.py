"""Shared blocks: strides, frame gathering, MAE decoder scatter, fusion, SDPA, one definition each."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from raypose.models import blocks
from raypose.models.blocks import (Fusion, MaskedDecoder, SpatialMaskToken, StridedTransformer,
                                   default_strides, gather_frames, strided_lengths, visible_index)

MODELS = Path(blocks.__file__).parent


@pytest.mark.parametrize("f,expected", [(9, [1, 3, 3]), (27, [3, 3, 3]), (81, [3, 3, 3, 3]),
                                        (243, [3, 3, 3, 3, 3])])
def test_default_strides(f, expected):
    assert default_strides(f) == expected and strided_lengths(f, expected)[-1] == 1


@pytest.mark.parametrize("f", [1, 3, 5, 7, 45, 101])
def test_general_rule_reaches_one_token(f):
    assert strided_lengths(f, default_strides(f))[-1] == 1
    out = StridedTransformer(16, default_strides(f), 2, 32, f, 0.0)(torch.randn(2, f, 16))
    assert out.shape == (2, 1, 16)


def test_visible_index_and_gather():
    fm = torch.tensor([[True, False, True, False], [False, False, True, True]])
    idx = visible_index(fm)
    assert idx.tolist() == [[1, 3], [0, 1]]
    x = torch.arange(2 * 4).reshape(2, 4, 1).float()
    assert gather_frames(x, idx).squeeze(-1).tolist() == [[1, 3], [4, 5]]
    with pytest.raises(ValueError):
        visible_index(torch.tensor([[True, False], [False, False]]))


def test_decoder_scatters_visible_tokens_and_mask_token():
    dec = MaskedDecoder(8, 8, depth=0, heads=2, ffn_dim=16, num_frames=5, dropout=0.0)
    keep = torch.tensor([[0, 3], [1, 4]])
    tokens = torch.randn(2, 2, 8)
    out = dec(tokens, keep)
    pos = dec.transformer.pos_embed[0]
    vis = dec.enc_norm(tokens)
    for n in range(2):
        for slot in range(5):
            want = vis[n, keep[n].tolist().index(slot)] if slot in keep[n] else dec.mask_token[0, 0]
            assert torch.allclose(out[n, slot], want + pos[slot])


def test_mask_token_replaces_only_masked():
    tok = SpatialMaskToken(2)
    x = torch.randn(1, 3, 17, 2)
    m = torch.zeros(1, 3, 17, dtype=torch.bool)
    m[0, 1, 4] = True
    y = tok(x, m)
    assert torch.equal(y[0, 1, 4], tok.token.detach()) and torch.equal(y[~m], x[~m])


def test_mul_fusion_is_the_normalised_product():
    a, b, c = torch.randn(3, 2, 4, 8).unbind(0)
    ln = torch.nn.functional.layer_norm
    fused = Fusion("mul", 8, 3)([a, b, c])
    torch.testing.assert_close(fused, ln(ln(a, (8,)) * ln(b, (8,)) * ln(c, (8,)), (8,)))
    assert torch.equal(Fusion("mul_raw", 8, 3)([a, b, c]), a * b * c)      # the reference code's
    assert torch.equal(Fusion("add", 8, 3)([a, b, c]), a + b + c)
    assert torch.equal(Fusion("avg", 8, 3)([a, b, c]), (a + b + c) / 3)
    assert Fusion("cat", 8, 3)([a, b, c]).shape == (2, 4, 8)
    assert not list(Fusion("mul_raw", 8, 3).parameters()) and not list(Fusion("add", 8, 3).parameters())


@pytest.mark.parametrize("scale", [1e-2, 1.0, 30.0])
def test_mul_fusion_scale_is_bounded_for_aligned_branches_of_any_magnitude(scale):
    """Four SEMs see near-identical inputs, so their features align and the raw product is a
    4th power: scale**4 and heavy-tailed (the 'mul' instability of the study). The fused
    tokens must keep unit RMS and no entry above sqrt(d), and pass gradients to every branch."""
    torch.manual_seed(0)
    d = 64
    common = torch.randn(8, 9, d)
    feats = [(scale * (common + 0.1 * torch.randn(8, 9, d))).requires_grad_() for _ in range(4)]
    fused = Fusion("mul", d, 4)(feats)
    rms = fused.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)
    assert float(fused.detach().abs().max()) <= d ** 0.5
    fused.pow(2).mul(torch.randn_like(fused)).sum().backward()
    assert all(f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0 for f in feats)
    raw = Fusion("mul_raw", d, 4)([f.detach() for f in feats])   # what 'mul' was: off by scale**4
    assert float(raw.pow(2).mean().sqrt()) > 3 * scale ** 4


def test_attention_goes_through_sdpa(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(blocks.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    blocks.SelfAttention(16, 4)(torch.randn(2, 5, 16))
    assert calls


def test_no_block_defined_twice():
    names: dict[str, str] = {}
    for path in MODELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.name not in names, f"{node.name} in {path.name} and {names[node.name]}"
                names[node.name] = path.name
                # model files only compose blocks; backbones.py is the image-CNN library
                if path.name not in ("blocks.py", "backbones.py"):
                    assert node.name.endswith(("Encoder", "Pretrain", "Lift", "Baseline")), node.name


# ----------------------------------------------------------------------------- pretrained hand-over

TINY = dict(dim=32, ffn_dim=64, heads=2, depth=2, sem_hidden=64, dropout=0.0)


def test_encoder_of_another_clip_length_is_resampled_not_dropped():
    from raypose.models import build

    pre = build("pstmo", 27, "pretrain", **TINY, decoder_depth=1)
    lift = build("pstmo", 81, **TINY)
    report = lift.load_pretrained(pre.encoder_state_dict())
    pos = [k for k in report.loaded if "pos_embed" in k]
    assert pos and not report.skipped and len(report.resampled) == len(pos)
    assert report.resampled[0].endswith("(1, 27, 32) -> (1, 81, 32)")
    for k in pos:   # linear over the same span: the ends and position 40 ≙ 13 are the source's
        src, got = pre.encoder_state_dict()[k], lift.state_dict()[k]
        torch.testing.assert_close(got[:, [0, -1]], src[:, [0, -1]])
        torch.testing.assert_close(got[:, 40], src[:, 13])
    others = [k for k in report.loaded if "pos_embed" not in k]
    assert all(torch.equal(lift.state_dict()[k], pre.encoder_state_dict()[k]) for k in others)
    assert any("resampled" in line for line in report.lines())


def test_encoder_of_another_width_is_an_error_listing_the_skipped_tensors():
    from raypose.errors import ConfigError
    from raypose.models import build

    pre = build("pstmo", 27, "pretrain", **{**TINY, "dim": 48, "heads": 2}, decoder_depth=1)
    lift = build("pstmo", 27, **TINY)
    before = {k: v.clone() for k, v in lift.state_dict().items()}
    # the original failure: the tensors whose shapes matched were loaded, the rest silently not
    with pytest.raises(ConfigError, match=r"shape \(1, 27, 48\) in the checkpoint, \(1, 27, 32\) here") as e:
        lift.load_pretrained(pre.encoder_state_dict())
    assert "init_strict" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in lift.state_dict().items())   # nothing half-loaded
    report = lift.load_pretrained(pre.encoder_state_dict(), strict=False)   # the user's opt-in
    assert report.loaded and report.skipped
    assert all("shape" in s for s in report.skipped)
    assert any(line.startswith("  skipped encoder.") for line in report.lines())


def test_a_checkpoint_tensor_the_model_lacks_is_listed_by_name():
    from raypose.errors import ConfigError
    from raypose.models import build

    lift = build("pstmo", 27, **TINY)
    enc = build("pstmo", 27, "pretrain", **TINY, decoder_depth=1).encoder_state_dict()
    enc["encoder.extra.weight"] = torch.zeros(3)
    with pytest.raises(ConfigError, match=r"encoder.extra.weight: in the checkpoint, no tensor of that name here"):
        lift.load_pretrained(enc)
    # MPM's 3D stem serves pretraining only: reported as unused, not an error
    mpm = build("mpm", 27, **TINY).load_pretrained(build("mpm", 27, "pretrain", **TINY).encoder_state_dict())
    assert not mpm.skipped and mpm.unused and all("_3d" in k for k in mpm.unused)


def test_trajectory_point_back_projects_the_observed_root():
    """With no learned correction the root lies on the observed root's ray (x/z = u, y/z = v)
    at depth exp(raw_z); a correction moves it along the image plane at that depth."""
    from raypose.models.blocks import frame_root_and_scale, trajectory_point

    root_2d = torch.tensor([[0.2, -0.1], [-0.5, 0.3]])
    raw = torch.tensor([[0.0, 0.0, 1.0], [0.1, 0.0, 0.5]])
    p = trajectory_point(raw, root_2d, torch.tensor([[0.5], [1.0]]))
    assert p.shape == (2, 1, 3)
    torch.testing.assert_close(p[0, 0], torch.tensor([0.2, -0.1, 1.0]) * torch.e / 0.5)  # depth ∝ 1 / 2D size
    torch.testing.assert_close(p[1, 0, :2] / p[1, 0, 2], torch.tensor([-0.4, 0.3]))
    # the 2D size: RMS distance of the detected joints from their mean; the root is joint 0
    frame = torch.zeros(1, 17, 2)
    frame[0, :, 0] = torch.linspace(-1, 1, 17)
    missing = torch.zeros(1, 17, dtype=torch.bool)
    missing[0, 8:] = True
    root, size = frame_root_and_scale(frame, missing)
    seen = frame[0, :8, 0]
    torch.testing.assert_close(size[0, 0], (seen - seen.mean()).pow(2).mean().sqrt())
    assert torch.equal(root, frame[:, 0])
