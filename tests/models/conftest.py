"""Fixtures for model tests: few threads (the machine is shared) and a tiny real mocap clip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from raypose.data.sources import default_mocap_path

torch.set_num_threads(1)

#: The embedded mocap subset: its DeepMimic walk is the shared data's, frame for frame.
MOCAP = default_mocap_path()


def make_walk_clips(num_frames: int = 9, step: int = 4, cameras: int = 2) -> dict[str, torch.Tensor]:
    """Clips of the DeepMimic walk seen by virtual cameras: normalised 2D and root-relative 3D."""
    from raypose.cameras import normalize_screen, virtual_cameras

    world = np.load(MOCAP, allow_pickle=True)["positions_3d"].item()["deepmimic"]["walk"]
    rng = np.random.default_rng(0)
    p2d, p3d = [], []
    for cam in virtual_cameras(world[:, 0].mean(0), cameras, rng):
        x_cam = cam.world_to_camera(world)
        xy = normalize_screen(cam.project(x_cam), cam.width, cam.height)
        rel = x_cam - x_cam[:, :1]
        for s in range(0, len(world) - num_frames + 1, step):
            p2d.append(xy[s:s + num_frames])
            p3d.append(rel[s:s + num_frames])
    pose_2d = torch.tensor(np.stack(p2d), dtype=torch.float32)
    pose_3d = torch.tensor(np.stack(p3d), dtype=torch.float32)
    return {"pose_2d": pose_2d, "pose_3d": pose_3d, "has_3d": torch.ones(len(pose_2d), dtype=torch.bool),
            "centre_index": num_frames // 2}


@pytest.fixture(scope="session")
def walk_clips() -> dict[str, torch.Tensor]:
    return make_walk_clips()


def spatiotemporal_masks(n: int, f: int, frames_visible: int, joints_per_frame: int,
                         seed: int = 0, levels: bool = False):
    """Exact-ratio masks (the masking helper's job; a small local version for model tests)."""
    from raypose.masking import Masks
    from raypose.skeleton import anatomy_groups

    g = torch.Generator().manual_seed(seed)
    order = torch.rand(n, f, generator=g).argsort(1)
    frames = torch.ones(n, f, dtype=torch.bool)
    frames.scatter_(1, order[:, :frames_visible], False)
    jorder = torch.rand(n, f, 17, generator=g).argsort(-1)
    joints = torch.zeros(n, f, 17, dtype=torch.bool)
    joints.scatter_(2, jorder[..., :joints_per_frame], True)
    lv = {}
    if levels:
        for name in ("keypoint", "bone", "limb", "body"):
            groups = anatomy_groups(name)
            pick = torch.randint(len(groups), (n, f), generator=g)
            m = torch.zeros(n, f, 17, dtype=torch.bool)
            for gi, group in enumerate(groups):
                sel = (pick == gi).unsqueeze(-1) & torch.zeros(17, dtype=torch.bool).index_fill(0, torch.tensor(group), True)
                m |= sel
            lv[name] = m
    return Masks(frames, joints, lv)


@pytest.fixture
def make_masks():
    return spatiotemporal_masks


def run_overfit(model: torch.nn.Module, clips: dict, steps: int, lr: float = 2e-3,
                loss_cfg=None, masks=None, pretrain: bool = False) -> tuple[float, float]:
    """Train on one fixed batch; return (first, last) total loss (train mode, same batch)."""
    from raypose.config import LossConfig
    from raypose.losses import compute_losses

    torch.manual_seed(0)
    cfg = loss_cfg or LossConfig()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        out = (model(clips["pose_2d"], masks, clips["pose_3d"], step) if pretrain
               else model(clips["pose_2d"]))
        total, _ = compute_losses(out, clips, masks, cfg)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    return losses[0], min(losses[-5:])


@pytest.fixture
def overfit():
    return run_overfit


TINY = dict(dim=32, ffn_dim=64, heads=4, depth=1, sem_hidden=64, dropout=0.0)


@pytest.fixture
def tiny():
    return dict(TINY)
