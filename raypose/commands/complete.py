"""Partial 3D (missing joints or frames as NaN) → completed 3D (npz or BVH): the observed joints
are kept exactly, the missing ones filled by an MPM stage I model's masked-3D decoder
(--method model, --checkpoint) or by linear interpolation over time (--method interpolate, the
default without a checkpoint: on held-out mocap it is the more accurate of the two at this
repository's training budget, bench/completion.py).

    raypose complete                                   # demo: limbs and frames hidden in embedded mocap
    raypose complete --input partial.npz --out completed.npz      # interpolation
    raypose complete --checkpoint CKPT                 # demo: the model beside interpolation
    raypose complete --input partial.npz --out completed.npz --checkpoint CKPT
    raypose complete --input partial.npy --fps 120 --out completed.bvh --checkpoint CKPT
    raypose pretrain --config configs/mpm_complete.yaml   # makes CKPT (prints checkpoint: …)

Input: a (T, 17, 3) .npy, an .npz with one such array, track_<id> arrays or a VideoPose3D-layout
positions_3d[subject][action] tree (with fps), or a .bvh; H36M-17 joint order, world space,
metres (--units cm|mm), Z or Y up (told from the body, or --up-axis). A missing pelvis is
placed between the hips, or interpolated over time. Output: track_<id> in the input's units and
axes, filled_<id> marks the filled joints; or BVH (Y up, cm). No completion model ships in the
package yet: --checkpoint takes any MPM pretraining checkpoint, e.g. from raypose pretrain
--config configs/mpm_complete.yaml; with no --input it runs the demo. Held-out accuracy against
interpolation and the nearest training pose: python bench/completion.py.
"""
from __future__ import annotations

import argparse
from typing import Any

TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    from raypose.complete import add_complete_arguments

    add_complete_arguments(p)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from raypose.complete import chosen_method, complete_file, demo, load_completer

    if args.input is None:
        method = chosen_method(args)
        return demo(load_completer(args.checkpoint, args.device) if method == "model" else None, args.out)
    return complete_file(args)
