"""Martinez et al. single-frame baseline."""
from __future__ import annotations

import pytest
import torch

from raypose.models import build, count_parameters


@pytest.mark.parametrize("f", [9, 27, 81, 243])
def test_centre_only(f):
    model = build("baseline", f).eval()
    x = torch.randn(3, f, 17, 2)
    out = model(x)
    assert set(out) == {"centre"} and out["centre"].shape == (3, 1, 17, 3)
    y = x.clone()
    y[:, 0] += 1.0  # other frames do not matter
    assert torch.equal(out["centre"], model(y)["centre"])


def test_size_and_missing_joints():
    model = build("baseline", 1).eval()
    assert abs(count_parameters(model) / 1e6 - 4.3) / 4.3 < 0.10  # Martinez et al.: ~4.3 M
    x = torch.randn(1, 1, 17, 2)
    missing = torch.zeros(1, 1, 17, dtype=torch.bool)
    missing[..., 5] = True
    y = x.clone()
    y[..., 5, :] = 0.0
    assert torch.equal(model(x, missing)["centre"], model(y)["centre"])


def test_overfits_real_clip(walk_clips, overfit):
    torch.manual_seed(0)
    model = build("baseline", 9, hidden=128, dropout=0.0)
    first, last = overfit(model, walk_clips, steps=100)
    assert last * 10 <= first, (first, last)


def test_window_mlp_uses_the_whole_window_and_flags_missing_joints():
    model = build("window_mlp", 9, hidden=64, dropout=0.0).eval()
    x = torch.randn(2, 9, 17, 2)
    out = model(x)["centre"]
    assert out.shape == (2, 1, 17, 3)
    y = x.clone()
    y[:, 0] += 1.0                                   # an edge frame changes the centre's 3D
    assert not torch.allclose(model(y)["centre"], out)
    missing = torch.zeros(2, 9, 17, dtype=torch.bool)
    missing[:, 4, 3] = True
    z = x.clone()
    z[:, 4, 3] = 123.0                               # a missing joint's coordinates are ignored …
    assert torch.equal(model(z, missing)["centre"], model(x, missing)["centre"])
    zeros = x.clone()
    zeros[:, 4, 3] = 0.0                             # … and differ from a joint seen at (0, 0)
    assert not torch.allclose(model(x, missing)["centre"], model(zeros)["centre"])
    with pytest.raises(ValueError, match="9-frame"):
        model(torch.randn(1, 27, 17, 2))


def test_window_mlp_overfits_real_clip(walk_clips, overfit):
    torch.manual_seed(0)
    model = build("window_mlp", 9, hidden=128, dropout=0.0)
    first, last = overfit(model, walk_clips, steps=100)
    assert last * 10 <= first, (first, last)
