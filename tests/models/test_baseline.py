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
