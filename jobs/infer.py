"""2D detections or a video → 3D poses per person: `raypose infer` as a script,
for `ray job submit -- python jobs/infer.py`.

`python jobs/infer.py --help` shows the options and examples (raypose/commands/infer.py).
"""
from __future__ import annotations

import _common
from raypose.commands import infer as command


def main(argv: list[str] | None = None):
    return _common.main(command, "infer.py", argv)


if __name__ == "__main__":
    _common.run(command, "infer.py")
