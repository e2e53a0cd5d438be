"""Lifting by Image: two-stage training: `raypose image-lift` as a script,
for `ray job submit -- python jobs/train_image_lift.py`.

`python jobs/train_image_lift.py --help` shows the options and examples (raypose/commands/image_lift.py).
"""
from __future__ import annotations

import _common
from raypose.commands import image_lift as command


def main(argv: list[str] | None = None):
    return _common.main(command, "train_image_lift.py", argv)


if __name__ == "__main__":
    _common.run(command, "train_image_lift.py")
