"""Image tensor conventions shared by the image data pipeline and the image models.

Why a module of its own: ``raypose/data/`` knows no model, yet its crop batches must be
normalised exactly as the backbones expect; both sides import these from here.
"""
from __future__ import annotations

import torch

#: ImageNet statistics (what pretrained backbones expect).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def normalize_image(image_uint8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float, ImageNet mean/std."""
    x = image_uint8.permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(IMAGE_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
