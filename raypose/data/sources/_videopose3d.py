"""The VideoPose3D 3D layout shared by H36M and the mocap files: ``positions_3d[subject][action]``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from raypose import skeleton
from raypose.data.sources._common import as_mapping, as_poses, check_metres, select
from raypose.errors import RayposeDataError


def iter_positions_3d(
    path: Path,
    positions_3d: Any,
    subjects: Optional[Sequence[str]] = None,
    actions: Optional[Sequence[str]] = None,
    allow_32: bool = False,
) -> Iterator[tuple[str, str, np.ndarray]]:
    """Yield (subject, action, (T, 17, 3) metres) from a ``positions_3d`` dict of dicts.

    32-joint arrays (the original H36M skeleton) are reduced to 17 when ``allow_32``.
    An action filter that matches nothing in any selected subject is an error.
    """
    tree = as_mapping(positions_3d, path, "positions_3d")
    joints = (skeleton.NUM_JOINTS, 32) if allow_32 else (skeleton.NUM_JOINTS,)
    matched: set[str] = set()
    for subject in select(tree, subjects, path, "subject"):
        by_action = as_mapping(tree[subject], path, f"positions_3d[{subject!r}]")
        for action in by_action:
            if actions is not None and not any(action == a or str(action).startswith(a) for a in actions):
                continue
            matched.update(a for a in actions or () if action == a or str(action).startswith(a))
            what = f"positions_3d[{subject!r}][{action!r}]"
            pos = as_poses(by_action[action], path, what, channels=(3,), joints=joints, missing_ok=True)
            if pos.shape[1] == 32:
                pos = skeleton.to_h36m(pos, "h36m32")
            check_metres(pos, path, what)
            yield str(subject), str(action), pos
    if actions is not None:
        missing = [a for a in actions if a not in matched]
        if missing:
            raise RayposeDataError(path, f"unknown action(s) {', '.join(map(repr, missing))} in the "
                                         f"selected subjects")
