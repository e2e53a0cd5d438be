"""Compact image backbones (ResNet, HRNet-style) for the image-lifting model, plus ``timm:``.

Why our own: ``timm`` hard-imports torchvision, which has no working CPU build beside torch 2.13
here, so the default backbones are small self-contained convnets. On machines where timm
imports, ``'timm:<name>'`` uses any timm model (``features_only``) instead.

Every backbone maps an image (N, 3, H, W) to one feature map (N, C, H/s, W/s) and exposes
``out_channels`` (C) and ``stride`` (s). Weights come from a local ``state_dict`` file when
given (:func:`load_weights`) and are randomly initialised otherwise: nothing is downloaded.

Names: ``resnet18`` / ``resnet34`` (basic blocks), ``resnet50`` (bottlenecks), with an optional
width suffix ``resnet18_w16`` (first-stage width; default 64); ``hrnet_w16`` / ``hrnet_w32`` /
``hrnet_w48`` (branch-0 width, 3 branches at strides 4/8/16); ``timm:<name>``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raypose.errors import RayposeDataError

# ----------------------------------------------------------------------------- residual blocks


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3×3 convs + identity (ResNet-18/34, HRNet branches)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(conv_bn(cin, width, 3, stride), conv_bn(width, cout, 3, 1, relu=False))
        self.skip = (conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout
                     else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4) + identity (ResNet-50, HRNet stem stage)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width, 3, stride),
                                  conv_bn(width, cout, 1, relu=False))
        self.skip = (conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout
                     else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def make_stage(block: type, cin: int, width: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    layers = [block(cin, width, stride)]
    cout = width * block.expansion
    layers += [block(cout, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers), cout


# ----------------------------------------------------------------------------- ResNet

RESNET_CONFIGS: dict[str, tuple[type, tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk: 7×7/2 stem + max-pool (stride 4), then stages doubling width and stride.

    ``out_stride`` (4, 8, 16 or 32) decides how many stages run: pose transformers want a
    fine grid (the paper's HRNet features are at 1/4), classification-style 1/32 is too coarse.
    """

    def __init__(self, block: type, layers: Sequence[int], width: int = 64, out_stride: int = 16):
        super().__init__()
        if out_stride not in (4, 8, 16, 32):
            raise ValueError(f"ResNet out_stride must be 4, 8, 16 or 32, got {out_stride}")
        num_stages = {4: 1, 8: 2, 16: 3, 32: 4}[out_stride]
        self.stem = nn.Sequential(conv_bn(3, width, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], width
        for i in range(num_stages):
            stage, cin = make_stage(block, cin, width * 2 ** i, layers[i], 1 if i == 0 else 2)
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        self.stride = out_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


# ----------------------------------------------------------------------------- HRNet


class FuseLayer(nn.Module):
    """HRNet exchange unit: every output branch sums all input branches resampled to it.

    Higher-resolution inputs come down through stride-2 3×3 convs, lower-resolution ones go up
    through a 1×1 conv and nearest upsampling (as in Sun et al. 2019).
    """

    def __init__(self, channels: Sequence[int], num_out: int):
        super().__init__()
        self.channels = list(channels)
        self.paths = nn.ModuleList()
        for o in range(num_out):
            row = nn.ModuleList()
            for i, cin in enumerate(channels):
                cout = channels[o] if o < len(channels) else channels[-1] * 2 ** (o - len(channels) + 1)
                if i == o:
                    row.append(nn.Identity())
                elif i > o:
                    row.append(conv_bn(cin, cout, 1, relu=False))
                else:
                    steps = [conv_bn(cin, cin, 3, 2) for _ in range(o - i - 1)]
                    steps.append(conv_bn(cin, cout, 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for o, row in enumerate(self.paths):
            size = None if o >= len(xs) else xs[o].shape[-2:]
            total = 0
            for i, path in enumerate(row):
                y = path(xs[i])
                if i > o:
                    y = F.interpolate(y, size=size, mode="nearest")
                total = total + y
            outs.append(F.relu(total))
        return outs


class HRNet(nn.Module):
    """HRNet-style backbone: parallel branches at strides 4, 8, 16, … exchanging information.

    Stem (two 3×3/2 convs, stride 4) → a bottleneck stage → for each added branch: a new
    lower-resolution branch, ``blocks`` basic blocks per branch, a fuse layer. The output is the
    stride-4 branch (what HRNet's pose head reads), ``width`` channels.
    """

    def __init__(self, width: int = 32, branches: int = 3, blocks: int = 2, stem_width: int = 64):
        super().__init__()
        if branches < 1:
            raise ValueError(f"HRNet needs >= 1 branch, got {branches}")
        self.stem = nn.Sequential(conv_bn(3, stem_width, 3, 2), conv_bn(stem_width, stem_width, 3, 2))
        layer1, c1 = make_stage(Bottleneck, stem_width, stem_width // 4 or 1, blocks, 1)
        self.layer1 = nn.Sequential(layer1, conv_bn(c1, width, 3))
        self.branch_blocks = nn.ModuleList()
        self.fuses = nn.ModuleList()
        channels = [width]
        for n in range(2, branches + 1):
            # the fuse of the previous step creates the new branch (stride-2 path from above)
            self.fuses.append(FuseLayer(channels, n))
            channels = [width * 2 ** i for i in range(n)]
            self.branch_blocks.append(nn.ModuleList(
                [make_stage(BasicBlock, c, c, blocks, 1)[0] for c in channels]))
        self.final_fuse = FuseLayer(channels, 1) if branches > 1 else None
        self.out_channels = width
        self.stride = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [self.layer1(self.stem(x))]
        for fuse, blocks in zip(self.fuses, self.branch_blocks):
            xs = fuse(xs)
            xs = [b(t) for b, t in zip(blocks, xs)]
        return self.final_fuse(xs)[0] if self.final_fuse is not None else xs[0]


# ----------------------------------------------------------------------------- timm


class TimmBackbone(nn.Module):
    """Last feature map of a timm model built with ``features_only`` (no pretrained download)."""

    def __init__(self, name: str):
        super().__init__()
        try:
            import timm
        except Exception as exc:  # timm imports torchvision; on CPU-only boxes that can fail
            raise RuntimeError(f"backbone 'timm:{name}' needs the timm package, which failed to import "
                               f"here ({type(exc).__name__}: {exc}); use a built-in backbone "
                               f"(resnet18/34/50, hrnet_w16/w32/w48)") from exc
        self.model = timm.create_model(name, pretrained=False, features_only=True)
        info = self.model.feature_info
        self.out_channels = int(info.channels()[-1])
        self.stride = int(info.reduction()[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[-1]


# ----------------------------------------------------------------------------- factory

_RESNET_RE = re.compile(r"^(resnet\d+)(?:_w(\d+))?$")
_HRNET_RE = re.compile(r"^hrnet_w(\d+)$")


def build_backbone(name: str, weights: str = "", out_stride: int = 16, branches: int = 3,
                   blocks: Optional[int] = None) -> nn.Module:
    """Backbone by name (see the module docstring); ``weights``: local state_dict file or ''."""
    if name.startswith("timm:"):
        model: nn.Module = TimmBackbone(name[len("timm:"):])
    elif m := _RESNET_RE.match(name):
        if m.group(1) not in RESNET_CONFIGS:
            raise ValueError(f"unknown ResNet {m.group(1)!r}; known: {sorted(RESNET_CONFIGS)}")
        block, layers = RESNET_CONFIGS[m.group(1)]
        if blocks is not None:
            layers = (blocks,) * len(layers)
        model = ResNet(block, layers, int(m.group(2) or 64), out_stride)
    elif m := _HRNET_RE.match(name):
        model = HRNet(int(m.group(1)), branches, blocks if blocks is not None else 2,
                      stem_width=max(16, 2 * int(m.group(1))))
    else:
        raise ValueError(f"unknown backbone {name!r}: expected resnet18|resnet34|resnet50[_w<width>], "
                         f"hrnet_w<width> or timm:<name>")
    if weights:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a local state_dict (optionally under 'state_dict'/'model', prefixed 'module.'/
    'backbone.'/'model.') into ``model``; returns the loaded keys. Shapes must match."""
    path = Path(path)
    if not path.is_file():
        raise RayposeDataError(path, "backbone weights file does not exist")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RayposeDataError(path, f"cannot read backbone weights ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise RayposeDataError(path, "backbone weights are not a state_dict")
    own = model.state_dict()
    take = {}
    for k, v in state.items():
        for prefix in ("", "module.", "backbone.", "model.", "encoder.backbone."):
            name = k[len(prefix):] if k.startswith(prefix) else None
            if name is not None and name in own:
                if tuple(own[name].shape) != tuple(v.shape):
                    raise RayposeDataError(path, f"weight {k!r} has shape {tuple(v.shape)}, "
                                                 f"the backbone expects {tuple(own[name].shape)}")
                take[name] = v
                break
    if not take:
        raise RayposeDataError(path, "no weight in the file matches the backbone's parameter names")
    model.load_state_dict(take, strict=False)
    return sorted(take)
